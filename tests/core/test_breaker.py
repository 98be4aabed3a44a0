"""Circuit breaker through the real extension, driven by a ManualClock."""

from __future__ import annotations

import asyncio

import pytest

from agentgate._core import ManualClock, SettingError
from agentgate.breaker import BreakerConfig, BreakerState, CircuitBreaker, CircuitOpenError, Outcome


def make(**kw: object) -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker(clock=clock, **kw), clock  # type: ignore[arg-type]


def fail(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        assert b.allow()
        b.failure()


def test_closed_open_half_open_closed() -> None:
    b, clock = make(consecutive_failures=3, error_rate=0.0, open_for=10.0)
    assert b.state == BreakerState.Closed
    fail(b, 3)
    assert b.state == BreakerState.Open
    assert not b.allow()
    s = b.stats()
    assert s.trips == 1
    assert s.open_until == pytest.approx(clock.now() + 10.0)
    clock.advance(9.999)
    assert not b.allow()
    clock.advance(0.001)
    assert b.state == BreakerState.HalfOpen
    assert b.allow()
    assert not b.allow(), "one probe at a time"
    b.success()
    assert b.state == BreakerState.Closed


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
    assert b.state == BreakerState.Closed, "3 requests < min_requests"
    fail(b, 1)
    assert b.state == BreakerState.Open, "2 of 4 failed"


def test_cancelled_returns_the_probe() -> None:
    b, clock = make(consecutive_failures=1, half_open_probes=2)
    fail(b, 1)
    clock.advance(10.0)
    assert b.allow() and b.allow()
    assert not b.allow()
    b.cancelled()
    assert b.allow()
    b.success()
    assert b.state == BreakerState.HalfOpen
    b.success()
    assert b.state == BreakerState.Closed


def test_force_open_and_reset() -> None:
    b, clock = make()
    b.force_open()
    clock.advance(1e6)
    assert not b.allow()
    assert b.stats().open_until == float("inf")
    b.reset()
    assert b.allow()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"open_for": 10.0, "max_open_for": 1.0}, "max_open_for"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"window": -1.0}, "window"),
        ({"window": 0.0}, "window"),
        ({"open_for": 0.0}, "open_for"),
        ({"backoff": 0.5}, "backoff"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, float], field: str) -> None:
    for make_it in (CircuitBreaker, BreakerConfig):
        with pytest.raises(SettingError) as e:
            make_it(**kwargs)  # type: ignore[arg-type]
        assert e.value.field == field
        assert isinstance(e.value, ValueError)
        assert str(e.value).startswith(field)


def test_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        CircuitBreaker(bogus=1)  # type: ignore[call-arg]


def test_states_and_outcomes_have_their_api_names() -> None:
    assert [str(s) for s in (BreakerState.Closed, BreakerState.Open, BreakerState.HalfOpen)] == [
        "closed",
        "open",
        "half_open",
    ]
    assert BreakerState("half_open") == BreakerState.HalfOpen
    assert Outcome("cancelled") == Outcome.Cancelled and str(Outcome.Failure) == "failure"
    assert repr(BreakerState.Open) == "BreakerState.Open"
    with pytest.raises(ValueError, match="half_open"):
        BreakerState("half-open")
    b, _ = make(consecutive_failures=1)
    assert b.allow()
    b.record(Outcome.Failure)
    assert b.state == BreakerState.Open


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
    assert e.value.state == BreakerState.Open
    assert str(e.value) == "circuit breaker is open"


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
    assert b.state == BreakerState.HalfOpen
    assert b.allow(), "cancellation returned the probe without counting a failure"
    b.success()
    assert b.state == BreakerState.Closed


def test_subclass_keeps_core_methods() -> None:
    b = CircuitBreaker()
    assert isinstance(b.stats().window_requests, int)
    assert "BreakerState.Closed" in repr(b.stats())
