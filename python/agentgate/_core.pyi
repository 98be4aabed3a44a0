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

# --- balancer (balancer.py) ---

# --- admission (admission.py) ---

# --- signature (crypto.py) ---

# --- httpsig (signing.py) ---
