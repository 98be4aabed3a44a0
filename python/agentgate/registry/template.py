"""Agent templates: the model, its validation (errors name the JSON path) and parameter checks.

A template is published as a JSON document. The digest covers that document exactly as
published (canonicalised, see `digest.py`), not a normalised dump with defaults filled in, so a
change of defaults in a later agentgate release never changes the digest of an old template.
The `http` spec reuses the gateway's agent settings (`config.Agent`): endpoints, timeouts,
retries, circuit breaker, health check, concurrency. The `process` spec says how the runtime
starts the agent (`command` or `app`, `env`, `readiness`, `network`, `seccomp`, `isolation`) and
takes the same gateway settings except `endpoints`: those are the replicas' Unix sockets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agentgate.config import (
    Agent,
    CircuitBreaker,
    Duration,
    HealthCheck,
    RateLimit,
    Retries,
    RouteSettings,
    Size,
    Timeouts,
    parse_size,
)
from agentgate.errors import Invalid
from agentgate.registry.digest import digest
from agentgate.registry.semver import InvalidVersion, Version

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "HttpSpec",
    "Isolation",
    "Limits",
    "ProcessSpec",
    "Readiness",
    "Resources",
    "RouteDefault",
    "Scaling",
    "Seccomp",
    "Template",
    "TemplateModel",
    "json_path",
    "parse_template",
]

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,63}$")
_CPU = re.compile(r"^([0-9]+)m$")


def parse_cpu(value: object) -> float:
    """CPU in cores from 0.5, 2 or "500m" (millicores)."""
    if isinstance(value, bool):
        raise ValueError(f"expected cores (0.5) or millicores ('500m'), got {value!r}")
    if isinstance(value, int | float):
        cores = float(value)
    elif isinstance(value, str) and (m := _CPU.match(value)):
        cores = int(m.group(1)) / 1000
    else:
        raise ValueError(f"expected cores (0.5) or millicores ('500m'), got {value!r}")
    if not 0 < cores <= 1024:
        raise ValueError(f"cpu must be in (0, 1024] cores, got {value!r}")
    return cores


Cpu = Annotated[float, BeforeValidator(parse_cpu)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSpec(Agent):
    """Kind `http`: an endpoint pool the gateway forwards to, with the gateway's agent settings."""

    kind: Literal["http"]


_APP = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Mechanism = Literal["cgroups", "seccomp", "netns", "mountns", "landlock", "unprivileged_uid"]
MECHANISMS: tuple[str, ...] = get_args(Mechanism)
"""Isolation mechanisms a template may require (`isolation.require`)."""


class Readiness(_Model):
    """When a replica counts as ready: `GET path` answers 2xx within `timeout` of its start."""

    path: str = "/health"
    timeout: Duration = Field(default=10.0, gt=0, le=600)

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path must start with '/', got {v!r}")
        return v


class Seccomp(_Model):
    """Syscalls denied on top of the default profile, and what a denied call does."""

    deny: tuple[str, ...] = Field(default=(), max_length=256)
    on_deny: Literal["errno", "kill"] = "errno"


class Isolation(_Model):
    """Mechanisms the agent must have: creation is refused on a host that lacks one. The rest
    are applied wherever the host allows them."""

    require: tuple[Mechanism, ...] = ("seccomp", "cgroups")


class ProcessSpec(_Model):
    """Kind `process`: replicas the runtime starts, each on its own Unix socket.

    Exactly one of `command` (a program serving HTTP on the socket named by `AGENTGATE_SOCKET`)
    or `app` (`module:attr`, an ASGI app imported from `python_path`)."""

    kind: Literal["process"]
    command: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=256)
    app: str | None = None
    python_path: tuple[str, ...] = Field(default=(), max_length=64)
    env: dict[str, str] = Field(default_factory=dict, max_length=256)
    readiness: Readiness = Readiness()
    network: Literal["none", "loopback", "egress"] = "none"
    seccomp: Seccomp = Seccomp()
    isolation: Isolation = Isolation()
    # gateway settings of the agent's pool (as kind `http`, without endpoints)
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    health_check: HealthCheck | None = None
    max_concurrency: int = Field(default=256, ge=1)
    max_queue: int = Field(default=1024, ge=0)
    queue_timeout: Duration = 1.0
    host_header: Literal["upstream", "preserve"] = "upstream"

    @field_validator("app")
    @classmethod
    def _check_app(cls, v: str | None) -> str | None:
        if v is not None and not _APP.match(v):
            raise ValueError(f"app must be 'module:attribute', got {v!r}")
        return v

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _ENV_NAME.match(k):
                raise ValueError(f"not an environment variable name: {k!r}")
            if k.startswith("AGENTGATE_"):
                raise ValueError(f"{k}: AGENTGATE_* variables are set by the runtime")
        return v

    @model_validator(mode="after")
    def _one_entry(self) -> ProcessSpec:
        if (self.command is None) == (self.app is None):
            raise ValueError("give exactly one of command, app")
        if self.python_path and self.app is None:
            raise ValueError("python_path is only for app agents")
        return self


class Resources(_Model):
    """Per-replica resources: `cpu` in cores ("500m" ok), `memory` in bytes ("512MiB" ok)."""

    cpu: Cpu = 0.5
    memory: Size = Field(default=parse_size("512MiB"), gt=0)


