"""Circuit breaker through the real extension, driven by a ManualClock."""

from __future__ import annotations

import asyncio

import pytest

from agentgate._core import ManualClock
from agentgate.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError


def make(**kw: object) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker(clock=clock, **kw), clock  # type: ignore[arg-type]


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert b.allow()
        b.failure()


def test_closed_open_half_open_closed() -> None:
    b, clock = make(consecutive_failures=3, error_rate=0.0, open_for=10.0)
    assert b.state == "closed"
    fail(b, 3)
    assert b.state == "open"
    assert not b.allow()
    s = b.stats()
    assert s.trips == 1
    assert s.open_until == pytest.approx(clock.now() + 10.0)
    clock.advance(9.999)
    assert not b.allow()
    clock.advance(0.001)
    assert b.state == "half_open"
    assert b.allow()
    assert not b.allow(), "one probe at a time"
    b.success()
    assert b.state == "closed"


def test_probe_failure_reopens_with_backoff_and_cap() -> None:
    b, clock = make(consecutive_failures=1, open_for=1.0, max_open_for=5.0, backoff=3.0)
    fail(b, 1)
    for cool in (1.0, 3.0, 5.0, 5.0):
        s = b.stats()
        assert s.open_until is not None
        assert s.open_until - clock.now() == pytest.approx(cool)
        clock.advance(cool)
        assert b.allow()
        b.failure()
    assert b.stats().trips == 5


def test_error_rate_with_min_volume_and_window() -> None:
    b, clock = make(consecutive_failures=0, error_rate=0.5, min_requests=4, window=10.0)
    fail(b, 1)
    assert b.allow()
    b.success()
    assert b.allow()
    b.success()
    clock.advance(11.0)  # old results leave the window
    s = b.stats()
    assert (s.window_requests, s.window_failures) == (0, 0)
    for _ in range(2):
        assert b.allow()
        b.success()
    fail(b, 1)
    assert b.state == "closed", "3 requests < min_requests"
    fail(b, 1)
    assert b.state == "open", "2 of 4 failed"


def test_cancelled_returns_the_probe() -> None:
    b, clock = make(consecutive_failures=1, half_open_probes=2)
    fail(b, 1)
    clock.advance(10.0)
    assert b.allow() and b.allow()
    assert not b.allow()
    b.cancelled()
    assert b.allow()
    b.success()
    assert b.state == "half_open"
    b.success()
    assert b.state == "closed"


def test_force_open_and_reset() -> None:
    b, clock = make()
    b.force_open()
    clock.advance(1e6)
    assert not b.allow()
    assert b.stats().open_until == float("inf")
    b.reset()
    assert b.allow()


def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        CircuitBreaker(error_rate=1.5)
    with pytest.raises(ValueError, match="max_open_for"):
        CircuitBreaker(open_for=10.0, max_open_for=1.0)
    with pytest.raises(ValueError, match="half_open_probes"):
        CircuitBreaker(half_open_probes=0)
    with pytest.raises(ValueError, match="window"):
        CircuitBreaker(window=-1.0)
    with pytest.raises(ValueError, match="backoff"):
        BreakerConfig(backoff=0.5)
    with pytest.raises(TypeError):
        CircuitBreaker(bogus=1)  # type: ignore[call-arg]


def test_call_counts_exceptions_and_refuses_when_open() -> None:
    b, _ = make(consecutive_failures=2)
    assert b.call(lambda x: x + 1, 1) == 2

    def boom() -> None:
        raise OSError("down")

    for _ in range(2):
        with pytest.raises(OSError):
            b.call(boom)
    with pytest.raises(CircuitOpenError) as e:
        b.call(lambda: None)
    assert e.value.state == "open"


async def test_acall_counts_failures_but_not_cancellation() -> None:
    b, clock = make(consecutive_failures=1, half_open_probes=1)

    async def ok(v: int) -> int:
        return v

    assert await b.acall(ok, 3) == 3
    fail(b, 1)
    clock.advance(10.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(b.acall(hang))
    await started.wait()
    assert not b.allow(), "the probe is held by the task"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state == "half_open"
    assert b.allow(), "cancellation returned the probe without counting a failure"
    b.success()
    assert b.state == "closed"


def test_subclass_keeps_core_methods() -> None:
    b = CircuitBreaker()
    assert isinstance(b.stats().window_requests, int)
    assert "closed" in repr(b.stats())
