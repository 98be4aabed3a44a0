# ruff: noqa: E501  (the markdown table rows read best one per line)
"""`make bench-observe`: the metrics store, alert evaluation and dashboard payloads at fleet size.

Measured (SQLite, the embedded default; PostgreSQL too when its binaries are installed):
- sketches: the core's DDSketch against the pure-Python `ddsketch` package (DataDog's), adding
  values and decoding + merging stored sketches (medians of interleaved repetitions, ratio);
- ingest: one collector flush of 1,000 agents (per-route, per-agent and fleet rows merged into
  every tier), rows written per second;
- queries over 1,000 agents × 30 days of rollups (hour and day tiers for the whole range, the
  10 s and 1 min tiers at both edges: everything a 30-day cover reads), p50 / p99;
- the per-agent table (dashboard, `/api/metrics/agents`, alert rules) over 30 days and over an
  hour, side by side in interleaved rounds: the previous implementation (`legacy_agents_table`,
  one scan of every row merged per agent) against today's (pre-merged blocks of sealed buckets):
  cold (its cache emptied before every query), repeated (a dashboard refreshing one range), and
  sliding (the clock moving 10 s a query for an hour that crosses midnight, so a day, an hour and
  60 minutes roll over); the results of both paths are checked to be identical first;
- alert evaluation of 1,000 rules against those agents (per round and per rule);
- dashboard payloads: `/dashboard/panel` and `/api/metrics/agents` through the ASGI app.

    python loadtests/bench_observe.py [--quick] [--out loadtests/results/observe.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from agentgate._core import Sketch  # noqa: E402
from agentgate.observe.feed import AgentState, Deltas, RouteDelta  # noqa: E402
from agentgate.observe.history import FLEET, Signals, TrafficHistory  # noqa: E402
from agentgate.observe.rollup import Span, cover  # noqa: E402
from agentgate.observe.settings import DEFAULT_TIERS  # noqa: E402

DAY = 86400


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _stats(xs: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": _pct(xs, 0.5) * 1e3,
        "p99_ms": _pct(xs, 0.99) * 1e3,
        "max_ms": max(xs) * 1e3,
        "runs": len(xs),
    }


async def legacy_agents_table(
    h: TrafficHistory,
    start: float,
    end: float,
    agents: list[str] | None = None,
    resolution: float | None = None,
) -> dict[str, Signals]:
    """`TrafficHistory.agents_table` as it was before the sealed-block tables (commit 495d49b):
    two scans of every row of the range (counts summed by the database, then every sketch),
    one `Sketch.merged` call per agent. Kept here for the side-by-side."""
    res = (end - start) / 500 if resolution is None else resolution
    spans, s0, e0 = cover(h.tiers, start, end, h.clock(), res)
    if not spans or (agents is not None and not agents):
        return {}

    def where(spans: list[Span]) -> tuple[str, list[Any]]:
        ors: list[str] = []
        args: list[Any] = [FLEET, FLEET]
        for sp in spans:
            ors.append("(step = ? AND bucket >= ? AND bucket < ?)")
            args += [sp.step, sp.start, sp.end]
        w = f"route = ? AND agent <> ? AND ({' OR '.join(ors)})"
        if agents is not None:
            w += f" AND agent IN ({', '.join('?' for _ in agents)})"
            args += list(agents)
        return w, args

    w, args = where(spans)
    counts = await h.db.fetch(
        "SELECT agent, SUM(c_other), SUM(c_1xx), SUM(c_2xx), SUM(c_3xx), SUM(c_4xx), "
        f"SUM(c_5xx), MAX(in_flight_max), MAX(queue_max) FROM metric_traffic WHERE {w} "
        "GROUP BY agent",
        *args,
    )
    blobs: dict[str, list[bytes]] = {}
    for name, lat in await h.db.fetch(
        f"SELECT agent, latency FROM metric_traffic WHERE {w} AND latency IS NOT NULL", *args
    ):
        blobs.setdefault(name, []).append(lat)
    out = {}
    for name, c0, c1, c2, c3, c4, c5, inf, q in counts:
        classes = [int(c0), int(c1), int(c2), int(c3), int(c4), int(c5)]
        lat = Sketch.merged(blobs.get(name, []))
        out[name] = Signals(s0, e0, sum(classes), classes, lat, int(inf or 0), int(q or 0))
    return out


def _same_tables(a: dict[str, Signals], b: dict[str, Signals]) -> None:
    assert sorted(a) == sorted(b), "the two paths list different agents"
    for name, x in a.items():
        y = b[name]
        assert (x.requests, x.classes, x.in_flight_max, x.queue_max) == (
            y.requests,
            y.classes,
            y.in_flight_max,
            y.queue_max,
        ), name
        qs = [0.5, 0.95, 0.99]
        assert x.latency.quantiles(qs) == y.latency.quantiles(qs), name
        assert (x.latency.count, x.latency.min, x.latency.max) == (
            y.latency.count,
            y.latency.min,
            y.latency.max,
        ), name


async def bench_agents_table(
    h: TrafficHistory, clock: dict[str, float], now: float, reps: int
) -> dict[str, Any]:
    """Old path against new on the same data: cold, repeated and sliding (see the module doc)."""
    out: dict[str, Any] = {}
    for label, length in (("30d", 30 * DAY), ("1h", 3600.0)):
        clock["t"] = now
        h.sealed.clear()
        _same_tables(
            await legacy_agents_table(h, now - length, now),
            await h.agents_table(now - length, now),
        )

        async def cold(length: float = length) -> Any:
            h.sealed.clear()
            return await h.agents_table(now - length, now)

        variants = {
            "old": lambda length=length: legacy_agents_table(h, now - length, now),
            "new_cold": cold,
            "new_repeated": lambda length=length: h.agents_table(now - length, now),
        }
        lat: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(reps):  # interleaved rounds: the machine's load hits every variant alike
            for name, fn in variants.items():
                for _ in range(10 if name == "new_repeated" else 1):
                    # each variant pays for its own garbage, not for the old path's 50,000 rows
                    gc.collect()
                    t = time.perf_counter()
                    await fn()
                    lat[name].append(time.perf_counter() - t)
        res: dict[str, Any] = {k: _stats(v) for k, v in lat.items()}
        # a dashboard left open: one query every 10 s for an hour across midnight
        h.sealed.clear()
        slide, t0 = [], now - 3600
        for i in range(361):
            clock["t"] = t0 + 10 * i
            t = time.perf_counter()
            await h.agents_table(clock["t"] - length, clock["t"])
            slide.append(time.perf_counter() - t)
        clock["t"] = now
        res["new_sliding_first_ms"] = slide[0] * 1e3
        res["new_sliding"] = _stats(slide[1:])
        res["cache_mib"] = h.sealed.nbytes / 2**20
        old, rep = res["old"], res["new_repeated"]
        res["ratio_old_over_repeated"] = {
            "p50": old["p50_ms"] / rep["p50_ms"],
            "p99": old["p99_ms"] / rep["p99_ms"],
        }
        res["ratio_old_over_cold"] = {
            "p50": old["p50_ms"] / res["new_cold"]["p50_ms"],
            "p99": old["p99_ms"] / res["new_cold"]["p99_ms"],
        }
        out[label] = res
    return out


def bench_sketch(reps: int) -> dict[str, Any]:
    """Rust Sketch vs Python ddsketch: add 100k values; decode + merge 2,000 stored sketches."""
    from ddsketch import DDSketch
    from ddsketch.pb.ddsketch_pb2 import DDSketch as Proto
    from ddsketch.pb.proto import DDSketchProto

    rng = random.Random(1)
    vals = [rng.expovariate(20) + 0.0005 for _ in range(100_000)]
    rs, ps = [], []
    for i in range(2000):
        a, b = Sketch(), DDSketch(0.01)
        for v in vals[i * 50 : (i + 1) * 50]:
            a.add(v)
            b.add(v)
        rs.append(a.to_bytes())
        ps.append(DDSketchProto.to_proto(b).SerializeToString())
    add_r, add_p, merge_r, merge_p = [], [], [], []
    for _ in range(reps):
        t = time.perf_counter()
        s = Sketch()
        s.add_many(vals)
        add_r.append(time.perf_counter() - t)
        t = time.perf_counter()
        d = DDSketch(0.01)
        for v in vals:
            d.add(v)
        add_p.append(time.perf_counter() - t)
        t = time.perf_counter()
        Sketch.merged(rs)
        merge_r.append(time.perf_counter() - t)
        t = time.perf_counter()
        acc = DDSketch(0.01)
        for blob in ps:
            p = Proto()
            p.ParseFromString(blob)
            acc.merge(DDSketchProto.from_proto(p))
        merge_p.append(time.perf_counter() - t)
    m = statistics.median
    return {
        "add_100k_ms": {"agentgate": m(add_r) * 1e3, "ddsketch_py": m(add_p) * 1e3},
        "add_ratio": m(add_p) / m(add_r),
        "merge_2000_ms": {"agentgate": m(merge_r) * 1e3, "ddsketch_py": m(merge_p) * 1e3},
        "merge_ratio": m(merge_p) / m(merge_r),
        "bytes_per_sketch": {
            "agentgate": sum(map(len, rs)) / len(rs),
            "ddsketch_py": sum(map(len, ps)) / len(ps),
        },
    }


def _blob(rng: random.Random, n: int) -> bytes:
    s = Sketch()
    base = rng.uniform(0.005, 0.05)
    s.add_many([base * rng.lognormvariate(0, 0.6) for _ in range(n)])
    return s.to_bytes()


async def _populate(mdb: Any, agents: list[str], now: float, rng: random.Random) -> int:
    """30 days of rollups for every agent and the fleet, written straight into the table."""
    blobs = [_blob(rng, 200) for _ in range(64)]
    rows: list[tuple[Any, ...]] = []
    start = now - 30 * DAY
    edges = 2 * 3600  # fine tiers at both ends of the range

    def add(agent: str, step: int, b0: float, b1: float) -> None:
        b = int(b0 // step) * step
        while b < b1:
            req = rng.randint(50, 500) if agent != FLEET else 200 * len(agents)
            err = req // 100
            blob = blobs[rng.randrange(len(blobs))]
            rows.append((agent, FLEET, step, b, req, 0, 0, req - err, 0, 0, err, blob, None, 3, 1))
            b += step

    for a in [*agents, FLEET]:
        add(a, 86400, start, now)
        add(a, 3600, start, now)
        for s0, s1 in ((start - 3600, start + edges), (now - edges, now + 10)):
            add(a, 60, s0, s1)
            add(a, 10, s0, s1)
    sql = (
        "INSERT INTO metric_traffic (agent, route, step, bucket, requests, c_other, c_1xx, "
        "c_2xx, c_3xx, c_4xx, c_5xx, latency, upstream, in_flight_max, queue_max) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    )
    for i in range(0, len(rows), 20_000):
        async with mdb.transaction() as tx:
            await tx.executemany(sql, rows[i : i + 20_000])
    return len(rows)


async def bench_store(database_url: str | None, n_agents: int, runs: int) -> dict[str, Any]:
    """Ingest, 30-day queries, 1,000-rule evaluation and dashboard payloads on one backend."""
    import httpx

    from agentgate.api.app import create_api
    from agentgate.cli_control import bootstrap
    from agentgate.dashboard import routes as dashboard_routes
    from agentgate.observe.alerts.rules import Rule
    from agentgate.observe.service import ObserveService, ObserveSettings
    from agentgate.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="agentgate-bench-observe-"))
    # half past midnight (UTC) of tomorrow: the sliding hour of the per-agent table crosses a day
    now = float((int(time.time()) // DAY + 1) * DAY + 1800)
    clock = {"t": now}
    store = await open_store(database_url, tmp)
    _, _, secret = await bootstrap(store)
    svc = await ObserveService.open(
        store, database_url, tmp, ObserveSettings(), clock=lambda: clock["t"]
    )
    rng = random.Random(7)
    agents = [f"agent-{i:04d}" for i in range(n_agents)]
    out: dict[str, Any] = {
        "backend": "postgresql" if database_url else "sqlite",
        "agents": n_agents,
    }
    try:
        # ingest: flushes of the whole fleet into fresh buckets (every tier merged)
        ingest_hist = TrafficHistory(svc.mdb, DEFAULT_TIERS, clock=lambda: clock["t"])
        samples = [_blob(rng, 30) for _ in range(32)]
        times, rows_w = [], 0
        t_ing = now - 40 * DAY  # an empty stretch of time, so merges start from nothing
        for i in range(runs // 4 + 3):
            d = Deltas()
            for a in agents:
                d.routes.append(
                    RouteDelta(
                        a,
                        "main",
                        [0, 0, 95, 0, 3, 2],
                        Sketch.from_bytes(samples[rng.randrange(32)]),
                    )
                )
                d.agents[a] = AgentState(a, 2, 2, 0, rng.randint(0, 5), 0)
            t = time.perf_counter()
            rows_w += await ingest_hist.write(t_ing + i * 10, d)
            times.append(time.perf_counter() - t)
        out["ingest"] = {
            "flush_ms_median": statistics.median(times) * 1e3,
            "rows_per_flush": rows_w // len(times),
            "rows_per_s": rows_w / sum(times),
            "requests_per_flush": 100 * n_agents,
        }
        t = time.perf_counter()
        n_rows = await _populate(svc.mdb, agents, now, rng)
        out["populate"] = {"rows": n_rows, "seconds": time.perf_counter() - t}
        h = svc.history
        one = agents[n_agents // 2]
        queries = {
            "fleet_summary_30d": lambda: h.summary(now - 30 * DAY, now),
            "agent_summary_30d": lambda: h.summary(now - 30 * DAY, now, agent=one),
            "fleet_series_30d_120pts": lambda: h.series(now - 30 * DAY, now, points=120),
            "set_of_50_agents_30d": lambda: h.summary(now - 30 * DAY, now, agents=agents[:50]),
        }
        q_out: dict[str, Any] = {}
        heavy = {"set_of_50_agents_30d"}
        for name, fn in queries.items():
            await fn()  # warm
            lat = []
            n = max(20, runs // 5) if name in heavy else runs
            for _ in range(n):
                t = time.perf_counter()
                await fn()
                lat.append(time.perf_counter() - t)
            q_out[name] = {
                "p50_ms": _pct(lat, 0.5) * 1e3,
                "p99_ms": _pct(lat, 0.99) * 1e3,
                "runs": runs,
            }
        out["queries"] = q_out
        out["agents_table"] = await bench_agents_table(h, clock, now, max(10, runs // 5))
        # alert evaluation: 1,000 rules (per-agent thresholds on the three window metrics)
        system = await store.system.tenants.get_by_name("system")
        kinds = [("p99_latency", ">", 2.0), ("error_rate", ">", 0.5), ("requests", "<", 0.0)]
        for i in range(1000):
            metric, op, thr = kinds[i % 3]
            await svc.alerts.put_rule(
                system.id,
                Rule.model_validate(
                    {
                        "name": f"bench-{i:04d}",
                        "conditions": [
                            {"metric": metric, "op": op, "threshold": thr, "window": "5m"}
                        ],
                        "agent": agents[i % n_agents],
                    }
                ),
            )
        ev = []
        for _ in range(max(5, runs // 20)):
            t = time.perf_counter()
            await svc.alerts.evaluate(now)
            ev.append(time.perf_counter() - t)
        out["alerts"] = {
            "rules": 1000,
            "evaluate_ms_median": statistics.median(ev) * 1e3,
            "per_rule_us": statistics.median(ev) / 1000 * 1e6,
        }
        # dashboard payloads through the ASGI app, signed in with the admin key
        from starlette.applications import Starlette
        from starlette.routing import Mount

        api = create_api(store, observe=svc)
        app = Starlette(routes=[Mount("/api", app=api), *dashboard_routes(lambda: api)])
        transport = httpx.ASGITransport(app=app)
        pay: dict[str, Any] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            c.cookies.set("agentgate_dashboard", secret)
            targets = {
                "dashboard_panel_1h": ("/dashboard/panel?range=1h", {}),
                "dashboard_panel_30d": ("/dashboard/panel?range=30d", {}),
                "api_metrics_agents_1h": (
                    # the API reads the wall clock: the simulated `now` is given explicitly
                    f"/api/metrics/agents?start={now - 3600:.0f}&end={now:.0f}",
                    {"Authorization": f"Bearer {secret}"},
                ),
                "api_metrics_summary_30d": (
                    f"/api/metrics/summary?start={now - 30 * DAY:.0f}&end={now:.0f}",
                    {"Authorization": f"Bearer {secret}"},
                ),
            }
            for name, (path, headers) in targets.items():
                lat, size = [], 0
                for _ in range(max(10, runs // 20)):
                    t = time.perf_counter()
                    r = await c.get(path, headers=headers)
                    lat.append(time.perf_counter() - t)
                    assert r.status_code == 200, (path, r.status_code, r.text[:200])
                    size = len(r.content)
                pay[name] = {
                    "p50_ms": _pct(lat, 0.5) * 1e3,
                    "p99_ms": _pct(lat, 0.99) * 1e3,
                    "bytes": size,
                }
        out["dashboard"] = pay
    finally:
        await svc.mdb.close()
        await store.close()
    return out


async def _all(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {
        "command": "make bench-observe",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_average_at_start": os.getloadavg()[0],
    }
    res["sketch"] = bench_sketch(3 if args.quick else 7)
    runs = 40 if args.quick else 100
    res["sqlite"] = await bench_store(None, args.agents, runs)
    if not args.no_pg:
        from pg_ephemeral import PgUnavailable, ephemeral_postgres

        try:
            with ephemeral_postgres() as url:
                res["postgresql"] = await bench_store(url, args.agents, runs)
        except PgUnavailable as e:
            res["postgresql"] = {"skipped": str(e)}
    return res


def _markdown(r: dict[str, Any]) -> str:
    sk = r["sketch"]
    load = r["load_average_at_start"]
    # more runnable tasks than CPUs means this run shared them with other work
    shared = ": other jobs shared the machine" if load > r["machine"]["cpus"] / 2 else ""
    lines = [
        f"Command: `make bench-observe` ({r['when']}, {r['machine']['cpus']} CPUs, load average "
        f"{load:.1f} at the start{shared}). "
        "1,000 agents; 30 days of rollups (hour and day tiers for the whole range, 10 s and 1 min "
        "tiers at both edges, which is all a 30-day query reads from them).",
        "",
        "| sketch (DDSketch, 1 % rel. error) | agentgate (Rust) | ddsketch (Python) | ratio |",
        "|---|---:|---:|---:|",
        f"| add 100,000 values | {sk['add_100k_ms']['agentgate']:.1f} ms | {sk['add_100k_ms']['ddsketch_py']:.1f} ms | {sk['add_ratio']:.0f}× |",
        f"| decode + merge 2,000 stored sketches | {sk['merge_2000_ms']['agentgate']:.1f} ms | {sk['merge_2000_ms']['ddsketch_py']:.1f} ms | {sk['merge_ratio']:.0f}× |",
        f"| bytes per stored sketch (50 values) | {sk['bytes_per_sketch']['agentgate']:.0f} | {sk['bytes_per_sketch']['ddsketch_py']:.0f} | |",
        "",
    ]
    backends = [b for b in ("sqlite", "postgresql") if "queries" in r.get(b, {})]
    lines += [
        "Per-agent table (requests, error rate, p50/p95/p99 per agent: the dashboard's, "
        f"`/api/metrics/agents`' and the alert rules' view), {r[backends[0]]['agents']:,} agents, p50 / p99 of "
        "interleaved rounds; both paths give identical results (checked before timing). *old*: "
        "the previous implementation, one scan of every row of the range merged per agent (run "
        "on today's schema); *cold*: today's with its cache emptied before every query; "
        "*repeated*: the same range again (a dashboard refresh); *sliding*: one query every 10 s "
        "of simulated time for an hour that crosses midnight (360 queries, max also given).",
        "",
        "| per-agent table | " + " | ".join(backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r[b]) for b in backends) + " |")

    def ms(x: dict[str, Any]) -> str:
        return f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f} ms"

    for rng in ("30d", "1h"):
        row(f"{rng}: old", lambda x, rng=rng: ms(x["agents_table"][rng]["old"]))
        row(f"{rng}: new, cold", lambda x, rng=rng: ms(x["agents_table"][rng]["new_cold"]))
        row(
            f"{rng}: new, repeated",
            lambda x, rng=rng: ms(x["agents_table"][rng]["new_repeated"]),
        )
        row(
            f"{rng}: new, sliding (max)",
            lambda x, rng=rng: (
                f"{ms(x['agents_table'][rng]['new_sliding'])} "
                f"({x['agents_table'][rng]['new_sliding']['max_ms']:.0f} ms)"
            ),
        )
        row(
            f"{rng}: old ÷ new repeated, p50 / p99",
            lambda x, rng=rng: (
                f"{x['agents_table'][rng]['ratio_old_over_repeated']['p50']:.0f}× / "
                f"{x['agents_table'][rng]['ratio_old_over_repeated']['p99']:.0f}×"
            ),
        )
        row(
            f"{rng}: old ÷ new cold, p50 / p99",
            lambda x, rng=rng: (
                f"{x['agents_table'][rng]['ratio_old_over_cold']['p50']:.1f}× / "
                f"{x['agents_table'][rng]['ratio_old_over_cold']['p99']:.1f}×"
            ),
        )
    lines += [
        "",
        "| metrics store | " + " | ".join(backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]

    row(
        "ingest: one flush of 1,000 agents (median)",
        lambda x: (
            f"{x['ingest']['flush_ms_median']:.0f} ms ({x['ingest']['rows_per_s']:,.0f} rows/s)"
        ),
    )
    for q in r[backends[0]]["queries"]:
        row(
            f"query {q} p50 / p99",
            lambda x, q=q: f"{x['queries'][q]['p50_ms']:.1f} / {x['queries'][q]['p99_ms']:.1f} ms",
        )
    row(
        "evaluate 1,000 alert rules (median round)",
        lambda x: (
            f"{x['alerts']['evaluate_ms_median']:.0f} ms ({x['alerts']['per_rule_us']:.0f} µs/rule)"
        ),
    )
    for d in r[backends[0]]["dashboard"]:
        row(
            f"{d} p50 / p99 (bytes)",
            lambda x, d=d: (
                f"{x['dashboard'][d]['p50_ms']:.0f} / {x['dashboard'][d]['p99_ms']:.0f} ms ({x['dashboard'][d]['bytes'] / 1024:.0f} KiB)"
            ),
        )
    return "\n".join(lines)


def main() -> None:
    """Run, write the JSON and the BENCHMARKS.md section."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "loadtests/results/observe.json"))
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(_all(args))
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    from loadtests.benchmarks_md import replace_section

    replace_section("observe", "Observability (make bench-observe)", _markdown(res))
    print(_markdown(res))


if __name__ == "__main__":
    main()