class Scaling(_Model):
    """Replica bounds and the per-replica concurrency an autoscaler aims for."""

    min_replicas: int = Field(default=1, ge=0, le=10_000)
    max_replicas: int = Field(default=1, ge=1, le=10_000)
    target_concurrency: int | None = Field(default=None, ge=1)
    # process agents: idle ready replicas kept per template version; seconds without traffic
    # before scaling to zero (needs min_replicas 0); seasonal forecast pre-warming
    warm_pool: int = Field(default=0, ge=0, le=1000)
    scale_to_zero_after: Duration | None = Field(default=None, gt=0)
    predictive: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        if self.scale_to_zero_after is not None and self.min_replicas != 0:
            raise ValueError("scale_to_zero_after needs min_replicas: 0")
        return self


class RouteDefault(RouteSettings):
    """A route an agent made from the template gets unless the creator overrides it."""


class Limits(_Model):
    """Default limits for every route of an agent (a route's own settings win)."""

    rate_limit: RateLimit | None = None
    max_body: Size | None = None


class TemplateModel(_Model):
    """The validated shape of a template document."""

    name: str
    version: str
    description: str = Field(default="", max_length=4096)
    capabilities: tuple[str, ...] = Field(default=(), max_length=64)
    spec: Annotated[HttpSpec | ProcessSpec, Field(discriminator="kind")]
    resources: Resources = Resources()
    scaling: Scaling = Scaling()
    routes: tuple[RouteDefault, ...] = Field(default=(), max_length=64)
    limits: Limits = Limits()
    params_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                "name must be 1-128 of a-z 0-9 . _ - and start and end with a letter or digit,"
                f" got {v!r}"
            )
        return v

    @field_validator("version")
    @classmethod
    def _check_version(cls, v: str) -> str:
        try:
            Version.parse(v)
        except InvalidVersion as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("capabilities")
    @classmethod
    def _check_capabilities(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if not _CAPABILITY.match(c):
                raise ValueError(f"capability must match {_CAPABILITY.pattern}, got {c!r}")
        if len(set(v)) != len(v):
            raise ValueError("capabilities must be unique")
        return v

    @field_validator("params_schema")
    @classmethod
    def _check_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # on first use: with its format extras it takes seconds to import

        try:
            _validator_class(v).check_schema(v)
        except jsonschema.SchemaError as e:
            raise ValueError(f"not a valid JSON Schema at {e.json_path}: {e.message}") from None
        if v.get("type", "object") != "object":
            raise ValueError("params_schema must describe an object (type: object)")
        return v


def json_path(loc: Sequence[int | str], root: str = "$") -> str:
    """A JSONPath like `$.spec.endpoints[0].url` from a pydantic/jsonschema location."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += "[" + repr(part).replace("'", '"') + "]"
    return out


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    import jsonschema

    # The schema's own $schema wins; templates without one use Draft 2020-12.
    cls: type[Validator] = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    return cls


def _invalid_from_pydantic(e: ValidationError, root: str) -> Invalid:
    errs = e.errors(include_url=False)
    first = errs[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    if len(loc) >= 2 and loc[0] == "spec" and loc[1] in ("http", "process"):
        del loc[1]  # the union's tag is not part of the document's path
    if str(first["type"]).startswith("union_tag"):
        loc.append("kind")
    path = json_path(loc, root)
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    msg = first["msg"].removeprefix("Value error, ")
    return Invalid(f"{path}: {msg}{more}", path)


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """A validated template: the published document, its parsed model and its digest."""

    document: Mapping[str, Any]
    model: TemplateModel
    digest: str
    _validator: Validator = field(repr=False)

    @property
    def name(self) -> str:
        """The template name."""
        return self.model.name

    @property
    def version(self) -> Version:
        """The parsed SemVer version."""
        return Version.parse(self.model.version)

    @property
    def ref(self) -> str:
        """`name@version`, the in-toto subject name."""
        return f"{self.model.name}@{self.model.version}"

    def validate_params(self, params: object, root: str = "$.params") -> None:
        """Checks agent parameters against `params_schema`; `Invalid` names the bad param."""
        found = self._validator.iter_errors(params)  # type: ignore[arg-type]
        errors = sorted(found, key=lambda e: list(e.path))
        if not errors:
            return
        import jsonschema

        best = jsonschema.exceptions.best_match(errors) or errors[0]
        path = json_path(list(best.absolute_path), root)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Invalid(f"{path}: {best.message}{more}", path)

    @property
    def search_text(self) -> str:
        """Description and capabilities as one text, for lexical and embedding search."""
        return " ".join([self.model.name, self.model.description, *self.model.capabilities])


def parse_template(document: object, root: str = "$") -> Template:
    """Validates a template document (a JSON object) and computes its digest.

    Raises `Invalid` whose `path` is the JSON path of the first bad field.
    """
    if not isinstance(document, Mapping):
        raise Invalid(f"{root}: a template must be a JSON object", root)
    doc = dict(document)
    d = digest(doc)  # first: refuses NaN, huge ints, non-string keys before pydantic sees them
    try:
        model = TemplateModel.model_validate(doc)
    except ValidationError as e:
        raise _invalid_from_pydantic(e, root) from None
    import jsonschema

    validator = _validator_class(model.params_schema)(
        model.params_schema, format_checker=jsonschema.FormatChecker()
    )
    return Template(doc, model, d, validator)
