"""Typed surface of the Rust extension module `agentgate._core` (checked by mypy.stubtest).

Conventions of the module:
- Classes are built in Rust and cannot be subclassed (`@final`) unless marked otherwise;
  constructors are `__new__`.
- Enums mirror the core's enums: members are class attributes, compare with `==` (also to
  their `int()`), hash, and `str()` gives the name used in configs and APIs. Those with a
  `__new__` look a member up by that name (ValueError if unknown), like `enum.Enum(value)`.
- Errors are subclasses of `CoreError` and of the builtin callers catch; their parts are
  attributes (`kind`, `field`, ...), their message is for people.
"""

from collections.abc import Mapping, Sequence
from typing import ClassVar, Self, final

from typing_extensions import disjoint_base

__all__ = [
    "DEFAULT_POLICY_QUERY",
    "HISTOGRAM_OVERFLOW_KEY",
    "HISTOGRAM_RELATIVE_ERROR",
    "LATENCY_BOUNDS",
    "SKETCH_RELATIVE_ACCURACY",
    "AcquireOutcome",
    "AgentCounts",
    "AgentState",
    "AtomicSketch",
    "Balancer",
    "BatchMode",
    "BreakerConfig",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "ClusterLeases",
    "ConfigRejected",
    "ContentDigestCheck",
    "ContentDigestHasher",
    "CoreError",
    "DataPlane",
    "Decision",
    "DecodedTable",
    "DenyAction",
    "DenyReason",
    "DigestAlg",
    "Ed25519KeyError",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "EndpointSpec",
    "EndpointState",
    "EndpointStats",
    "Explanation",
    "HistogramSet",
    "HistogramSnapshot",
    "HttpSigErrorKind",
    "HttpSigVerifier",
    "HttpSignatureError",
    "KeyDemand",
    "KeyFormat",
    "KeyKind",
    "KeyProblem",
    "LatencyCounts",
    "LatencyHistogram",
    "LeaseDemand",
    "LeaseGrant",
    "LimitDecisions",
    "LimiterError",
    "LimiterErrorKind",
    "ManualClock",
    "ModuleCoverage",
    "NoEndpointAvailable",
    "Outcome",
    "PolicyCompileError",
    "PolicyEngine",
    "PolicyError",
    "PolicyErrorKind",
    "Priority",
    "PriorityAdmission",
    "ProbeResult",
    "RateLimitDecision",
    "RateLimiter",
    "RedisState",
    "Refusal",
    "RejectedCount",
    "RollupTable",
    "RouteCounts",
    "RouteMatch",
    "Router",
    "RouterError",
    "SandboxError",
    "SandboxErrorKind",
    "SandboxInstallError",
    "SandboxProfileError",
    "SettingError",
    "SignedHeaders",
    "Sketch",
    "SketchError",
    "SketchErrorKind",
    "StatsDelta",
    "StatusClass",
    "Unavailable",
    "UnknownEndpoint",
    "UsageCount",
    "VerifiedSignature",
    "__version__",
    "ed25519_private_pem",
    "ed25519_public_b64",
    "ed25519_public_from_private",
    "ed25519_public_pem",
    "ed25519_public_raw",
    "ed25519_sign",
    "ed25519_verify",
    "ed25519_verify_batch",
    "http_content_digest",
    "http_sign",
    "http_signature_base",
    "http_signature_bytes",
    "http_verify_body_digest",
    "http_verify_content_digest",
    "seccomp_check",
    "seccomp_deny_list",
    "seccomp_install",
]

__version__: str

# --- errors (bindings/src/errors.rs) ---

class CoreError(Exception):
    """Base of every error the Rust core raises."""

class SettingError(CoreError, ValueError):
    """A setting or argument out of range; `field` names it, `problem` says what is wrong."""

    field: str
    problem: str

class ConfigRejected(CoreError, ValueError):
    """The core refused a config: the message names the field."""

class Ed25519KeyError(CoreError, ValueError):
    """A key input that cannot be parsed: `kind` (public/private), `format`, `problem`."""

    kind: KeyKind
    format: KeyFormat
    problem: KeyProblem

class HttpSignatureError(CoreError, ValueError):
    """A signed request was rejected or cannot be signed; `kind` says why, `code` is its
    stable problem-type code."""

    kind: HttpSigErrorKind
    code: str

class LimiterError(CoreError, ValueError):
    """An invalid rate-limiter setting; `kind` names it (rate, burst, max_keys)."""

    kind: LimiterErrorKind

