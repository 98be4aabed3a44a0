"""The per-agent table: pre-merged sealed blocks plus open buckets equal merging the rows."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agentgate._core import RollupTable, Sketch
from agentgate.observe.feed import Deltas, RouteDelta
from agentgate.observe.history import FLEET, Signals, TrafficHistory
from agentgate.observe.rollup import cover
from agentgate.observe.sealed import blocks, runs
from agentgate.observe.settings import DEFAULT_TIERS

DAY = 86400
NOW = 1_700_002_805.0  # 23:00:05 UTC: five seconds into an hour, an hour before a day ends
AGENTS = [f"ag-{i:02d}" for i in range(9)]


def _sketch(rng: random.Random, n: int) -> bytes:
    s = Sketch()
    base = rng.uniform(0.002, 0.2)
    s.add_many([base * rng.lognormvariate(0, 0.7) for _ in range(n)])
    return s.to_bytes()


async def _populate(mdb: Any, rng: random.Random) -> None:
    """Rollups of nine agents (and the fleet and a route row, which the table must ignore): day
    and hour tiers over four days, minutes over the last three hours, 10 s over the last 20
    minutes and a little into the future (the open buckets)."""
    rows: list[tuple[Any, ...]] = []
    for agent in [*AGENTS, FLEET]:
        for step, start, end in (
            (86400, NOW - 4 * DAY, NOW + DAY),
            (3600, NOW - 4 * DAY, NOW + 3600),
            (60, NOW - 3 * 3600, NOW + 60),
            (10, NOW - 1200, NOW + 10),
        ):
            b = int(start // step) * step
            while b < end:
                # some buckets of some agents are missing, some have no latency sketch
                if rng.random() < 0.9:
                    req = rng.randint(1, 300)
                    err = rng.randint(0, req // 10)
                    lat = _sketch(rng, rng.randint(1, 40)) if rng.random() < 0.95 else None
                    inf, q = rng.randint(0, 9), rng.randint(0, 4)
                    for route in (FLEET, "r1"):
                        rows.append(
                            (
                                agent,
                                route,
                                step,
                                b,
                                req,
                                0,
                                0,
                                req - err,
                                0,
                                0,
                                err,
                                lat,
                                None,
                                inf,
                                q,
                            )
                        )
                b += step
    async with mdb.transaction() as tx:
        await tx.executemany(
            "INSERT INTO metric_traffic (agent, route, step, bucket, requests, c_other, c_1xx, "
            "c_2xx, c_3xx, c_4xx, c_5xx, latency, upstream, in_flight_max, queue_max) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


async def _straight(
    hist: TrafficHistory,
    start: float,
    end: float,
    agents: list[str] | None = None,
    resolution: float | None = None,
) -> dict[str, Signals]:
    """The same range merged the straightforward way: every row of the cover, per agent."""
    res = (end - start) / 500 if resolution is None else resolution
    spans, s0, e0 = cover(hist.tiers, start, end, hist.clock(), res)
    rows: list[tuple[Any, ...]] = []
    for sp in spans:
        rows += await hist.db.fetch(
            "SELECT agent, c_other, c_1xx, c_2xx, c_3xx, c_4xx, c_5xx, in_flight_max, "
            "queue_max, latency FROM metric_traffic WHERE route = ? AND agent <> ? AND step = ? "
            "AND bucket >= ? AND bucket < ?",
            FLEET,
            FLEET,
            sp.step,
            sp.start,
            sp.end,
        )
    per: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        if agents is None or r[0] in agents:
            per.setdefault(r[0], []).append(r)
    out = {}
    for name, rs in per.items():
        classes = [sum(int(r[1 + i]) for r in rs) for i in range(6)]
        lat = Sketch.merged([r[9] for r in rs])
        inf, q = max(int(r[7]) for r in rs), max(int(r[8]) for r in rs)
        out[name] = Signals(s0, e0, sum(classes), classes, lat, inf, q)
    return out


def _same(got: dict[str, Signals], want: dict[str, Signals]) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert (g.start, g.end, g.requests, g.classes) == (w.start, w.end, w.requests, w.classes)
        assert (g.in_flight_max, g.queue_max) == (w.in_flight_max, w.queue_max), name
        assert (g.latency.count, g.latency.min, g.latency.max) == (
            w.latency.count,
            w.latency.min,
            w.latency.max,
        )
        qs = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
        assert g.latency.quantiles(qs) == w.latency.quantiles(qs), name
        # float sums in another merge order may differ in the last bits
        assert g.latency.sum == pytest.approx(w.latency.sum, rel=1e-12)


async def test_table_equals_the_straightforward_merge(mdb: Any, clock: Any) -> None:
    await _populate(mdb, random.Random(3))
    clock.t = NOW
    hist = TrafficHistory(mdb, DEFAULT_TIERS, clock)
    cases: list[tuple[float, float, list[str] | None, float | None]] = [
        (NOW - 3 * DAY, NOW, None, None),  # day blocks, hour edges, the open hour
        (NOW - 3 * DAY + 1234, NOW - 777, None, None),
        (NOW - 3600, NOW, None, None),  # minutes and 10 s edges, open 10 s buckets
        (NOW - 300, NOW, None, None),
        (NOW - 2 * 3600 - 5, NOW - 600, AGENTS[2:5], None),
        (NOW - 900, NOW, None, 0.0),  # exact edges
        (NOW - 3 * DAY, NOW - 2 * DAY, None, None),  # all sealed
    ]
    for start, end, agents, res in cases:
        want = await _straight(hist, start, end, agents, res)
        assert want, (start, end)
        # twice: built from the rows, then from the kept blocks
        for _ in range(2):
            _same(await hist.agents_table(start, end, agents, res), want)
    assert hist.sealed.hits > 0 and hist.sealed.nbytes > 0
    assert await hist.agents_table(NOW - 3600, NOW, []) == {}


async def test_sliding_windows_reuse_blocks_and_stay_exact(mdb: Any, clock: Any) -> None:
    await _populate(mdb, random.Random(4))
    hist = TrafficHistory(mdb, DEFAULT_TIERS, clock, seal_after=20)
    loads = []
    # a dashboard refreshing every 10 s over 30 s windows, then over hours, then days
    for rng_s, step, n in ((3600.0, 10.0, 30), (6 * 3600.0, 60.0, 15), (3 * DAY, 600.0, 12)):
        clock.t = NOW - n * step
        for _ in range(n):
            clock.advance(step)
            before = hist.sealed.loaded_buckets
            got = await hist.agents_table(clock() - rng_s, clock())
            _same(got, await _straight(hist, clock() - rng_s, clock()))
            loads.append(hist.sealed.loaded_buckets - before)
    # a slide loads the buckets sealed since the last query (and, on entering a new minute,
    # hour or day at the far edge, that one's): a small part of what the first query loaded
    for first, n in ((0, 30), (30, 15), (45, 12)):
        assert sum(loads[first + 1 : first + n]) < (n - 1) * loads[first] / 4, loads
    assert hist.sealed.hits > 0


async def test_a_late_write_into_a_sealed_bucket_is_seen(mdb: Any, clock: Any) -> None:
    await _populate(mdb, random.Random(5))
    clock.t = NOW
    hist = TrafficHistory(mdb, DEFAULT_TIERS, clock)
    start = NOW - 2 * 3600
    first = await hist.agents_table(start, NOW)
    # a flush stamped an hour ago (a gateway that was stuck) lands in sealed buckets
    late = Sketch()
    late.add_many([9.0, 9.5])
    d = Deltas()
    d.routes.append(RouteDelta(AGENTS[0], "r1", [0, 0, 0, 0, 0, 2], late))
    await hist.write(NOW - 3600, d)
    after = await hist.agents_table(start, NOW)
    _same(after, await _straight(hist, start, NOW))
    assert after[AGENTS[0]].requests == first[AGENTS[0]].requests + 2
    assert after[AGENTS[0]].latency.max == 9.5


async def test_expired_buckets_leave_the_cache(mdb: Any, clock: Any) -> None:
    await _populate(mdb, random.Random(6))
    clock.t = NOW
    hist = TrafficHistory(mdb, DEFAULT_TIERS, clock)
    await hist.agents_table(NOW - 1000, NOW - 200, resolution=0.0)  # 10 s edges, sealed
    kept = hist.sealed.nbytes
    assert kept > 0
    clock.advance(3 * DAY)  # the 10 s tier keeps two days
    await hist.expire()
    assert hist.sealed.nbytes < kept


def test_blocks_cover_ranges_with_aligned_blocks() -> None:
    rng = random.Random(1)
    for _ in range(500):
        i0 = rng.randrange(0, 10_000)
        i1 = i0 + rng.randrange(0, 3000)
        bs = blocks(i0, i1)
        at = i0
        for k, j in bs:
            assert j << k == at  # contiguous, in order, aligned to its size
            at += 1 << k
        assert at == i1
        assert len(bs) <= 2 * max(1, (i1 - i0).bit_length())
    assert runs([5, 3, 4, 9, 10, 1]) == [(1, 2), (3, 6), (9, 11)]


def test_rollup_tables_merge_per_agent() -> None:
    rng = random.Random(2)
    a, b = _sketch(rng, 20), _sketch(rng, 30)
    t1 = RollupTable.from_rows(
        [(10, "x", 0, 0, 5, 0, 0, 1, 3, 0, a), (20, "y", 0, 0, 1, 0, 0, 0, 0, 2, None)]
    )
    by = dict(
        RollupTable.by_bucket(
            [(20, "x", 0, 0, 2, 0, 0, 0, 9, 1, b), (10, "y", 1, 0, 0, 0, 0, 0, 0, 0, None)]
        )
    )
    assert sorted(by) == [10, 20] and len(t1) == 2
    rows = {r[0]: r for r in RollupTable.merged([t1, by[20], by[10], RollupTable()]).rows()}
    _, classes, inf, q, lat = rows["x"]
    assert classes == [0, 0, 7, 0, 0, 1] and (inf, q) == (9, 1)
    assert lat.quantiles([0.5, 0.99]) == Sketch.merged([a, b]).quantiles([0.5, 0.99])
    assert rows["y"][1] == [1, 0, 1, 0, 0, 0] and rows["y"][4].count == 0
    # a broken stored sketch fails the query that reads it, as merging the rows would
    broken = RollupTable.from_rows([(0, "x", 0, 0, 1, 0, 0, 0, 0, 0, b"AGS\x01broken")])
    with pytest.raises(ValueError, match="DDSketch"):
        broken.rows()
    with pytest.raises(ValueError, match="DDSketch"):
        RollupTable.merged([broken, t1])
