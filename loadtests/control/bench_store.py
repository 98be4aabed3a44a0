"""Store benchmark: insert 10,000 template versions, then time exact gets and range candidates.

    .venv/bin/python loadtests/control/bench_store.py [--n 10000] [--queries 2000] [--pg URL]

Without --pg it starts a throwaway PostgreSQL (tests/pg_ephemeral.py) for the postgres run;
--sqlite-only skips PostgreSQL. Prints median and p99 per operation and backend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agentgate.store import NewTemplate, Store, open_store

ROOT = Path(__file__).resolve().parents[2]


def _tpl(i: int) -> NewTemplate:
    name = f"agent-{i % 500}"  # 500 names x 20 versions
    major, minor, patch = (i // 500) % 4, (i // 2000) % 5, i % 7
    version = f"{major}.{minor}.{patch}-{i}"
    return NewTemplate(
        name=name,
        version=version,
        major=major,
        minor=minor,
        patch=patch,
        prerelease=str(i),
        digest="sha256:" + hashlib.sha256(f"{name}{version}".encode()).hexdigest(),
        body={"name": name, "version": version, "spec": {"kind": "http", "pool": {"size": 4}}},
        description=f"agent {name} that does thing {i}",
        capabilities=("chat", f"cap{i % 10}"),
    )


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"median {statistics.median(s) * 1e3:7.3f} ms   p99 {p99 * 1e3:7.3f} ms"


async def bench(store: Store, n: int, queries: int, label: str) -> None:
    tenant = await store.system.tenants.create(f"bench-{time.time_ns()}")
    s = store.scoped(tenant.id)
    t0 = time.perf_counter()
    ins: list[float] = []
    for i in range(n):
        a = time.perf_counter()
        await s.templates.insert(_tpl(i))
        ins.append(time.perf_counter() - a)
    print(f"[{label}] insert {n:>6}: {time.perf_counter() - t0:6.2f} s total   {_stats(ins)}")
    rng = random.Random(1)
    get: list[float] = []
    rangeq: list[float] = []
    for _ in range(queries):
        i = rng.randrange(n)
        t = _tpl(i)
        a = time.perf_counter()
        await s.templates.get(t.name, t.version)
        get.append(time.perf_counter() - a)
        a = time.perf_counter()
        await s.templates.candidates(t.name, lower=(1, 0, 0), upper=(2, 0, 0))  # ^1
        rangeq.append(time.perf_counter() - a)
    print(f"[{label}] get name@version     {_stats(get)}")
    print(f"[{label}] candidates ^1 range  {_stats(rangeq)}")


@contextlib.contextmanager
def _pg(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_ephemeral import ephemeral_postgres

    with ephemeral_postgres() as u:
        yield u


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--pg", default=None, help="postgresql:// URL (default: throwaway server)")
    ap.add_argument("--sqlite-only", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = await open_store(None, Path(d))
        try:
            await bench(store, args.n, args.queries, "sqlite")
        finally:
            await store.close()
    if args.sqlite_only:
        return
    with _pg(args.pg) as url:
        store = await open_store(url, Path("."))
        try:
            await bench(store, args.n, args.queries, "postgres")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
