"""The gateway config file: YAML in, validated immutable settings out, with clear errors."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from agentgate.config_security import BackupConfig, PrivacyConfig, SecretsConfig
from agentgate.observe.settings import (
    AlertsConfig,
    CostConfig,
    MetricsConfig,
    SloConfig,
    TracingConfig,
)
from agentgate.secret_refs import check_template, references

__all__ = [
    "PRIORITIES",
    "Agent",
    "ApiKey",
    "AuthConfig",
    "BusConfig",
    "ConfigError",
    "GatewayConfig",
    "RedisConfig",
    "StateConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")
"""Priority classes, lowest first; the index is the numeric priority."""


class ConfigError(ValueError):
    """A config that cannot be used: names the file, the field path and the reason."""

    def __init__(self, file: str, path: str, reason: str) -> None:
        self.file = file
        self.path = path
        self.reason = reason
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {reason}")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Parse "25ms", "1s", "2m", "0" or a number of seconds into seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '1s' or '25ms', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '1s' or '25ms', got {value!r}")
    m = _DURATION_RE.match(value)
    if m is None:
        raise ValueError(f"expected a duration like '1s' or '25ms', got {value!r}")
    number, unit = m.group(1), m.group(2)
    if unit is None and float(number) != 0:
        raise ValueError(f"duration {value!r} needs a unit (us, ms, s, m, h)")
    return float(number) * _DURATION_UNITS[unit or "s"]


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_UNITS |= {"h": 3600, "hour": 3600}


def parse_rate(value: object) -> float:
    """Parse "100/s", "6000/m", "10/5s" into requests per second (float, > 0)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a rate like '100/s', got {value!r}")
    m = _RATE_RE.match(value)
    if m is None:
        raise ValueError(f"expected a rate like '100/s' or '6000/m', got {value!r}")
    count = float(m.group(1))
    period = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)]
    if count <= 0 or period <= 0:
        raise ValueError(f"rate must be positive, got {value!r}")
    return count / period


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1024**2}
_SIZE_UNITS |= {"gb": 10**9, "gib": 1024**3}