class RouterError(CoreError, ValueError):
    """A route that cannot be compiled: `index` and `id` name the route, `field` the key."""

    index: int
    id: str
    field: str

class PolicyError(CoreError, ValueError):
    """A policy bundle failed to build or evaluate; `kind` says at which step."""

    kind: PolicyErrorKind

class PolicyCompileError(PolicyError):
    """A Rego module failed to compile: `module`, `line`, `col` (1-based, 0 if unknown),
    `message`."""

    module: str
    line: int
    col: int
    message: str

class SketchError(CoreError, ValueError):
    """Bytes that are not a sketch of this accuracy, or a quantile outside [0, 1]; see `kind`."""

    kind: SketchErrorKind

class SandboxError(CoreError):
    """A seccomp profile cannot be built or installed; `kind` says which."""

    kind: SandboxErrorKind

class SandboxProfileError(SandboxError, ValueError):
    """The seccomp profile cannot be built (unknown syscall, unsupported architecture)."""

class SandboxInstallError(SandboxError, OSError):
    """The kernel refused the seccomp filter."""

class NoEndpointAvailable(CoreError, RuntimeError):
    """No endpoint can take a request; `reason` says why."""

    reason: Unavailable

class UnknownEndpoint(CoreError, ValueError):
    """An endpoint index the balancer does not have; `index` is it."""

    index: int

# --- clock ---

@final
class ManualClock:
    """A clock that moves only when told to; pass it to core classes as `clock=`."""

    def __new__(cls) -> Self: ...
    def advance(self, seconds: float) -> None:
        """Move forward by `seconds` (SettingError if negative or not finite)."""
    def now(self) -> float: ...

# --- router (routing.py) ---

