"""Bus, event store and cluster-limit benchmarks in one run (`make bench-bus`).

    python loadtests/bench_bus.py [--quick]
    python loadtests/bench_bus.py --throughput-only [--rounds N]   # ours vs raw only

Starts its own redis-server (Unix socket, AOF `appendfsync always`), single-node Kafka (KRaft,
jars from scripts/kafka.sh) and PostgreSQL, then measures on this host:

- publish → consume latency p50/p99 at 1k and 10k msg/s for each backend (open loop: the
  producer publishes every millisecond what the rate asks for, the consumer fetches and acks);
- maximum batched throughput, produce and consume, of our layer and of raw redis-py / aiokafka
  loops doing the same work (same batch sizes, same durability settings), interleaved rounds,
  medians; the ratio ours/raw;
- revocation propagation: control plane publishes `key.revoke`, two subscribers (two bus
  connections) receive it; p50/p99;
- event store: appends/s of one writer on SQLite (WAL, batched), of 16 writers on PostgreSQL,
  and the p99 of "state as of T" with snapshots every 100 events;
- the cluster rate limiter: 4 processes with uneven demand sharing 1,000/s through one Redis for
  30 s (admitted vs the limit), next to a per-process 250/s limit each, and the cost of one
  `acquire` on the hot path.

Results go to loadtests/results/bus.json and the bus section of BENCHMARKS.md
(`--throughput-only`: only the Redis and Kafka throughput rounds, to
loadtests/results/bus-throughput.json; BENCHMARKS.md is left alone).
"""

# ruff: noqa: E501  (the child script and the table rows read best on one line each)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from kafka_ephemeral import ephemeral_kafka  # noqa: E402
from pg_ephemeral import ephemeral_postgres  # noqa: E402
from redis_ephemeral import ephemeral_redis  # noqa: E402

from agentgate.bus import Bus, BusSettings, Outgoing, TopicSettings, open_bus  # noqa: E402
from loadtests.benchmarks_md import replace_section  # noqa: E402

OUT = ROOT / "loadtests" / "results" / "bus.json"
OUT_THROUGHPUT = ROOT / "loadtests" / "results" / "bus-throughput.json"


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of xs."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def make(backend: str, conn: dict[str, Any], **topic: Any) -> Bus:
    """A started bus of `backend`."""
    bus = open_bus(
        BusSettings(defaults=TopicSettings(**topic), max_in_flight=20_000, **conn),
        backend,  # type: ignore[arg-type]
    )
    await bus.start()
    return bus


# --- latency at a fixed rate ------------------------------------------------------------------


async def latency(backend: str, conn: dict[str, Any], rate: int, seconds: float) -> dict[str, Any]:
    """Publish `rate` msg/s (every ms what is due) while one consumer fetches and acks."""
    bus = await make(backend, conn)
    topic = f"lat-{uuid.uuid4().hex[:8]}"
    c = bus.consumer(topic, "g")
    await c.join()
    lat: list[float] = []
    total = int(rate * seconds)
    done = asyncio.Event()

    async def consume() -> None:
        while len(lat) < total:
            got = await c.fetch(max_messages=1000, wait=1.0)
            now = time.perf_counter_ns()
            for m in got:
                lat.append((now - int(m.value[:20])) / 1e6)
            if got:
                await c.ack(*got)
        done.set()

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    sent = 0
    # open loop: what is due goes out every millisecond, without waiting for earlier acks
    inflight: set[asyncio.Task[list[str]]] = set()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            now = time.perf_counter_ns()
            batch = [Outgoing(b"%020d" % now + b"x" * 80) for _ in range(due - sent)]
            t = asyncio.create_task(bus.publish_many(topic, batch))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
            sent = due
        await asyncio.sleep(0.001)
    await asyncio.gather(*inflight)
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        task.cancel()
    achieved = sent / (time.perf_counter() - start)
    await c.close()
    await bus.close()
    return {
        "rate": rate,
        "achieved_rate": round(achieved),
        "messages": len(lat),
        "p50_ms": round(pct(lat, 0.5), 3),
        "p99_ms": round(pct(lat, 0.99), 3),
    }