def parse_size(value: object) -> int:
    """Parse 1048576, "64KiB" or "10MB" into bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '10MiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like '10MiB', got {value!r}")
    m = _SIZE_RE.match(value)
    if m is None:
        raise ValueError(f"expected a size like '10MiB' or '64KB', got {value!r}")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]


Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
Size = Annotated[int, BeforeValidator(parse_size)]
Priority = Literal["low", "normal", "high", "critical"]
RetryOn = Annotated[
    Literal["connect-failure", "reset", "timeout", "502", "503", "504", "5xx", "429"],
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return value


HostPort = Annotated[str, BeforeValidator(lambda v: _host_port(str(v)))]


class Endpoint(_Model):
    """One upstream endpoint of an agent pool: `http://`, `https://` or `unix:/path.sock`."""

    url: str
    weight: int = Field(default=1, ge=1, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v.startswith("unix:"):
            path = v.removeprefix("unix:")
            if path.startswith("//"):
                path = "/" + path.lstrip("/")
            if not path.startswith("/") or path == "/":
                raise ValueError(f"unix socket path must be absolute, got {v!r}")
            return "unix:" + path
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url must start with http://, https:// or unix:, got {v!r}")
        if not parts.hostname:
            raise ValueError(f"url has no host: {v!r}")
        try:
            _ = parts.port
        except ValueError as e:
            raise ValueError(f"url has a bad port: {v!r}") from e
        if parts.query or parts.fragment:
            raise ValueError(f"url must not have a query or fragment: {v!r}")
        return v.rstrip("/")


class Timeouts(_Model):
    """Per-attempt timeouts in seconds; 0 means none."""

    connect: Duration = 1.0
    first_byte: Duration = 10.0
    idle: Duration = 60.0
    total: Duration = 0.0


class Backoff(_Model):
    """Full-jitter exponential backoff bounds."""

    base: Duration = 0.025
    max: Duration = 1.0


class Retries(_Model):
    """Retry policy: `attempts` retries after the first try."""

    attempts: int = Field(default=2, ge=0, le=10)
    backoff: Backoff = Backoff()
    on: tuple[RetryOn, ...] = ("connect-failure", "reset", "502", "503", "504")
    budget: float = Field(default=0.2, ge=0.0, le=1.0)


class CircuitBreaker(_Model):
    """Per-endpoint breaker thresholds; the open time doubles per repeated trip up to
    `open_for_max` (default 8 × `open_for`)."""

    consecutive_failures: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    min_requests: int = Field(default=20, ge=1)
    open_for: Duration = 10.0
    open_for_max: Duration | None = None

    @model_validator(mode="after")
    def _max_not_below(self) -> CircuitBreaker:
        if self.open_for_max is not None and self.open_for_max < self.open_for:
            raise ValueError("open_for_max must not be below open_for")
        return self


class HealthCheck(_Model):
    """Active health check of every endpoint of a pool."""

    path: str = "/health"
    interval: Duration = 5.0
    timeout: Duration = 1.0
    healthy: int = Field(default=2, ge=1)
    unhealthy: int = Field(default=3, ge=1)

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path must start with '/', got {v!r}")
        return v


class Tls(_Model):
    """TLS to `https://` endpoints: the Mozilla roots, plus the CAs of `ca_file` (PEM)."""

    ca_file: str | None = None

    @field_validator("ca_file")
    @classmethod
    def _check_file(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"no such file: {v!r}")
        return v


class Activation(_Model):
    """Scale from zero: with no endpoint, a request waits up to `timeout` for one while the
    runtime starts a replica, instead of failing."""

    timeout: Duration = 30.0


class Agent(_Model):
    """A pool of endpoints serving one agent."""

    endpoints: tuple[Endpoint, ...] = ()
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    health_check: HealthCheck | None = None
    max_concurrency: int = Field(default=256, ge=1)
    max_queue: int = Field(default=1024, ge=0)
    queue_timeout: Duration = 1.0
    host_header: Literal["upstream", "preserve"] = "upstream"
    tls: Tls = Tls()
    # added to every upstream request; values may use ${secret:NAME} (resolved by the control
    # plane's secret store, never written to the config)
    headers: dict[str, str] = {}
    activation: Activation | None = None

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"not an HTTP header name: {name!r}")
            check_template(value)
        return v

    @model_validator(mode="after")
    def _some_endpoint(self) -> Agent:
        if not self.endpoints and self.activation is None:
            # raised at `endpoints` (a plain ValueError here would name the whole agent)
            msg = "at least one endpoint (or activation, to scale from zero)"
            err = InitErrorDetails(
                type=PydanticCustomError("value_error", msg), loc=("endpoints",), input=()
            )
            raise ValidationError.from_exception_data(type(self).__name__, [err])
        return self


class Match(_Model):
    """What requests a route takes: one of path / path_prefix / path_template, plus filters."""

    path_prefix: str | None = None
    path: str | None = None
    path_template: str | None = None
    methods: tuple[str, ...] | None = None
    host: str | None = None
    headers: dict[str, str] = {}

    @field_validator("path_prefix", "path", "path_template")
    @classmethod
    def _check_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"{info.field_name} must start with '/', got {v!r}")
        return v

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        out = tuple(m.upper() for m in v)
        for m in out:
            if not m.isalpha():
                raise ValueError(f"not an HTTP method: {m!r}")
        return out

    @model_validator(mode="after")
    def _one_path(self) -> Match:
        given = [p for p in (self.path_prefix, self.path, self.path_template) if p is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of path_prefix, path, path_template")
        return self

    @property
    def pattern(self) -> str:
        """The path, prefix or template, whichever the route uses."""
        return self.path_prefix or self.path or self.path_template or ""


OnRedisError = Annotated[
    Literal["open", "closed", "local"],
    BeforeValidator(lambda v: {"allow": "open", "deny": "closed"}.get(v, v)),
]


class RateLimit(_Model):
    """GCRA limit: `rate` per second sustained, `burst` at once, per `key`.

    `scope: cluster` shares the limit among every gateway through Redis (`redis:` at the top
    level); `on_redis_error` says what happens while Redis cannot be reached: requests pass
    (`open`, alias `allow`), are refused with 503 (`closed`, alias `deny`), or this gateway
    enforces the whole limit on its own (`local`)."""

    key: str = "ip"
    rate: Rate
    burst: int = Field(default=0, ge=0)
    scope: Literal["local", "cluster"] = "local"
    on_redis_error: OnRedisError = "open"

    @field_validator("key")
    @classmethod
    def _check_key(cls, v: str) -> str:
        if v in ("ip", "api_key", "tenant") or (v.startswith("header:") and len(v) > 7):
            return v
        raise ValueError(f"key must be ip, api_key, tenant or header:<name>, got {v!r}")


class RouteSettings(_Model):
    """What a route matches and its per-route policy (shared by config routes and templates)."""

    match: Match
    strip_prefix: bool = False
    rate_limit: RateLimit | None = None
    priority: Priority = "normal"
    auth: Literal["required", "none"] = "none"
    roles: tuple[str, ...] = ()
    signature: Literal["required", "none"] = "none"
    retry_non_idempotent: bool = False
    max_body: Size | None = None
    forward_proxy_auth: bool = False


class Route(RouteSettings):
    """Maps a match to an agent, with per-route policy."""

    id: str | None = None
    agent: str


class ApiKey(_Model):
    """An API key by its SHA-256 hash, mapped to a tenant and roles."""

    id: str
    hash: str
    tenant: str = "default"
    roles: tuple[str, ...] = ()

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, v: str) -> str:
        if not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", v):
            raise ValueError("hash must be 'sha256:' followed by 64 hex digits")
        return v.lower()


class Role(_Model):
    """What a role may do: the highest X-Priority it may ask for."""

    max_priority: Priority = "normal"


class AuthConfig(_Model):
    """API keys and roles."""

    api_keys: tuple[ApiKey, ...] = ()
    roles: dict[str, Role] = {}


class TrustedKey(_Model):
    """An Ed25519 public key (base64 or hex, 32 bytes) trusted under `keyid`."""

    keyid: str
    public_key: str


class SignatureConfig(_Model):
    """RFC 9421 verification: trusted keys and the accepted `created` window."""

    trusted_keys: tuple[TrustedKey, ...] = ()
    window: Duration = 300.0
    max_body: Size = 1024 * 1024
    require_nonce: bool = False
    nonce_cache: int = Field(default=100_000, ge=1)


class Http(_Model):
    """How the listener reads requests: head limits and path normalisation."""

    max_header_bytes: Size = Field(default=32 * 1024, ge=1024)
    max_headers: int = Field(default=96, ge=1, le=10_000)
    merge_slashes: bool = True
    encoded_slash: Literal["keep", "decode", "reject"] = "decode"


class RuntimeConfig(_Model):
    """The agent runtime that starts `process` templates (one supervisor per host): `local`
    processes on Unix sockets, `ray` actors on a cluster at `address`, or `off`."""

    backend: Literal["local", "ray", "off"] = "local"
    address: str | None = None
    dir: str | None = None  # sockets, scratch and logs of replicas (default <data_dir>/runtime)

    @model_validator(mode="after")
    def _ray_address(self) -> RuntimeConfig:
        if self.backend == "ray" and not self.address:
            raise ValueError("backend ray needs address (e.g. ray://head:10001 or auto)")
        return self


class RedisConfig(_Model):
    """The Redis that cluster-wide limits and the Redis Streams bus share."""

    url: str
    timeout: Duration = 0.05

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {v!r}")
        return v


class KafkaConfig(_Model):
    """Where the Kafka bus connects, and how its topics are made."""

    bootstrap_servers: str
    replication_factor: int = Field(default=1, ge=1, le=16)
    session_timeout: Duration = 10.0


class BusTopic(_Model):
    """Per-topic bus behaviour (README: the bus)."""

    partitions: int = Field(default=1, ge=1, le=1024)
    visibility_timeout: Duration = 30.0
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    retry_base: Duration = 0.1
    retry_max: Duration = 5.0
    retention: Duration = 7 * 86400.0
    max_len: int = Field(default=1_000_000, ge=1)
    dedupe_window: Duration = 3600.0

    @model_validator(mode="after")
    def _check_retry(self) -> BusTopic:
        if self.visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        if not self.retry_base <= self.retry_max <= self.visibility_timeout:
            raise ValueError("need retry_base <= retry_max <= visibility_timeout")
        return self


class BusConfig(_Model):
    """The message bus: `memory` (one machine), `redis` (uses `redis.url`) or `kafka`."""

    backend: Literal["memory", "redis", "kafka"] = "memory"
    kafka: KafkaConfig | None = None
    defaults: BusTopic = BusTopic()
    topics: dict[str, BusTopic] = {}
    max_in_flight: int = Field(default=1000, ge=1)
    publish_buffer: int = Field(default=10_000, ge=1)
    publish_timeout: Duration = 30.0


class StateConfig(_Model):
    """Event-sourced agent state: snapshot interval and retention per event class."""

    snapshot_every: int = Field(default=100, ge=1)
    retention: dict[str, Duration] = {"lifecycle": 365 * 86400.0, "checkpoint": 365 * 86400.0}


class GatewayConfig(_Model):
    """The whole gateway config file."""

    listen: HostPort = "127.0.0.1:8000"
    admin_listen: HostPort = "127.0.0.1:8001"
    agents: dict[str, Agent] = {}
    routes: tuple[Route, ...] = ()
    auth: AuthConfig = AuthConfig()
    signatures: SignatureConfig = SignatureConfig()
    http: Http = Http()
    demo_echo: HostPort | None = None  # start the bundled demo echo agent on this address
    # `required`: the admin listener's /metrics, /api/config and /api/health/agents need an API
    # key with a control-plane role (see `agentgate.api.auth.admin_guard`); `none`: open
    admin_auth: Literal["none", "required"] = "none"
    # control-plane state: PostgreSQL when set (postgresql://…), else SQLite in `data_dir`
    database_url: str | None = None
    data_dir: str = ".agentgate"
    runtime: RuntimeConfig = RuntimeConfig()
    secrets: SecretsConfig = SecretsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    backup: BackupConfig | None = None
    redis: RedisConfig | None = None
    bus: BusConfig | None = None
    state: StateConfig = StateConfig()
    # observability (agentgate.observe.settings): history, alerts, tracing, SLOs, cost
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig = AlertsConfig()
    tracing: TracingConfig = TracingConfig()
    slos: tuple[SloConfig, ...] = ()
    cost: CostConfig = CostConfig()

    def route_ids(self) -> list[str]:
        """Each route's id: the explicit one, or `<agent>:<path pattern>`."""
        return [r.id or f"{r.agent}:{r.match.pattern}" for r in self.routes]

    def core_json(self) -> bytes:
        """The config as the core reads it (`_core.DataPlane`): the validated model as JSON,
        durations in seconds, sizes in bytes, rates per second."""
        import orjson

        return orjson.dumps(self.model_dump(mode="json"))

    def redacted(self) -> dict[str, Any]:
        """The config as plain data with secrets replaced: key hashes, passwords in URLs, and
        header values written inline (a value that uses `${secret:NAME}` shows as written)."""
        data = self.model_dump(mode="json")
        for k in data["auth"]["api_keys"]:
            k["hash"] = "<redacted>"
        if data["database_url"]:
            data["database_url"] = _redact_url(data["database_url"])
        for agent in data["agents"].values():
            agent["headers"] = _redact_headers(agent["headers"])
        data["tracing"]["headers"] = _redact_headers(data["tracing"]["headers"])
        if data.get("redis") and urlsplit(data["redis"]["url"]).password:
            data["redis"]["url"] = "<redacted>"
        return data


