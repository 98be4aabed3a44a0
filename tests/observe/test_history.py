"""Traffic rollups: real core deltas in, exact sketch merges and tier covers out."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agentgate._core import AtomicSketch, DataPlane, Sketch
from agentgate.config import parse_config
from agentgate.observe.collector import Collector
from agentgate.observe.dataplane_feed import DataPlaneFeed
from agentgate.observe.feed import AgentState, Deltas, RouteDelta, buckets_to_sketch
from agentgate.observe.history import TrafficHistory
from agentgate.observe.rollup import cover
from agentgate.observe.settings import DEFAULT_TIERS, MetricsConfig, Tier

T0 = 1_700_000_000.0


async def _upstream() -> tuple[web.AppRunner, str]:
    """A real upstream: /a/... answers at once (503 when asked), /b/... after 200 ms with 404."""

    async def handle(request: web.Request) -> web.Response:
        if request.path.startswith("/b"):
            await asyncio.sleep(0.2)
            return web.Response(status=404)
        return web.Response(status=int(request.query.get("status", "200")))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return runner, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _gateway(url: str) -> DataPlane:
    cfg = parse_config(
        {
            "agents": {
                "alpha": {"endpoints": [{"url": url}], "retries": {"attempts": 0}},
                "beta": {"endpoints": [{"url": url}], "retries": {"attempts": 0}},
            },
            "routes": [
                {"id": "a", "match": {"path_prefix": "/a"}, "agent": "alpha"},
                {"id": "b", "match": {"path_prefix": "/b"}, "agent": "beta"},
            ],
        }
    )
    return DataPlane(cfg.core_json())


async def test_core_deltas_land_in_every_tier(mdb: Any, clock: Any) -> None:
    runner, url = await _upstream()
    dp = _gateway(url)
    port = dp.listen("127.0.0.1:0")
    feed = DataPlaneFeed(dp.agents)
    hist = TrafficHistory(mdb, clock=clock)
    collector = Collector(feed, hist, clock=clock)
    gw = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> None:
                async with http.get(gw + path) as r:
                    await r.read()

            for i in range(40):
                await get("/a/x" if i % 10 else "/a/x?status=503")
            await asyncio.gather(*(get("/b/y") for _ in range(7)))
            feed.push(dp.take_stats())
            d = await collector.flush()
            assert sum(r.requests for r in d.routes) == 47
            assert set(collector.agents) == {"alpha", "beta"}
            clock.advance(10)
            await get("/a/x")
            feed.push(dp.take_stats())
            await collector.flush()
    finally:
        dp.shutdown(1.0)
        await runner.cleanup()
    for tier in DEFAULT_TIERS:
        # each tier alone sees the same totals
        h1 = TrafficHistory(mdb, tiers=[tier], clock=clock)
        s = await h1.summary(T0 - 86400, T0 + 86400)
        assert s.requests == 48, tier
    s = await hist.summary(T0 - 10, T0 + 20, agent="alpha")
    assert s.requests == 41 and s.classes[5] == 4
    assert s.error_rate == pytest.approx(4 / 41)
    s = await hist.summary(T0 - 10, T0 + 20, agent="beta", route="b")
    assert s.requests == 7 and s.classes[4] == 7
    # the upstream held /b for 200 ms: the core counted it in its (0.1, 0.25] bucket or, on
    # a loaded machine, one above; quantiles come out of those buckets
    assert 0.1 <= (s.quantile(0.99) or 0) <= 0.5
    fast = await hist.summary(T0 - 10, T0 + 20, agent="alpha")
    assert (fast.quantile(0.5) or 0) < 0.1
    table = await hist.agents_table(T0 - 10, T0 + 20)
    assert {k: v.requests for k, v in table.items()} == {"alpha": 41, "beta": 7}
    assert (await hist.summary(T0 - 10, T0 + 20, agents=["beta"])).requests == 7
    # nothing taken twice
    d = await collector.flush()
    assert d.routes == [] or all(r.requests == 0 for r in d.routes)


def _deltas(values: dict[str, list[float]], statuses: int = 2) -> Deltas:
    out = Deltas()
    for agent, vals in values.items():
        sk = Sketch()
        sk.add_many(vals)
        classes = [0] * 6
        classes[statuses] = len(vals)
        out.routes.append(RouteDelta(agent, "r", classes, sk))
    return out


async def test_quantiles_over_ranges_are_exact_merges(mdb: Any, clock: Any) -> None:
    rng = random.Random(5)
    hist = TrafficHistory(mdb, clock=clock)
    every: list[float] = []
    per_agent: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    start = clock()
    # three hours of 10 s flushes, three agents with different latency shapes
    for _ in range(3 * 360):
        vals = {
            "a": [rng.expovariate(50) for _ in range(3)],
            "b": [rng.lognormvariate(-3, 1) for _ in range(2)],
            "c": [0.5 + rng.random() for _ in range(1)],
        }
        for k, v in vals.items():
            per_agent[k] += v
            every += v
        await hist.write(clock(), _deltas(vals))
        clock.advance(10)
    end = clock()
    s = await hist.summary(start, end)
    assert s.requests == len(every)
    direct = Sketch()
    direct.add_many(every)
    for q in (0.5, 0.95, 0.99):
        got = s.quantile(q)
        assert got == pytest.approx(direct.quantile(q), rel=1e-12), q
        true = sorted(every)[int(q * (len(every) - 1))]
        assert abs(got - true) / true <= 0.0101  # type: ignore[operator]
    # a set of agents: merge of exactly their rows
    ab = await hist.summary(start, end, agents=["a", "b"])
    d2 = Sketch()
    d2.add_many(per_agent["a"] + per_agent["b"])
    assert ab.requests == len(per_agent["a"]) + len(per_agent["b"])
    assert ab.quantile(0.99) == pytest.approx(d2.quantile(0.99), rel=1e-12)
    # the cover used hour buckets in the middle: fewer rows than 10 s buckets
    spans, _, _ = cover(DEFAULT_TIERS, start + 1800, end - 1800, clock())
    assert any(sp.step == 3600 for sp in spans)
    mid = await hist.summary(start + 1800, end - 1800, agent="c")
    assert mid.requests == 2 * 360  # exactly the buckets inside the range
    step, pts = await hist.series(start, end, points=18)
    assert step == 600 and sum(p.requests for p in pts) == len(every)


async def test_retention_drops_old_buckets(mdb: Any, clock: Any) -> None:
    tiers = MetricsConfig(
        tiers=[Tier(step=10, keep=60), Tier(step=60, keep=600)], retention="1h"
    ).effective_tiers()
    assert [t.keep for t in tiers] == [60, 3600]
    hist = TrafficHistory(mdb, tiers=tiers, clock=clock)
    for _ in range(30):
        await hist.write(clock(), _deltas({"a": [0.01]}))
        clock.advance(10)
    deleted = await hist.expire()
    assert deleted > 0
    rows = await mdb.fetch("SELECT step, MIN(bucket) FROM metric_traffic GROUP BY step")
    for step, first in rows:
        keep = 60 if step == 10 else 3600
        assert first >= clock() - keep - step
    # old ranges are answered from the coarse tier that still has them
    s = await hist.summary(T0, clock())
    assert s.requests == 30


def test_bucket_feed_spreads_inside_buckets() -> None:
    counts = [0] * 16
    counts[3] = 100  # (0.0025, 0.005]
    sk = buckets_to_sketch(counts, 0.35)
    assert sk.count == 100
    assert (sk.min or 0) >= 0.0025 and (sk.max or 1) <= 0.005


def test_atomic_sketch_feed_shape() -> None:
    rec = AtomicSketch()
    for v in (0.001, 0.002, 0.003):
        rec.observe(v)
    sk = rec.take()
    assert sk.count == 3 and sk.max == pytest.approx(0.003)
    assert rec.take().count == 0
    st = AgentState("a", 2, 1, 1, 0, 0)
    assert st.healthy == 1