@final
class RouteMatch:
    """The route chosen for a request."""

    @property
    def id(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def params(self) -> dict[str, str]: ...
    @property
    def remainder(self) -> str: ...
    @property
    def prefix_len(self) -> int: ...

@final
class Router:
    """A live route table: lock-free lookups, atomic `replace` (RouterError on a bad route)."""

    def __new__(cls, routes: Sequence[Mapping[str, object]]) -> Self: ...
    def replace(self, routes: Sequence[Mapping[str, object]]) -> None: ...
    def lookup(
        self,
        method: str,
        path: str,
        host: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> RouteMatch | None: ...
    def __len__(self) -> int: ...

# --- limiter (limits.py) ---

@final
class LimiterErrorKind:
    """Which limiter setting is invalid."""

    Rate: ClassVar[LimiterErrorKind]
    Burst: ClassVar[LimiterErrorKind]
    MaxKeys: ClassVar[LimiterErrorKind]
    def __int__(self) -> int: ...

@final
class RateLimitDecision:
    """The outcome of a rate-limit check; truthy when allowed."""

    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset(self) -> float: ...
    @property
    def retry_after(self) -> float: ...
    @property
    def cost_exceeds_burst(self) -> bool: ...
    def __bool__(self) -> bool: ...

@final
class RateLimiter:
    """Keyed GCRA rate limiter with a bounded number of keys."""

    def __new__(
        cls,
        rate: str | float,
        burst: int,
        max_keys: int = 100_000,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def check(self, key: str, cost: int = 1) -> RateLimitDecision: ...
    def headers(self, decision: RateLimitDecision) -> dict[str, str]: ...
    def sweep(self) -> int: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> int: ...
    def __len__(self) -> int: ...

# --- histogram (histogram.py) ---

HISTOGRAM_OVERFLOW_KEY: str
HISTOGRAM_RELATIVE_ERROR: float

@final
class HistogramSnapshot:
    """Summary of a latency histogram; times in seconds."""

    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def mean(self) -> float: ...
    @property
    def min(self) -> float: ...
    @property
    def max(self) -> float: ...
    @property
    def p50(self) -> float: ...
    @property
    def p90(self) -> float: ...
    @property
    def p95(self) -> float: ...
    @property
    def p99(self) -> float: ...
    @property
    def p999(self) -> float: ...
    def to_dict(self) -> dict[str, float]: ...

@final
class LatencyHistogram:
    """A lock-free latency histogram (2 significant digits, 0 ns .. 1 h)."""

    def __new__(cls) -> Self: ...
    def record(self, nanos: int) -> None: ...
    def record_seconds(self, seconds: float) -> None: ...
    def snapshot(self) -> HistogramSnapshot: ...
    def quantile(self, q: float) -> float: ...
    def buckets(self, bounds: Sequence[float]) -> list[int]: ...
    def reset(self) -> None: ...
    @property
    def count(self) -> int: ...

@final
class HistogramSet:
    """Latency histograms by key, bounded; extra keys go to an overflow histogram."""

    def __new__(cls, max_keys: int = 1024) -> Self: ...
    def record(self, key: str, nanos: int) -> None: ...
    def record_seconds(self, key: str, seconds: float) -> None: ...
    def get(self, key: str) -> LatencyHistogram | None: ...
    def histogram(self, key: str) -> LatencyHistogram: ...
    def snapshot(self, key: str) -> HistogramSnapshot | None: ...
    def snapshot_all(self) -> dict[str, HistogramSnapshot]: ...
    def keys(self) -> list[str]: ...
    def reset(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...

# --- breaker (breaker.py) ---

@final
class BreakerState:
    """A breaker's state; `str()` gives its name in APIs ("closed", "open", "half_open")."""

    Closed: ClassVar[BreakerState]
    Open: ClassVar[BreakerState]
    HalfOpen: ClassVar[BreakerState]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class Outcome:
    """How a request that a breaker or balancer let through ended ("success", ...)."""

    Success: ClassVar[Outcome]
    Failure: ClassVar[Outcome]
    Cancelled: ClassVar[Outcome]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class BreakerConfig:
    """Validated circuit-breaker settings (durations in seconds), e.g. for balancer endpoints."""

    def __new__(
        cls,
        consecutive_failures: int = 5,
        error_rate: float = 0.5,
        min_requests: int = 20,
        window: float = 10.0,
        buckets: int = 10,
        open_for: float = 10.0,
        max_open_for: float = 300.0,
        backoff: float = 2.0,
        half_open_probes: int = 1,
    ) -> Self: ...

@final
class BreakerStats:
    """A point-in-time view of a circuit breaker."""

    @property
    def state(self) -> BreakerState: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def window_requests(self) -> int: ...
    @property
    def window_failures(self) -> int: ...
    @property
    def trips(self) -> int: ...
    @property
    def open_until(self) -> float | None: ...

@disjoint_base
class CircuitBreaker:
    """Circuit breaker over the core; `agentgate.breaker.CircuitBreaker` extends it."""

    def __new__(
        cls,
        consecutive_failures: int = 5,
        error_rate: float = 0.5,
        min_requests: int = 20,
        window: float = 10.0,
        open_for: float = 10.0,
        max_open_for: float = 300.0,
        backoff: float = 2.0,
        half_open_probes: int = 1,
        *,
        buckets: int = 10,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def allow(self) -> bool: ...
    def success(self) -> None: ...
    def failure(self) -> None: ...
    def cancelled(self) -> None: ...
    def record(self, outcome: Outcome) -> None: ...
    @property
    def state(self) -> BreakerState: ...
    def stats(self) -> BreakerStats: ...
    def force_open(self) -> None: ...
    def reset(self) -> None: ...

# --- balancer (balancer.py) ---

@final
class Unavailable:
    """Why no endpoint could be picked ("empty", "no_healthy", "all_open")."""

    Empty: ClassVar[Unavailable]
    NoHealthy: ClassVar[Unavailable]
    AllOpen: ClassVar[Unavailable]
    def __int__(self) -> int: ...

@final
class EndpointSpec:
    """One endpoint to balance over: its id, weight and breaker settings."""

    def __new__(cls, id: str, weight: int = 1, breaker: BreakerConfig | None = None) -> Self: ...
    @property
    def id(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def breaker(self) -> BreakerConfig: ...

@final
class EndpointStats:
    """A point-in-time view of one balancer endpoint (ewma in seconds)."""

    @property
    def id(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def outstanding(self) -> int: ...
    @property
    def ewma(self) -> float: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def breaker(self) -> BreakerStats: ...

@final
class Balancer:
    """Weighted p2c peak-EWMA balancer; `agentgate.balancer.Balancer` wraps it."""

    def __new__(
        cls,
        endpoints: Sequence[EndpointSpec],
        decay: float = 10.0,
        *,
        clock: ManualClock | None = None,
        seed: int | None = None,
    ) -> Self: ...
    def pick(self) -> int:
        """Index of the chosen endpoint; NoEndpointAvailable if none can take the request."""
    def finish(self, index: int, latency: float, outcome: Outcome = ...) -> None: ...
    def set_healthy(self, index: int, healthy: bool) -> None: ...
    def force_open(self, index: int) -> None: ...
    def reset(self, index: int) -> None: ...
    def index_of(self, id: str) -> int | None: ...
    def stats(self, index: int) -> EndpointStats: ...
    def __len__(self) -> int: ...

# --- admission (admission.py) ---

@final
class Priority:
    """A request class, most important first; `str()` gives its config name ("high")."""

    Critical: ClassVar[Priority]
    High: ClassVar[Priority]
    Normal: ClassVar[Priority]
    Low: ClassVar[Priority]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class Refusal:
    """Why a request ended without a slot ("queue_full", "shed", "timeout")."""

    QueueFull: ClassVar[Refusal]
    Shed: ClassVar[Refusal]
    Timeout: ClassVar[Refusal]
    def __int__(self) -> int: ...

@final
class AcquireOutcome:
    """What `PriorityAdmission.acquire` decided: admitted, queued on `ticket`, or `refusal`;
    `shed` lists the waiters evicted to make room."""

    @property
    def admitted(self) -> bool: ...
    @property
    def ticket(self) -> int | None: ...
    @property
    def refusal(self) -> Refusal | None: ...
    @property
    def shed(self) -> list[int]: ...

@final
class PriorityAdmission:
    """Priority admission state machine; `agentgate.admission.AdmissionController` drives it."""

    def __new__(
        cls,
        max_concurrency: int,
        max_queue: int,
        max_wait: Mapping[Priority, float | None],
        *,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def acquire(self, priority: Priority) -> AcquireOutcome: ...
    def release(self) -> int | None: ...
    def cancel(self, ticket: int) -> bool: ...
    def expire(self) -> list[int]: ...
    def depths(self) -> dict[Priority, int]: ...
    @property
    def in_flight(self) -> int: ...

# --- signature (crypto.py) ---

_KeyInput = bytes | str

@final
class KeyKind:
    """Which key was being parsed."""

    Public: ClassVar[KeyKind]
    Private: ClassVar[KeyKind]
    def __int__(self) -> int: ...

@final
class KeyFormat:
    """Which key encoding the parser recognised (or last tried)."""

    Raw: ClassVar[KeyFormat]
    Base64: ClassVar[KeyFormat]
    Pem: ClassVar[KeyFormat]
    Der: ClassVar[KeyFormat]
    def __int__(self) -> int: ...

@final
class KeyProblem:
    """What is wrong with a key input (the message gives the details)."""

    NotText: ClassVar[KeyProblem]
    Length: ClassVar[KeyProblem]
    Base64: ClassVar[KeyProblem]
    PemLabel: ClassVar[KeyProblem]
    PemStructure: ClassVar[KeyProblem]
    NotEd25519: ClassVar[KeyProblem]
    Der: ClassVar[KeyProblem]
    NotOnCurve: ClassVar[KeyProblem]
    PublicKeyMismatch: ClassVar[KeyProblem]
    def __int__(self) -> int: ...

@final
class BatchMode:
    """How `ed25519_verify_batch` decides ("exact", "exact-batched", "fast")."""

    Exact: ClassVar[BatchMode]
    ExactBatched: ClassVar[BatchMode]
    Fast: ClassVar[BatchMode]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class Ed25519PublicKey:
    """An Ed25519 public key parsed once, for repeated verification."""

    def __new__(cls, key: _KeyInput | Ed25519PublicKey) -> Self: ...
    def verify(self, message: bytes, signature: bytes) -> bool: ...
    @property
    def raw(self) -> bytes: ...
    def to_base64(self) -> str: ...
    def to_pem(self) -> str: ...

@final
class Ed25519PrivateKey:
    """An Ed25519 private key parsed once, for repeated signing."""

    def __new__(cls, key: _KeyInput | Ed25519PrivateKey) -> Self: ...
    @staticmethod
    def generate() -> Ed25519PrivateKey: ...
    def sign(self, message: bytes) -> bytes: ...
    def public_key(self) -> Ed25519PublicKey: ...
    @property
    def seed(self) -> bytes: ...
    def to_pem(self) -> str: ...

def ed25519_sign(private_key: _KeyInput | Ed25519PrivateKey, message: bytes) -> bytes: ...
def ed25519_verify(
    public_key: _KeyInput | Ed25519PublicKey, message: bytes, signature: bytes
) -> bool: ...
def ed25519_verify_batch(
    items: Sequence[tuple[_KeyInput | Ed25519PublicKey, bytes, bytes]],
    mode: BatchMode = ...,
) -> list[bool]: ...
def ed25519_public_from_private(private_key: _KeyInput | Ed25519PrivateKey) -> bytes: ...
def ed25519_public_raw(public_key: _KeyInput | Ed25519PublicKey) -> bytes: ...
def ed25519_public_pem(public_key: _KeyInput | Ed25519PublicKey) -> str: ...
def ed25519_public_b64(public_key: _KeyInput | Ed25519PublicKey) -> str: ...
def ed25519_private_pem(private_key: _KeyInput | Ed25519PrivateKey) -> str: ...

# --- httpsig (signing.py) ---

@final
class HttpSigErrorKind:
    """Why a signed request was rejected; `str()` is its stable code ("bad-signature")."""

    MissingSignature: ClassVar[HttpSigErrorKind]
    Malformed: ClassVar[HttpSigErrorKind]
    LabelNotFound: ClassVar[HttpSigErrorKind]
    MissingKeyId: ClassVar[HttpSigErrorKind]
    UnknownKeyId: ClassVar[HttpSigErrorKind]
    UnsupportedAlgorithm: ClassVar[HttpSigErrorKind]
    UnsupportedComponent: ClassVar[HttpSigErrorKind]
    ComponentNotCovered: ClassVar[HttpSigErrorKind]
    ComponentMissing: ClassVar[HttpSigErrorKind]
    MissingCreated: ClassVar[HttpSigErrorKind]
    MissingNonce: ClassVar[HttpSigErrorKind]
    Expired: ClassVar[HttpSigErrorKind]
    TooOld: ClassVar[HttpSigErrorKind]
    CreatedInFuture: ClassVar[HttpSigErrorKind]
    ReplayedNonce: ClassVar[HttpSigErrorKind]
    BadSignature: ClassVar[HttpSigErrorKind]
    DigestMismatch: ClassVar[HttpSigErrorKind]
    MissingDigest: ClassVar[HttpSigErrorKind]
    def __int__(self) -> int: ...

@final
class DigestAlg:
    """A Content-Digest algorithm; `str()` is its RFC 9530 key ("sha-256")."""

    Sha256: ClassVar[DigestAlg]
    Sha512: ClassVar[DigestAlg]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class ContentDigestHasher:
    """Incremental body hasher for streaming."""

    def __new__(cls, alg: DigestAlg = ...) -> Self: ...
    def update(self, chunk: bytes) -> None: ...
    def header_value(self) -> str: ...

@final
class ContentDigestCheck:
    """Streaming check of a body against a Content-Digest header."""

    def __new__(cls, header: str) -> Self: ...
    def update(self, chunk: bytes) -> None: ...
    def finish(self) -> bool: ...

@final
class SignedHeaders:
    """The header values that sign a request, and the signature base they cover."""

    @property
    def signature_input(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def base(self) -> str: ...

@final
class VerifiedSignature:
    """A verified request signature."""

    @property
    def label(self) -> str: ...
    @property
    def keyid(self) -> str: ...
    @property
    def created(self) -> int | None: ...
    @property
    def expires(self) -> int | None: ...
    @property
    def nonce(self) -> str | None: ...
    @property
    def alg(self) -> str | None: ...
    @property
    def tag(self) -> str | None: ...
    @property
    def components(self) -> list[str]: ...

@final
class HttpSigVerifier:
    """Verifies RFC 9421 request signatures against keys, a policy, a clock and a nonce cache."""

    def __new__(
        cls,
        keys: Mapping[str, bytes | str | Ed25519PublicKey],
        *,
        required_components: Sequence[str] | None = None,
        require_digest_with_body: bool = True,
        require_created: bool = True,
        require_nonce: bool = False,
        max_age: int | None = 300,
        skew: int = 60,
        nonce_capacity: int | None = 100_000,
        clock: ManualClock | None = None,
        now: float | None = None,
    ) -> Self: ...
    def set_key(self, keyid: str, key: bytes | str | Ed25519PublicKey) -> None: ...
    def remove_key(self, keyid: str) -> bool: ...
    def now(self) -> int: ...
    def verify(
        self,
        method: str,
        scheme: str,
        authority: str,
        path: str,
        query: str | None,
        headers: Sequence[tuple[str, str]],
        *,
        has_body: bool = False,
        label: str | None = None,
    ) -> VerifiedSignature:
        """Verify the request's signature; HttpSignatureError says why not."""

def http_content_digest(body: bytes, alg: DigestAlg = ...) -> str: ...
def http_verify_content_digest(header: str, body: bytes) -> bool: ...
def http_verify_body_digest(headers: Sequence[tuple[str, str]], body: bytes) -> None: ...
def http_sign(
    method: str,
    scheme: str,
    authority: str,
    path: str,
    query: str | None,
    headers: Sequence[tuple[str, str]],
    components: Sequence[str],
    private_key: bytes | str | Ed25519PrivateKey,
    label: str,
    *,
    keyid: str | None = None,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
    alg: str | None = None,
    tag: str | None = None,
) -> SignedHeaders: ...
def http_signature_base(
    method: str,
    scheme: str,
    authority: str,
    path: str,
    query: str | None,
    headers: Sequence[tuple[str, str]],
    signature_input: str,
    label: str | None = None,
) -> str: ...
def http_signature_bytes(signature: str, label: str) -> bytes | None: ...

# --- data plane (gateway/dataplane.py) ---

LATENCY_BOUNDS: tuple[float, ...]

@final
class LatencyCounts:
    """Latency observations: counts per `LATENCY_BOUNDS` bucket (+Inf last), their sum, and the
    same observations as a sketch (1 % relative error)."""

    @property
    def buckets(self) -> list[int]: ...
    @property
    def sum(self) -> float: ...
    @property
    def sketch(self) -> Sketch: ...

@final
class StatusClass:
    """A response status's class; `str()` gives its metrics label ("2xx", "other")."""

    Other: ClassVar[StatusClass]
    Informational: ClassVar[StatusClass]
    Success: ClassVar[StatusClass]
    Redirection: ClassVar[StatusClass]
    ClientError: ClassVar[StatusClass]
    ServerError: ClassVar[StatusClass]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class RouteCounts:
    """Requests of one route since the last take, by status class (zeros included)."""

    @property
    def agent(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def by_class(self) -> dict[StatusClass, int]: ...
    @property
    def latency(self) -> LatencyCounts: ...

@final
class UsageCount:
    """Tokens one tenant used with one model since the last take (from upstream responses)."""

    @property
    def tenant(self) -> str | None: ...
    @property
    def model(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def requests(self) -> int: ...

@final
class AgentCounts:
    """One agent's counts since the last take."""

    @property
    def agent(self) -> str: ...
    @property
    def upstream(self) -> LatencyCounts: ...
    @property
    def retries(self) -> int: ...
    @property
    def shed(self) -> int: ...
    @property
    def usage(self) -> list[UsageCount]: ...

@final
class RejectedCount:
    """Answers of the gateway's own with one status (None: any status not counted alone)."""

    @property
    def status(self) -> int | None: ...
    @property
    def count(self) -> int: ...

@final
class StatsDelta:
    """Everything counted since the last take."""

    @property
    def routes(self) -> list[RouteCounts]: ...
    @property
    def agents(self) -> list[AgentCounts]: ...
    @property
    def rejected(self) -> list[RejectedCount]: ...

@final
class EndpointState:
    """One endpoint as the data plane sees it."""

    @property
    def url(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def breaker(self) -> BreakerState: ...
    @property
    def breaker_trips(self) -> int: ...
    @property
    def breaker_open_for(self) -> float: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def latency(self) -> float: ...
    @property
    def last_probe(self) -> float: ...
    @property
    def last_status(self) -> int | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def probe_successes(self) -> int: ...
    @property
    def probe_failures(self) -> int: ...
    @property
    def connections_opened(self) -> int: ...
    @property
    def idle_connections(self) -> int: ...

@final
class AgentState:
    """One agent as the data plane sees it."""

    @property
    def name(self) -> str: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def queued(self) -> dict[Priority, int]:
        """Waiting requests per priority class."""
    @property
    def health_checked(self) -> bool: ...
    @property
    def retry_budget(self) -> float: ...
    @property
    def requests(self) -> int:
        """Requests admitted since the agent appeared (monotonic)."""
    @property
    def endpoints(self) -> list[EndpointState]: ...

@final
class ProbeResult:
    """One on-demand probe of an endpoint."""

    @property
    def url(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def latency(self) -> float: ...
    @property
    def attempts(self) -> int: ...

@final
class DataPlane:
    """The core's own HTTP listener, engine, upstream client and health checks."""

    def __new__(cls, config: bytes, workers: int = 1, clock: ManualClock | None = None) -> Self: ...
    def listen(self, address: str) -> int:
        """Serve on `ip:port` (port 0: any free one); returns the port."""
    def replace(self, config: bytes) -> None:
        """Swap a new config in; on ConfigRejected the running one stays."""
    def take_stats(self) -> StatsDelta: ...
    def agents(self) -> list[AgentState]: ...
    def set_limited_tenants(self, tenants: list[str]) -> None:
        """Tenants over their spending budget: their requests get 429 `budget-exceeded`."""
    def activations(self, timeout: float = 1.0) -> list[str]:
        """Agents requests wait for (scale from zero); blocks up to `timeout` for one."""
    def probe(self, agent: str, attempts: int = 3) -> list[ProbeResult]: ...
    def shutdown(self, grace: float) -> bool: ...

# --- cluster rate limits (gateway/leases.py) ---

@final
class RedisState:
    """Whether the lease loop reaches Redis; `str()` gives "up" or "down"."""

    Up: ClassVar[RedisState]
    Down: ClassVar[RedisState]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class KeyDemand:
    """One key of a cluster route that wants the lease loop's attention."""

    @property
    def route(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def asked(self) -> int:
        """Requests since the last take, admitted or not."""
    @property
    def tokens(self) -> int:
        """Leased tokens left; negative: spent ahead of a lease, owed to Redis."""
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> int: ...
    @property
    def credit(self) -> int:
        """Tokens a key may spend ahead of its lease in this gateway."""

@final
class LimitDecisions:
    """One cluster route's decisions since the last take."""

    @property
    def route(self) -> str: ...
    @property
    def allowed(self) -> int: ...
    @property
    def borrowed(self) -> int: ...
    @property
    def limited(self) -> int: ...
    @property
    def fail_open(self) -> int: ...
    @property
    def fail_closed(self) -> int: ...
    @property
    def local(self) -> int: ...

@final
class LeaseDemand:
    """What one take found: keys to lease for, and decision counts."""

    @property
    def keys(self) -> list[KeyDemand]: ...
    @property
    def decisions(self) -> list[LimitDecisions]: ...

@final
class LeaseGrant:
    """Tokens leased from Redis for one key of one route."""

    def __new__(
        cls,
        route: str,
        key: str,
        tokens: int,
        *,
        refill_at: int = 0,
        ttl: float = 1.0,
        retry_after: float = 0.0,
    ) -> Self: ...
    @property
    def route(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def tokens(self) -> int: ...
    @property
    def refill_at(self) -> int: ...
    @property
    def ttl(self) -> float: ...
    @property
    def retry_after(self) -> float: ...

@final
class ClusterLeases:
    """The lease side of a data plane's cluster rate limits."""

    def __new__(cls, dataplane: DataPlane) -> Self: ...
    def wait(self, timeout: float = 0.0) -> bool:
        """Block up to `timeout` s until a key runs low (0: only look); True if one did."""
    def take(self) -> LeaseDemand:
        """Every cluster route's demand per key and decision counts since the last take."""
    def grant(self, grants: Sequence[LeaseGrant]) -> int:
        """Add leased tokens; returns how many grants applied."""
    def report(self, state: RedisState) -> None:
        """Report Redis reachability (also the loop's heartbeat)."""
    def state(self) -> RedisState: ...
    def active(self) -> bool:
        """Whether any route is cluster-limited."""

# --- policy (policy/) ---

DEFAULT_POLICY_QUERY: str

@final
class PolicyErrorKind:
    """At which step a policy failed."""

    Compile: ClassVar[PolicyErrorKind]
    Data: ClassVar[PolicyErrorKind]
    Input: ClassVar[PolicyErrorKind]
    Eval: ClassVar[PolicyErrorKind]
    Shape: ClassVar[PolicyErrorKind]
    def __int__(self) -> int: ...

@final
class DenyReason:
    """One reason a decision denies: the rule that produced it and its message."""

    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...

@final
class Decision:
    """The outcome of one policy evaluation."""

    @property
    def allow(self) -> bool: ...
    @property
    def reasons(self) -> list[DenyReason]: ...

@final
class ModuleCoverage:
    """Lines of one module an evaluation touched (1-based)."""

    @property
    def module(self) -> str: ...
    @property
    def covered(self) -> list[int]: ...
    @property
    def not_covered(self) -> list[int]: ...

@final
class Explanation:
    """A dry run: the decision, the raw query result (JSON text) and which module lines ran."""

    @property
    def decision(self) -> Decision: ...
    @property
    def result_json(self) -> str: ...
    @property
    def coverage(self) -> list[ModuleCoverage]: ...

@final
class PolicyEngine:
    """A compiled Rego bundle; `evaluate` is thread-safe and releases the GIL."""

    def __new__(
        cls, modules: Mapping[str, str], data: str | None = None, query: str = ...
    ) -> Self: ...
    def evaluate(self, input_json: bytes | str) -> Decision: ...
    def explain(self, input_json: bytes | str) -> Explanation: ...
    @property
    def modules(self) -> list[str]: ...
    @property
    def query(self) -> str: ...
    @property
    def uses_vm(self) -> bool: ...

# --- sandbox: seccomp profiles for agent replicas (rust/src/sandbox.rs) ---

@final
class DenyAction:
    """What a denied syscall does; `str()` is its config name ("errno", "kill")."""

    Errno: ClassVar[DenyAction]
    Kill: ClassVar[DenyAction]
    def __new__(cls, name: str) -> Self: ...
    def __int__(self) -> int: ...

@final
class SandboxErrorKind:
    """Why a seccomp profile cannot be built or installed."""

    UnknownSyscall: ClassVar[SandboxErrorKind]
    UnsupportedArch: ClassVar[SandboxErrorKind]
    Compile: ClassVar[SandboxErrorKind]
    Install: ClassVar[SandboxErrorKind]
    def __int__(self) -> int: ...

def seccomp_deny_list(extra: Sequence[str] = ...) -> list[str]:
    """The default deny list plus `extra`, sorted."""

def seccomp_check(extra: Sequence[str] = ..., on_deny: DenyAction = ...) -> int:
    """Compile the profile without installing it; SandboxProfileError names a bad syscall."""

def seccomp_install(extra: Sequence[str] = ..., on_deny: DenyAction = ...) -> None:
    """Compile and install the profile on the calling thread (irreversible; SandboxInstallError,
    an OSError, if the kernel refuses)."""

# --- sketch (observe/) ---

SKETCH_RELATIVE_ACCURACY: float

@final
class SketchErrorKind:
    """What is wrong with a sketch operation."""

    Decode: ClassVar[SketchErrorKind]
    Mapping: ClassVar[SketchErrorKind]
    Quantile: ClassVar[SketchErrorKind]
    def __int__(self) -> int: ...

@final
class Sketch:
    """A mergeable DDSketch (1 % relative error) with exact count, sum, min and max."""

    def __new__(cls) -> Self: ...
    @staticmethod
    def from_bytes(data: bytes) -> Sketch: ...
    @staticmethod
    def merged(blobs: Sequence[bytes | None]) -> Sketch: ...
    def add(self, value: float, count: int = 1) -> None: ...
    def add_many(self, values: Sequence[float]) -> None: ...
    def merge(self, other: Sketch) -> None: ...
    def merge_bytes(self, data: bytes) -> None: ...
    def quantile(self, q: float) -> float | None: ...
    def quantiles(self, qs: Sequence[float]) -> list[float | None]: ...
    def fraction_below(self, value: float) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...
    def to_bytes(self) -> bytes: ...

@final
class AtomicSketch:
    """A lock-free recorder of seconds into DDSketch bins; `take()` returns and resets."""

    def __new__(cls) -> Self: ...
    def observe(self, seconds: float) -> None: ...
    def take(self) -> Sketch: ...

@final
class RollupTable:
    """Per-agent rollups of a time range (counts by status class, gauge maxima, latency sketch),
    merged a whole table at a time."""

    def __new__(cls) -> Self: ...
    @staticmethod
    def from_rows(
        rows: Sequence[tuple[int, str, int, int, int, int, int, int, int, int, bytes | None]],
    ) -> RollupTable: ...
    @staticmethod
    def by_bucket(
        rows: Sequence[tuple[int, str, int, int, int, int, int, int, int, int, bytes | None]],
    ) -> list[tuple[int, RollupTable]]: ...
    @staticmethod
    def merged(tables: Sequence[RollupTable]) -> RollupTable: ...
    def rows(self) -> list[tuple[str, list[int], int, int, Sketch]]: ...
    @property
    def nbytes(self) -> int: ...
    def __len__(self) -> int: ...

@final
class DecodedTable:
    """A RollupTable with its sketches decoded, kept to be combined with rows still changing."""

    def __new__(cls, table: RollupTable) -> Self: ...
    def rows_with(
        self, extra: Sequence[RollupTable]
    ) -> list[tuple[str, list[int], int, int, Sketch]]: ...
    @property
    def nbytes(self) -> int: ...