def _redact_headers(headers: dict[str, str]) -> dict[str, str]:
    # Upstream and OTLP headers often carry tokens. One that goes through the secret store is a
    # reference (its text around it is a template such as `Bearer `); one written inline may be
    # the token itself.
    return {k: v if references(v) else "<redacted>" for k, v in headers.items()}


def _redact_url(url: str) -> str:
    out = url
    netloc = urlsplit(url).netloc
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        user, sep, _ = userinfo.partition(":")
        if sep:
            out = out.replace(f"//{userinfo}@", f"//{user}:<redacted>@", 1)
    # libpq also takes the password as a query parameter
    return re.sub(r"(?i)([?&])((?:ssl)?password)=[^&#]*", r"\1\2=<redacted>", out)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `on:`/`off:`/`yes:` as booleans; config keys must stay strings."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _fmt_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds validator names (e.g. "function-before[...]") to locations
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def parse_config(data: object, file: str = "<config>") -> GatewayConfig:
    """Validate already-parsed config data; raise ConfigError naming file, field and reason."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(file, "", "the top level must be a mapping")
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        path = _fmt_loc(_clean_loc(tuple(err["loc"])))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise ConfigError(file, path, msg) from None
    _cross_check(cfg, file)
    return cfg


def _check_distributed(cfg: GatewayConfig, file: str) -> None:
    if cfg.bus is not None:
        if cfg.bus.backend == "redis" and cfg.redis is None:
            raise ConfigError(file, "bus.backend", "backend redis needs redis: {url: …}")
        if cfg.bus.backend == "kafka" and cfg.bus.kafka is None:
            raise ConfigError(file, "bus.kafka", "backend kafka needs bus.kafka.bootstrap_servers")
    for i, route in enumerate(cfg.routes):
        if route.rate_limit is not None and route.rate_limit.scope == "cluster" and not cfg.redis:
            raise ConfigError(
                file, f"routes[{i}].rate_limit.scope", "scope cluster needs redis: {url: …}"
            )


def _cross_check(cfg: GatewayConfig, file: str) -> None:
    _check_distributed(cfg, file)
    seen: dict[str, int] = {}
    for i, (rid, route) in enumerate(zip(cfg.route_ids(), cfg.routes, strict=True)):
        if route.agent not in cfg.agents:
            raise ConfigError(file, f"routes[{i}].agent", f"unknown agent {route.agent!r}")
        if rid in seen:
            raise ConfigError(file, f"routes[{i}].id", f"duplicate route id {rid!r}")
        seen[rid] = i
        if route.roles and route.auth != "required":
            raise ConfigError(file, f"routes[{i}].roles", "roles need auth: required on the route")
        rl = route.rate_limit
        if route.auth == "none" and rl is not None and rl.key in ("api_key", "tenant"):
            raise ConfigError(
                file,
                f"routes[{i}].rate_limit.key",
                f"key {rl.key!r} needs auth: required on the route",
            )
    key_ids: set[str] = set()
    hashes: set[str] = set()
    for i, key in enumerate(cfg.auth.api_keys):
        if key.id in key_ids:
            raise ConfigError(file, f"auth.api_keys[{i}].id", f"duplicate key id {key.id!r}")
        if key.hash in hashes:
            raise ConfigError(file, f"auth.api_keys[{i}].hash", "duplicate key hash")
        key_ids.add(key.id)
        hashes.add(key.hash)
    for name, agent in cfg.agents.items():
        urls: set[str] = set()
        for j, ep in enumerate(agent.endpoints):
            if ep.url in urls:
                raise ConfigError(
                    file, f"agents.{name}.endpoints[{j}].url", f"duplicate endpoint {ep.url!r}"
                )
            urls.add(ep.url)
        if agent.retries.backoff.base > agent.retries.backoff.max:
            raise ConfigError(
                file, f"agents.{name}.retries.backoff.base", "base must not exceed max"
            )
    keyids: set[str] = set()
    for i, tk in enumerate(cfg.signatures.trusted_keys):
        if tk.keyid in keyids:
            raise ConfigError(
                file, f"signatures.trusted_keys[{i}].keyid", f"duplicate keyid {tk.keyid!r}"
            )
        keyids.add(tk.keyid)
        if _decode_key(tk.public_key) is None:
            raise ConfigError(
                file,
                f"signatures.trusted_keys[{i}].public_key",
                "expected a 32-byte Ed25519 key in base64 or hex",
            )


def _decode_key(text: str) -> bytes | None:
    import base64
    import binascii

    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 32:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw if len(raw) == 32 else None


def decode_public_key(text: str) -> bytes:
    """Decode a trusted key from config (already validated) to its 32 raw bytes."""
    raw = _decode_key(text)
    if raw is None:
        raise ValueError(f"not a 32-byte Ed25519 key: {text!r}")
    return raw


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a YAML config file; raise ConfigError naming file, field and reason."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(file, "", f"cannot read: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(file, "", f"invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_config(data, file)
