"""Rate limiter through the real extension, driven by a ManualClock (no sleeping)."""

from __future__ import annotations

import math

import pytest

from agentgate._core import ManualClock
from agentgate.limits import (
    LimiterError,
    LimiterErrorKind,
    RateLimitDecision,
    RateLimiter,
    SettingError,
)


def test_burst_then_rate() -> None:
    clock = ManualClock()
    lim = RateLimiter("10/s", burst=3, clock=clock)
    decisions = [lim.check("k") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    denied = decisions[-1]
    assert isinstance(denied, RateLimitDecision)
    assert not denied
    assert denied.limit == 3
    assert denied.retry_after == pytest.approx(0.1)
    assert denied.reset == pytest.approx(0.3)
    assert lim.check("other").allowed
    clock.advance(denied.retry_after)
    assert lim.check("k")
    assert not lim.check("k")


def test_cost_and_cost_above_burst() -> None:
    clock = ManualClock()
    lim = RateLimiter(100.0, burst=10, clock=clock)
    assert lim.check("k", cost=10).allowed
    d = lim.check("k", cost=11)
    assert not d.allowed and d.cost_exceeds_burst
    assert math.isinf(d.retry_after)
    assert "Retry-After" not in lim.headers(d)
    assert lim.check("k", cost=0).remaining == 0


def test_headers() -> None:
    clock = ManualClock()
    lim = RateLimiter("100/s", burst=100, clock=clock)
    for _ in range(50):
        lim.check("k")
    d = lim.check("k")
    assert lim.headers(d) == {
        "RateLimit-Policy": '"default";q=100;w=1',
        "RateLimit": '"default";r=49;t=1',
    }
    lim = RateLimiter("30/m", burst=1, clock=clock)
    lim.check("k")
    d = lim.check("k")
    assert lim.headers(d) == {
        "RateLimit-Policy": '"default";q=1;w=2',
        "RateLimit": '"default";r=0;t=2',
        "Retry-After": "2",
    }


def test_bounded_keys_and_sweep() -> None:
    clock = ManualClock()
    lim = RateLimiter("1/s", burst=1, max_keys=100, clock=clock)
    for i in range(5000):
        assert lim.check(f"key-{i}").allowed
        assert len(lim) <= 100
    clock.advance(1.0)
    assert lim.sweep() > 0
    assert len(lim) == 0


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"rate": "100", "burst": 1}, LimiterErrorKind.Rate),
        ({"rate": "100/week", "burst": 1}, LimiterErrorKind.Rate),
        ({"rate": -1.0, "burst": 1}, LimiterErrorKind.Rate),
        ({"rate": "1/s", "burst": 0}, LimiterErrorKind.Burst),
        ({"rate": "1/s", "burst": 1, "max_keys": 0}, LimiterErrorKind.MaxKeys),
    ],
)
def test_bad_config(kwargs: dict[str, object], kind: LimiterErrorKind) -> None:
    with pytest.raises(LimiterError) as e:
        RateLimiter(**kwargs)  # type: ignore[arg-type]
    assert e.value.kind == kind
    assert isinstance(e.value, ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(SettingError) as e:
        RateLimiter("1/s", burst=-1)
    assert e.value.field == "burst"
    with pytest.raises(TypeError):
        RateLimiter([1], burst=1)  # type: ignore[arg-type]
    lim = RateLimiter("1/s", burst=1)
    with pytest.raises(SettingError) as e:
        lim.check("k", cost=-1)
    assert e.value.field == "cost"
    assert lim.rate == 1.0 and lim.burst == 1