async def raw_redis_latency(url: str, rate: int, seconds: float) -> dict[str, Any]:
    """The same open loop with raw redis-py: pipelined XADD per tick, XREADGROUP BLOCK + XACK."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    stream = f"rawlat-{uuid.uuid4().hex[:8]}"
    await r.xgroup_create(stream, "g", id="$", mkstream=True)
    lat: list[float] = []
    total = int(rate * seconds)

    async def consume() -> None:
        while len(lat) < total:
            res = await r.xreadgroup("g", "c", {stream: ">"}, count=1000, block=1000)
            now = time.perf_counter_ns()
            if not res:
                continue
            entries = res[0][1]
            for _, f in entries:
                lat.append((now - int(f[b"v"][:20])) / 1e6)
            await r.xack(stream, "g", *[rid for rid, _ in entries])

    task = asyncio.create_task(consume())
    start = time.perf_counter()
    sent = 0
    inflight: set[asyncio.Task[Any]] = set()
    slots = asyncio.Semaphore(32)  # bounded like our publish buffer (no pool exhaustion)

    async def send(n: int) -> None:
        now = time.perf_counter_ns()
        async with slots:
            pipe = r.pipeline(transaction=False)
            for _ in range(n):
                pipe.xadd(stream, {"v": b"%020d" % now + b"x" * 80})
            await pipe.execute()

    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            t = asyncio.create_task(send(due - sent))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
            sent = due
        await asyncio.sleep(0.001)
    await asyncio.gather(*inflight)
    try:
        await asyncio.wait_for(task, 30)
    except TimeoutError:
        task.cancel()
    await r.aclose()
    return {"rate": rate, "p50_ms": round(pct(lat, 0.5), 3), "p99_ms": round(pct(lat, 0.99), 3)}


# --- throughput: ours vs raw clients ---------------------------------------------------------


async def ours_produce(backend: str, conn: dict[str, Any], n: int, batch: int) -> tuple[float, str]:
    bus = await make(backend, conn)
    topic = f"tp-{uuid.uuid4().hex[:8]}"
    await bus.publish(topic, b"warm")
    payload = b"x" * 100
    t0 = time.perf_counter()
    for _ in range(0, n, batch):
        await bus.publish_many(topic, [Outgoing(payload) for _ in range(batch)])
    dt = time.perf_counter() - t0
    await bus.close()
    return n / dt, topic


async def ours_consume(backend: str, conn: dict[str, Any], topic: str, n: int, batch: int) -> float:
    bus = await make(backend, conn)
    c = bus.consumer(topic, f"g-{uuid.uuid4().hex[:6]}")
    await c.join()
    got = 0
    t0 = time.perf_counter()
    while got < n:
        ms = await c.fetch(max_messages=batch, wait=2.0)
        if not ms:
            break
        await c.ack(*ms)
        got += len(ms)
    dt = time.perf_counter() - t0
    await c.close()
    await bus.close()
    return got / dt


async def raw_redis_produce(url: str, n: int, batch: int) -> tuple[float, str]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    stream = f"raw-{uuid.uuid4().hex[:8]}"
    payload = b"x" * 100
    t0 = time.perf_counter()
    for _ in range(0, n, batch):
        pipe = r.pipeline(transaction=False)
        for _ in range(batch):
            pipe.xadd(stream, {"v": payload}, maxlen=1_000_000, approximate=True)
        await pipe.execute()
    dt = time.perf_counter() - t0
    await r.aclose()
    return n / dt, stream


async def raw_redis_consume(url: str, stream: str, n: int, batch: int) -> float:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    await r.xgroup_create(stream, "g", id="0")
    got = 0
    t0 = time.perf_counter()
    while got < n:
        res = await r.xreadgroup("g", "c", {stream: ">"}, count=batch, block=2000)
        if not res:
            break
        ids = [rid for rid, _ in res[0][1]]
        await r.xack(stream, "g", *ids)
        got += len(ids)
    dt = time.perf_counter() - t0
    await r.aclose()
    return got / dt


async def raw_kafka_produce(bootstrap: str, n: int, batch: int) -> tuple[float, str]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        max_batch_size=256 * 1024,
    )
    await p.start()
    payload = b"x" * 100
    t0 = time.perf_counter()
    for _ in range(0, n, batch):
        futs = [await p.send(topic, payload, partition=0) for _ in range(batch)]
        await asyncio.gather(*futs)
    dt = time.perf_counter() - t0
    await p.stop()
    return n / dt, topic


async def raw_kafka_consume(bootstrap: str, topic: str, n: int, batch: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await c.start()
    while not c.assignment():  # noqa: ASYNC110 - joined, as our join() before timing
        await asyncio.sleep(0.01)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        res = await c.getmany(timeout_ms=2000, max_records=batch)
        k = sum(len(v) for v in res.values())
        if not k:
            break
        await c.commit()
        got += k
    dt = time.perf_counter() - t0
    await c.stop()
    return got / dt


async def throughput(
    backend: str, conn: dict[str, Any], n: int, rounds: int, batch: int
) -> dict[str, Any]:
    """Interleaved rounds of ours and raw, produce then consume; medians and ratios."""
    res: dict[str, list[float]] = {k: [] for k in ("ours_p", "ours_c", "raw_p", "raw_c")}
    for _ in range(rounds):
        rp, rt = (
            await raw_redis_produce(conn["redis_url"], n, batch)
            if backend == "redis"
            else await raw_kafka_produce(conn["kafka_bootstrap"], n, batch)
        )
        op, ot = await ours_produce(backend, conn, n, batch)
        rc = (
            await raw_redis_consume(conn["redis_url"], rt, n, batch)
            if backend == "redis"
            else await raw_kafka_consume(conn["kafka_bootstrap"], rt, n, batch)
        )
        oc = await ours_consume(backend, conn, ot, n, batch)
        for k, v in (("ours_p", op), ("ours_c", oc), ("raw_p", rp), ("raw_c", rc)):
            res[k].append(v)
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "produce_msgs_per_s": round(med["ours_p"]),
        "consume_msgs_per_s": round(med["ours_c"]),
        "raw_produce_msgs_per_s": round(med["raw_p"]),
        "raw_consume_msgs_per_s": round(med["raw_c"]),
        "produce_ratio": round(med["ours_p"] / med["raw_p"], 2),
        "consume_ratio": round(med["ours_c"] / med["raw_c"], 2),
        "batch": batch,
        "messages": n,
        "rounds": rounds,
    }


async def memory_throughput(n: int, batch: int) -> dict[str, Any]:
    """The embedded bus: produce and consume in one process."""
    op, _ = await ours_produce("memory", {}, n, batch)
    return {"produce_msgs_per_s": round(op), "batch": batch, "messages": n}


# --- revocation propagation -----------------------------------------------------------------


async def propagation(backend: str, conn: dict[str, Any], n: int) -> dict[str, Any]:
    """key.revoke published → received by two subscribers on their own connections."""
    from agentgate.bus.changes import Change, ChangeFeed

    control = await make(backend, conn)
    hosts = [control] if backend == "memory" else [await make(backend, conn) for _ in range(2)]
    topic = f"changes-{uuid.uuid4().hex[:8]}"
    pair = hosts if len(hosts) == 2 else hosts * 2
    subs = [await ChangeFeed(h, topic).subscribe(f"h{i}") for i, h in enumerate(pair)]
    feed = ChangeFeed(control, topic)
    lat: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        await feed.publish(Change.of("key.revoke", "t", f"key:{i}"))
        for s in subs:
            await asyncio.wait_for(s.__anext__(), 10)
        lat.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.005)
    for s in subs:
        await s.close()
    for b in {id(b): b for b in [control, *hosts]}.values():
        await b.close()
    return {"p50_ms": round(pct(lat, 0.5), 3), "p99_ms": round(pct(lat, 0.99), 3), "n": n}


# --- event store ----------------------------------------------------------------------------


async def event_store(pg_url: str, quick: bool) -> dict[str, Any]:
    """Appends/s (SQLite one writer, batched; PostgreSQL 16 writers) and state_at p99."""
    from agentgate.state import AgentHistory
    from agentgate.store import open_store
    from agentgate.store.events import NewEvent

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        store = await open_store(None, Path(d))
        tid = (await store.system.tenants.create("bench")).id
        n, batch = (5000, 100) if quick else (30000, 100)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            await store.events.append(
                tid, "s", [NewEvent("x", {"i": j}) for j in range(i, i + batch)], kind="k", name="s"
            )
        out["sqlite_one_writer_events_per_s"] = round(n / (time.perf_counter() - t0))
        # state as of T with snapshots every 100 events
        h = AgentHistory(store.events, snapshot_every=100)
        doc = {"name": "a", "replicas": 1, "params": {"model": "m" * 50}, "routes": []}
        times = []
        for i in range(2000):
            e = await h.record(tid, "a", "agent.updated", {"agent": {**doc, "replicas": i}})
            times.append(e.at)
        lat = []
        for i in range(500):
            t = times[(i * 7919) % len(times)]
            t1 = time.perf_counter()
            await h.state_at(tid, "a", t)
            lat.append((time.perf_counter() - t1) * 1000)
        out["sqlite_state_at_p50_ms"] = round(pct(lat, 0.5), 3)
        out["sqlite_state_at_p99_ms"] = round(pct(lat, 0.99), 3)
        await store.close()
    store = await open_store(pg_url, Path("."))
    tid = (await store.system.tenants.create(f"bench{uuid.uuid4().hex[:6]}")).id
    per = 200 if quick else 1000

    async def writer(w: int) -> None:
        for i in range(per):
            await store.events.append(
                tid, f"w{w}", [NewEvent("x", {"i": i})], kind="k", name=f"w{w}", expected_version=i
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(16)))
    out["postgres_16_writers_events_per_s"] = round(16 * per / (time.perf_counter() - t0))
    await store.close()
    return out


# --- cluster limiter ------------------------------------------------------------------------

LIMITER_CHILD = r"""
import asyncio, json, sys, time
from agentgate.limits_cluster import ClusterLimiter
from agentgate.limits import RateLimiter
mode, url, demand, seconds, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
async def main():
    if mode == "cluster":
        lim = ClusterLimiter(url, rate=1000, burst=0, timeout=0.25, on_error="closed")
        check = lambda: lim.acquire("bench")
    else:
        local = RateLimiter("250/s", burst=13)  # the same 50 ms of headroom a lease has
        async def check():
            return bool(local.check("bench"))
    while time.time() < start_at:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter(); admitted = offered = 0; cost = []
    while True:
        el = time.perf_counter() - t0
        if el >= seconds: break
        due = int(el * demand) + 1
        while offered < due:
            c0 = time.perf_counter_ns(); ok = await check(); cost.append(time.perf_counter_ns() - c0)
            offered += 1; admitted += ok
        await asyncio.sleep(0.0005)
    cost.sort()
    print(json.dumps({"admitted": admitted, "offered": offered, "elapsed": time.perf_counter() - t0,
                      "acquire_p50_us": cost[len(cost)//2] / 1000, "acquire_p99_us": cost[int(len(cost)*0.99)] / 1000}))
asyncio.run(main())
"""


def limiter_run(mode: str, url: str, seconds: float) -> dict[str, Any]:
    """4 processes with uneven demand (100, 200, 600, 700/s = 1,600/s) for `seconds`."""
    demands = [100, 200, 600, 700]
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LIMITER_CHILD, mode, url, str(d), str(seconds), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for d in demands
    ]
    outs = [json.loads(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    admitted = sum(o["admitted"] for o in outs)
    elapsed = statistics.mean(o["elapsed"] for o in outs)
    limit = 1000 * elapsed
    return {
        "mode": mode,
        "seconds": round(elapsed, 2),
        "offered": sum(o["offered"] for o in outs),
        "admitted": admitted,
        "limit": round(limit),
        "error_pct": round((admitted - limit) / limit * 100, 2),
        "per_process": [o["admitted"] for o in outs],
        "acquire_p50_us": round(statistics.median(o["acquire_p50_us"] for o in outs), 2),
        "acquire_p99_us": round(statistics.median(o["acquire_p99_us"] for o in outs), 2),
    }


# --- the run --------------------------------------------------------------------------------


async def bus_parts(conns: dict[str, dict[str, Any]], quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"latency": {}, "throughput": {}, "propagation": {}}
    secs = 2.0 if quick else 5.0
    for backend, conn in conns.items():
        out["latency"][backend] = [await latency(backend, conn, r, secs) for r in (1000, 10000)]
        print(backend, "latency", out["latency"][backend], flush=True)
    url = conns["redis"]["redis_url"]
    out["latency"]["redis_raw"] = [await raw_redis_latency(url, r, secs) for r in (1000, 10000)]
    print("raw redis-py latency", out["latency"]["redis_raw"], flush=True)
    for backend, conn in conns.items():
        out["propagation"][backend] = await propagation(backend, conn, 50 if quick else 200)
        print(backend, "propagation", out["propagation"][backend], flush=True)
    n, rounds = (10_000, 1) if quick else (50_000, 3)
    out["throughput"] = await throughput_parts(conns, n, rounds)
    out["throughput"]["memory"] = await memory_throughput(n, 1000)
    return out


async def throughput_parts(conns: dict[str, dict[str, Any]], n: int, rounds: int) -> dict[str, Any]:
    """Ours against raw, Redis then Kafka (interleaved rounds, medians)."""
    out: dict[str, Any] = {}
    for backend in ("redis", "kafka"):
        out[backend] = await throughput(backend, conns[backend], n, rounds, 1000)
        print(backend, "throughput", out[backend], flush=True)
    return out


def throughput_only(rounds: int, result: dict[str, Any]) -> None:
    """Only the Redis and Kafka throughput rounds (same sizes as the full run)."""
    with ephemeral_redis(fsync="everysec") as redis_srv, ephemeral_kafka() as kafka:
        conns = {
            "redis": {"redis_url": redis_srv.url},
            "kafka": {"kafka_bootstrap": kafka.bootstrap},
        }
        result["throughput"] = asyncio.run(throughput_parts(conns, 50_000, rounds))
    OUT_THROUGHPUT.parent.mkdir(parents=True, exist_ok=True)
    OUT_THROUGHPUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| backend | produce msg/s | consume msg/s | raw produce | raw consume | ours/raw produce | ours/raw consume |"
    )
    print("|---|---|---|---|---|---|---|")
    for b, tp in result["throughput"].items():
        print(
            f"| {b} | {tp['produce_msgs_per_s']} | {tp['consume_msgs_per_s']} | {tp['raw_produce_msgs_per_s']}"
            f" | {tp['raw_consume_msgs_per_s']} | {tp['produce_ratio']} | {tp['consume_ratio']} |"
        )


def table(r: dict[str, Any]) -> str:
    lines = [
        f"Host: {r['host']}. Command: `make bench-bus` (`python loadtests/bench_bus.py`). "
        "Payload 100 bytes; Kafka and Redis on this host (Redis AOF `appendfsync everysec`, "
        "Kafka idempotent producer, acks=all).",
        "",
        "Raw redis-py doing the same open loop (pipelined XADD per tick, XREADGROUP BLOCK + XACK)"
        f": p50/p99 {r['bus']['latency']['redis_raw'][0]['p50_ms']}/"
        f"{r['bus']['latency']['redis_raw'][0]['p99_ms']} ms at 1k/s, "
        f"{r['bus']['latency']['redis_raw'][1]['p50_ms']}/{r['bus']['latency']['redis_raw'][1]['p99_ms']}"
        " ms at 10k/s.",
        "",
        "| backend | p50 @1k/s | p99 @1k/s | p50 @10k/s | p99 @10k/s | produce msg/s | consume msg/s"
        " | raw produce | raw consume | ours/raw produce | ours/raw consume | revoke p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in ("memory", "redis", "kafka"):
        lat = {x["rate"]: x for x in r["bus"]["latency"][b]}
        tp = r["bus"]["throughput"].get(b, {})
        lines.append(
            f"| {b} | {lat[1000]['p50_ms']} ms | {lat[1000]['p99_ms']} ms | {lat[10000]['p50_ms']} ms"
            f" | {lat[10000]['p99_ms']} ms (at {lat[10000]['achieved_rate']}/s)"
            f" | {tp.get('produce_msgs_per_s', '–')} | {tp.get('consume_msgs_per_s', '–')}"
            f" | {tp.get('raw_produce_msgs_per_s', '–')} | {tp.get('raw_consume_msgs_per_s', '–')}"
            f" | {tp.get('produce_ratio', '–')} | {tp.get('consume_ratio', '–')}"
            f" | {r['bus']['propagation'][b]['p99_ms']} ms |"
        )
    best = max(
        (v for t in r["bus"]["throughput"].values() for k, v in t.items()
         if k in ("produce_msgs_per_s", "consume_msgs_per_s")),
        default=0,
    )  # fmt: skip
    lines += [
        "",
        f"The issue asks for 1M+ messages/s. One Python process on this 2-core host moved at "
        f"most {best:,} per second here (one backend, one direction), and the raw client loops "
        "show the same order: per-message "
        "Python work in redis-py / aiokafka is the bottleneck, not the brokers. Getting to 1M+/s "
        "takes partitions spread over many consumer and producer processes and hosts (Kafka "
        "scales with partitions × consumers; Redis with one stream per partition across Redis "
        "Cluster shards, which the per-topic hash tag allows), many small messages packed into "
        "one bus record, and batch encoding/decoding in the Rust core instead of one Python "
        "object per message. Latencies here come with the host's load average noted above "
        "(other work may be running): compare ours with the raw redis-py loop of the same run.",
    ]
    es = r["event_store"]
    lines += [
        "",
        f"Event store: {es['sqlite_one_writer_events_per_s']} events/s by one writer on SQLite "
        f"(batches of 100; target ≥ 3,000), {es['postgres_16_writers_events_per_s']} events/s by "
        f"16 writers on PostgreSQL (one event per append, expected version checked; target ≥ "
        f"1,000); state as of T with snapshots every 100 events: p50 "
        f"{es['sqlite_state_at_p50_ms']} ms, p99 {es['sqlite_state_at_p99_ms']} ms (target ≤ 10 ms).",
        "",
        "| cluster limit, 4 processes, demand 100+200+600+700/s | admitted | limit | error |"
        " per process | acquire p50 | acquire p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for lr in r["limiter"]:
        label = (
            "shared 1,000/s via Redis (GCRA leases)"
            if lr["mode"] == "cluster"
            else "per-process 250/s each (local)"
        )
        lines.append(
            f"| {label}, {lr['seconds']} s | {lr['admitted']} | {lr['limit']} | "
            f"{lr['error_pct']:+.2f} % | {lr['per_process']} | {lr['acquire_p50_us']} µs | "
            f"{lr['acquire_p99_us']} µs |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller and shorter (not for the table)")
    ap.add_argument(
        "--throughput-only",
        action="store_true",
        help="only ours vs raw throughput on Redis and Kafka (to results/bus-throughput.json)",
    )
    ap.add_argument(
        "--rounds", type=int, default=3, help="throughput rounds with --throughput-only"
    )
    args = ap.parse_args()
    load = os.getloadavg()[0]
    result: dict[str, Any] = {
        "host": f"{platform.node() or 'host'}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f} at the start",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
    }
    if args.throughput_only:
        result["rounds"] = args.rounds
        throughput_only(args.rounds, result)
        return
    # Redis's AOF at its usual `everysec` (tests run `always`, which adds an fsync per write)
    with (
        ephemeral_redis(fsync="everysec") as redis_srv,
        ephemeral_kafka() as kafka,
        ephemeral_postgres() as pg,
    ):
        conns = {
            "memory": {},
            "redis": {"redis_url": redis_srv.url},
            "kafka": {"kafka_bootstrap": kafka.bootstrap},
        }
        result["bus"] = asyncio.run(bus_parts(conns, args.quick))
        result["event_store"] = asyncio.run(event_store(pg, args.quick))
        print("event store", result["event_store"], flush=True)
        secs = 5.0 if args.quick else 30.0
        result["limiter"] = [limiter_run(m, redis_srv.url, secs) for m in ("cluster", "local")]
        print("limiter", result["limiter"], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    if not args.quick:
        replace_section(
            "bus",
            "Bus, event store, cluster limits",
            table(result),
            "Publish → consume latency, batched throughput against raw client loops, platform "
            "change propagation, event store, and the shared rate limit's accuracy.",
        )
    print(table(result))


if __name__ == "__main__":
    main()
