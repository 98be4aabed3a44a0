"""Circuit breaker: stop calling an upstream that keeps failing, probe it after a cool-down.

The state machine lives in the Rust core (`agentgate._core.CircuitBreaker`); this module adds the
Python conveniences. Contract: every `allow()` that returned True is followed by exactly one of
`success()`, `failure()` or `cancelled()` (the last returns a half-open probe permit without
counting), or `record(outcome)`. `call` and `acall` keep that contract for you. `state` is a
`BreakerState` member; `str(state)` is its name ("closed", "open", "half_open").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from agentgate._core import BreakerConfig, BreakerState, BreakerStats, Outcome
from agentgate._core import CircuitBreaker as _CoreBreaker

__all__ = [
    "BreakerConfig",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "CircuitOpenError",
    "Outcome",
]

P = ParamSpec("P")
T = TypeVar("T")


class CircuitOpenError(RuntimeError):
    """Raised by `call`/`acall` when the breaker refuses the request (open, or probes busy)."""

    def __init__(self, state: BreakerState) -> None:
        super().__init__(f"circuit breaker is {state}")
        self.state = state


class CircuitBreaker(_CoreBreaker):
    """A thread-safe circuit breaker (consecutive failures + windowed error rate, backoff)."""

    __slots__ = ()

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs `fn` if allowed: an exception counts as a failure, a non-Exception as cancelled."""
        if not self.allow():
            raise CircuitOpenError(self.state)
        try:
            result = fn(*args, **kwargs)
        except Exception:
            self.failure()
            raise
        except BaseException:
            self.cancelled()
            raise
        self.success()
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaits `fn(...)` if allowed; task cancellation is reported as cancelled, not failure."""
        if not self.allow():
            raise CircuitOpenError(self.state)
        try:
            result = await fn(*args, **kwargs)
        except Exception:
            self.failure()
            raise
        except BaseException:
            self.cancelled()
            raise
        self.success()
        return result
