"""Latency histograms through the real extension."""

from __future__ import annotations

import math
import random
import threading

import pytest

from agentgate._core import SettingError
from agentgate.histogram import (
    OVERFLOW_KEY,
    RELATIVE_ERROR,
    HistogramSet,
    HistogramSnapshot,
    LatencyHistogram,
)


def exact(sorted_values: list[int], q: float) -> int:
    rank = min(max(math.ceil(q * len(sorted_values)), 1), len(sorted_values))
    return sorted_values[rank - 1]


def test_percentiles_within_declared_error() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(15, 1.5)) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    s = h.snapshot()
    assert isinstance(s, HistogramSnapshot)
    values.sort()
    assert s.count == len(values)
    assert s.min == values[0] / 1e9
    assert s.max == values[-1] / 1e9
    assert s.mean == pytest.approx(sum(values) / len(values) / 1e9)
    for q, got in [(0.5, s.p50), (0.9, s.p90), (0.95, s.p95), (0.99, s.p99), (0.999, s.p999)]:
        want = exact(values, q) / 1e9
        assert abs(got - want) <= want * RELATIVE_ERROR + 1e-12, (q, got, want)
        assert h.quantile(q) == got


def test_seconds_buckets_reset() -> None:
    h = LatencyHistogram()
    for s in (0.001, 0.002, 0.5):
        h.record_seconds(s)
    assert h.count == 3
    assert h.buckets([0.0015, 0.25, math.inf]) == [1, 2, 3]
    d = h.snapshot().to_dict()
    assert d["count"] == 3 and d["max"] == 0.5
    h.reset()
    assert h.snapshot().count == 0
    for bad, field in [
        (lambda: h.record_seconds(-1.0), "seconds"),
        (lambda: h.record(-5), "nanos"),
        (lambda: h.quantile(1.5), "q"),
        (lambda: h.buckets([0.1, -2.0]), "bounds[1]"),
    ]:
        with pytest.raises(SettingError) as e:
            bad()
        assert e.value.field == field
        assert isinstance(e.value, ValueError)


def test_set_keys_overflow_and_shared_handles() -> None:
    hs = HistogramSet(max_keys=2)
    hs.record("a", 1_000)
    hs.record_seconds("b", 0.002)
    hs.record("c", 3_000)
    assert hs.keys() == ["a", "b"]
    assert len(hs) == 2 and "a" in hs and "c" not in hs
    assert hs.snapshot("c") is None
    other = hs.snapshot(OVERFLOW_KEY)
    assert other is not None and other.count == 1
    handle = hs.get("a")
    assert handle is not None
    handle.record(5_000)
    snap = hs.snapshot("a")
    assert snap is not None and snap.count == 2
    assert set(hs.snapshot_all()) == {"a", "b", OVERFLOW_KEY}
    assert hs.get("zzz") is None
    assert hs.histogram("zzz").count == 1  # the overflow histogram
    hs.reset()
    assert all(s.count == 0 for s in hs.snapshot_all().values())


def test_threads_record_exactly() -> None:
    hs = HistogramSet()

    def work(t: int) -> None:
        for i in range(10_000):
            hs.record("k", 1_000 + t * 10_000 + i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = hs.snapshot("k")
    assert s is not None
    assert s.count == 80_000
    assert s.min == 1_000 / 1e9
    assert s.max == (1_000 + 7 * 10_000 + 9_999) / 1e9
    assert s.sum == pytest.approx(sum(range(1_000, 81_000)) / 1e9)
