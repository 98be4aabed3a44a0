"""Load balancer through the real extension."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentgate._core import BreakerState, CoreError, ManualClock, SettingError, UnknownEndpoint
from agentgate.balancer import Balancer, NoEndpointAvailable, Outcome, Unavailable


def eps(*weights: int, **breaker: Any) -> list[dict[str, Any]]:
    return [
        {"id": f"e{i}", "weight": w, "breaker": breaker or {"consecutive_failures": 2}}
        for i, w in enumerate(weights)
    ]


def test_pick_finish_and_stats() -> None:
    clock = ManualClock()
    b = Balancer(eps(1, 1), clock=clock, seed=1)
    i = b.pick()
    assert b.stats()[i].outstanding == 1
    b.finish(i, 0.25)
    s = b.stats()[i]
    assert s.outstanding == 0
    assert s.ewma == pytest.approx(0.25)
    assert s.breaker.window_requests == 1
    assert len(b) == 2
    assert b.index_of("e1") == 1
    assert b.ids == ("e0", "e1")


def test_weights_drive_the_share_under_steady_load() -> None:
    b = Balancer(eps(1, 3), clock=ManualClock(), seed=42)
    counts: Counter[int] = Counter()
    held: list[int] = []
    for _ in range(8000):
        i = b.pick()
        counts[i] += 1
        held.append(i)
        if len(held) > 16:
            b.finish(held.pop(0), 0.01)
    share = counts[1] / 8000
    assert 0.65 < share < 0.85, counts


def test_slow_endpoint_gets_fewer_picks() -> None:
    clock = ManualClock()
    b = Balancer(eps(1, 1), clock=clock, seed=3)
    counts: Counter[int] = Counter()
    for _ in range(2000):
        i = b.pick()
        counts[i] += 1
        clock.advance(0.001)
        b.finish(i, 0.001 if i == 0 else 0.05)
    assert counts[0] > 4 * counts[1], counts


def test_unhealthy_and_open_are_never_picked_and_reasons() -> None:
    b = Balancer(eps(1, 1, 1), clock=ManualClock(), seed=5)
    b.set_healthy(0, False)
    b.force_open(1)
    for _ in range(200):
        i = b.pick()
        assert i == 2
        b.finish(i, 0.001)
    b.force_open(2)
    with pytest.raises(NoEndpointAvailable) as e:
        b.pick()
    assert e.value.reason == Unavailable.AllOpen
    b.set_healthy(1, False)
    b.set_healthy(2, False)
    with pytest.raises(NoEndpointAvailable) as e:
        b.pick()
    assert e.value.reason == Unavailable.NoHealthy
    assert str(e.value.reason) == "no_healthy"
    assert isinstance(e.value, RuntimeError) and isinstance(e.value, CoreError)
    with pytest.raises(NoEndpointAvailable) as e:
        Balancer([]).pick()
    assert e.value.reason == Unavailable.Empty


def test_failures_trip_the_endpoint_breaker() -> None:
    clock = ManualClock()
    b = Balancer(eps(1), clock=clock)
    b.finish(b.pick(), 0.001, Outcome.Failure)
    b.finish(b.pick(), 0.001, "failure")  # names still work
    assert b.stats()[0].breaker.state == BreakerState.Open
    with pytest.raises(NoEndpointAvailable):
        b.pick()
    clock.advance(10.0)
    i = b.pick()  # the half-open probe
    b.finish(i, 0.001, Outcome.Success)
    assert b.stats()[0].breaker.state == BreakerState.Closed


def test_cancelled_frees_the_slot_without_feeding_ewma() -> None:
    b = Balancer(eps(1), clock=ManualClock())
    i = b.pick()
    b.finish(i, 5.0, Outcome.Cancelled)
    s = b.stats()[0]
    assert s.outstanding == 0
    assert s.ewma < 1.0


def test_validation_errors() -> None:
    with pytest.raises(ValueError, match="weight"):
        Balancer([{"id": "a", "weight": 0}])
    with pytest.raises(ValueError, match=r"endpoints\[0\].id"):
        Balancer([{"weight": 1}])
    with pytest.raises(SettingError) as s:
        Balancer([{"id": "a"}, {"id": "a"}])
    assert s.value.field == "endpoints[1].id"
    with pytest.raises(SettingError) as s:
        Balancer([{"id": "b", "breaker": {"error_rate": 3.0}}])
    assert s.value.field == "error_rate"
    assert s.value.__notes__ == ["in endpoints[0] ('b').breaker"]
    with pytest.raises(ValueError, match="unknown keys"):
        Balancer([{"id": "a", "wieght": 2}])
    b = Balancer(eps(1))
    with pytest.raises(ValueError, match="outcome"):
        b.finish(0, 0.1, "meh")
    with pytest.raises(UnknownEndpoint) as u:
        b.finish(7, 0.1)
    assert u.value.index == 7 and isinstance(u.value, ValueError)
    with pytest.raises(SettingError) as s:
        b.finish(0, -1.0)
    assert s.value.field == "latency"
