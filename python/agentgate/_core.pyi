"""Typed surface of the Rust extension module `agentgate._core`."""

__version__: str

class ManualClock:
    """A clock that moves only when told to; pass it to core classes as `clock=`."""

    def __init__(self) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def now(self) -> float: ...

# --- router (routing.py) ---

# --- limiter (limits.py) ---

# --- histogram (histogram.py) ---

# --- breaker (breaker.py) ---

class BreakerConfig:
    """Validated circuit-breaker settings (durations in seconds), e.g. for balancer endpoints."""

    def __init__(
        self,
        consecutive_failures: int = 5,
        error_rate: float = 0.5,
        min_requests: int = 20,
        window: float = 10.0,
        buckets: int = 10,
        open_for: float = 10.0,
        max_open_for: float = 300.0,
        backoff: float = 2.0,
        half_open_probes: int = 1,
    ) -> None: ...

class BreakerStats:
    """A point-in-time view of a circuit breaker."""

    @property
    def state(self) -> str: ...
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

class CircuitBreaker:
    """Circuit breaker over the core; `agentgate.breaker.CircuitBreaker` extends it."""

    def __init__(
        self,
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
    ) -> None: ...
    def allow(self) -> bool: ...
    def success(self) -> None: ...
    def failure(self) -> None: ...
    def cancelled(self) -> None: ...
    @property
    def state(self) -> str: ...
    def stats(self) -> BreakerStats: ...
    def force_open(self) -> None: ...
    def reset(self) -> None: ...

# --- balancer (balancer.py) ---

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

class Balancer:
    """Weighted p2c peak-EWMA balancer; `agentgate.balancer.Balancer` wraps it."""

    def __init__(
        self,
        endpoints: list[tuple[str, int, BreakerConfig]],
        decay: float = 10.0,
        *,
        clock: ManualClock | None = None,
        seed: int | None = None,
    ) -> None: ...
    def pick(self) -> int: ...
    def finish(self, index: int, latency: float, outcome: str = "success") -> None: ...
    def set_healthy(self, index: int, healthy: bool) -> None: ...
    def force_open(self, index: int) -> None: ...
    def reset(self, index: int) -> None: ...
    def index_of(self, id: str) -> int | None: ...
    def stats(self, index: int) -> EndpointStats: ...
    def __len__(self) -> int: ...

# --- admission (admission.py) ---

class Admission:
    """Priority admission state machine; `agentgate.admission.AdmissionController` drives it."""

    def __init__(
        self,
        max_concurrency: int,
        max_queue: int,
        max_wait: tuple[float | None, float | None, float | None, float | None],
        *,
        clock: ManualClock | None = None,
    ) -> None: ...
    def acquire(self, priority: str) -> tuple[int, int, list[int]]: ...
    def release(self) -> int | None: ...
    def cancel(self, ticket: int) -> bool: ...
    def expire(self) -> list[int]: ...
    def depths(self) -> tuple[int, int, int, int]: ...
    @property
    def in_flight(self) -> int: ...

# --- signature (crypto.py) ---

# --- httpsig (signing.py) ---
