"""The request history: per-route, per-agent and fleet rollups of traffic, written every flush.

`write` merges one interval's deltas into the current bucket of every tier (read, merge, upsert
in one transaction, so several writers sharing a database add up instead of overwriting).
`summary` and `series` answer the golden signals over any range and any set of agents with
exact sketch merges; `agents_table` gives them per agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentgate._core import Sketch
from agentgate.observe.db import MetricsDB
from agentgate.observe.feed import Deltas
from agentgate.observe.rollup import Span, bucket_of, cover, pick_step
from agentgate.observe.settings import DEFAULT_TIERS, Tier

__all__ = ["FLEET", "Signals", "TrafficHistory"]

FLEET = "*"
_COLS = (
    "requests, c_other, c_1xx, c_2xx, c_3xx, c_4xx, c_5xx, latency, upstream, "
    "in_flight_max, queue_max"
)


@dataclass(slots=True)
class _Acc:
    """One row being merged: counts, sketches, gauge maxima."""

    classes: list[int] = field(default_factory=lambda: [0] * 6)
    latency: Sketch | None = None
    upstream: Sketch | None = None
    in_flight: int = 0
    queue: int = 0

    def add_row(self, row: Sequence[Any]) -> None:
        # row: requests, c_other..c_5xx, latency, upstream, in_flight_max, queue_max
        for i in range(6):
            self.classes[i] += int(row[1 + i])
        if row[7] is not None:
            self.latency = _merge(self.latency, Sketch.from_bytes(bytes(row[7])))
        if row[8] is not None:
            self.upstream = _merge(self.upstream, Sketch.from_bytes(bytes(row[8])))
        self.in_flight = max(self.in_flight, int(row[9]))
        self.queue = max(self.queue, int(row[10]))

    def values(self) -> tuple[Any, ...]:
        return (
            sum(self.classes),
            *self.classes,
            self.latency.to_bytes() if self.latency is not None else None,
            self.upstream.to_bytes() if self.upstream is not None else None,
            self.in_flight,
            self.queue,
        )


def _merge(into: Sketch | None, s: Sketch) -> Sketch:
    if into is None:
        out = Sketch()
        out.merge(s)
        return out
    into.merge(s)
    return into


@dataclass(slots=True)
class Signals:
    """Golden signals over a range: throughput, errors, latency quantiles, saturation."""

    start: int
    end: int
    requests: int
    classes: list[int]
    latency: Sketch
    in_flight_max: int
    queue_max: int

    @property
    def seconds(self) -> float:
        """Length of the covered range."""
        return float(max(1, self.end - self.start))

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        """5xx answers (the gateway's own 502/503/504 included)."""
        return self.classes[5]

    @property
    def error_rate(self) -> float:
        """5xx share of all requests (0 without requests)."""
        return self.classes[5] / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile in seconds (None without requests)."""
        return self.latency.quantile(q)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        p50, p95, p99 = self.latency.quantiles([0.5, 0.95, 0.99])
        return {
            "start": self.start,
            "end": self.end,
            "requests": self.requests,
            "rate": self.rate,
            "status": dict(
                zip(("other", "1xx", "2xx", "3xx", "4xx", "5xx"), self.classes, strict=True)
            ),
            "error_rate": self.error_rate,
            "latency": {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "mean": (self.latency.sum / self.latency.count) if self.latency.count else None,
                "max": self.latency.max,
            },
            "in_flight_max": self.in_flight_max,
            "queue_max": self.queue_max,
        }


def _signals(acc: _Acc, start: int, end: int) -> Signals:
    lat = acc.latency if acc.latency is not None else Sketch()
    return Signals(start, end, sum(acc.classes), acc.classes, lat, acc.in_flight, acc.queue)


class TrafficHistory:
    """Traffic rollups in the `metric_traffic` table."""

    def __init__(
        self,
        db: MetricsDB,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.tiers = tuple(tiers)
        self.clock = clock

    # --- writing ------------------------------------------------------------------------

    async def write(self, at: float, deltas: Deltas) -> int:
        """Merge one interval's deltas into every tier's bucket of time `at`; rows written."""
        accs: dict[tuple[str, str], _Acc] = {}

        def acc(agent: str, route: str) -> _Acc:
            a = accs.get((agent, route))
            if a is None:
                a = accs[(agent, route)] = _Acc()
            return a

        for d in deltas.routes:
            if d.requests == 0 and d.latency.count == 0:
                continue
            for key in ((d.agent, d.route), (d.agent, FLEET), (FLEET, FLEET)):
                a = acc(*key)
                for i, n in enumerate(d.classes):
                    a.classes[i] += int(n)
                a.latency = _merge(a.latency, d.latency)
        for agent, sk in deltas.upstream.items():
            if sk.count:
                for key in ((agent, FLEET), (FLEET, FLEET)):
                    a = acc(*key)
                    a.upstream = _merge(a.upstream, sk)
        fleet_inflight = fleet_queue = 0
        for agent, st in deltas.agents.items():
            if st.in_flight or st.queued:
                a = acc(agent, FLEET)
                a.in_flight = max(a.in_flight, st.in_flight)
                a.queue = max(a.queue, st.queued)
            fleet_inflight += st.in_flight
            fleet_queue += st.queued
        if fleet_inflight or fleet_queue:
            a = acc(FLEET, FLEET)
            a.in_flight = max(a.in_flight, fleet_inflight)
            a.queue = max(a.queue, fleet_queue)
        if not accs:
            return 0
        written = 0
        async with self.db.transaction() as tx:
            for tier in self.tiers:
                step = int(tier.step)
                b = bucket_of(at, step)
                existing = await tx.fetch(
                    f"SELECT agent, route, {_COLS} FROM metric_traffic "
                    "WHERE step = ? AND bucket = ?",
                    step,
                    b,
                )
                merged: dict[tuple[str, str], _Acc] = {}
                for row in existing:
                    k = (row[0], row[1])
                    if k in accs:
                        old = merged[k] = _Acc()
                        old.add_row(row[2:])
                rows = []
                for k, new in accs.items():
                    prev = merged.get(k)
                    if prev is None:
                        vals = new.values()
                    else:
                        prev.add_row(new.values())
                        vals = prev.values()
                    rows.append((k[0], k[1], step, b, *vals))
                await tx.executemany(
                    f"INSERT INTO metric_traffic (agent, route, step, bucket, {_COLS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (agent, route, step, bucket) DO UPDATE SET "
                    "requests = excluded.requests, c_other = excluded.c_other, "
                    "c_1xx = excluded.c_1xx, c_2xx = excluded.c_2xx, c_3xx = excluded.c_3xx, "
                    "c_4xx = excluded.c_4xx, c_5xx = excluded.c_5xx, latency = excluded.latency, "
                    "upstream = excluded.upstream, in_flight_max = excluded.in_flight_max, "
                    "queue_max = excluded.queue_max",
                    rows,
                )
                written += len(rows)
        return written

    async def expire(self, now: float | None = None) -> int:
        """Delete buckets older than their tier's retention; rows deleted."""
        now = self.clock() if now is None else now
        total = 0
        for tier in self.tiers:
            cutoff = bucket_of(now - tier.keep, int(tier.step))
            rows = await self.db.fetch(
                "SELECT COUNT(*) FROM metric_traffic WHERE step = ? AND bucket < ?",
                int(tier.step),
                cutoff,
            )
            n = int(rows[0][0]) if rows else 0
            if n:
                async with self.db.transaction() as tx:
                    await tx.executemany(
                        "DELETE FROM metric_traffic WHERE step = ? AND bucket < ?",
                        [(int(tier.step), cutoff)],
                    )
                total += n
        return total

    # --- reading ------------------------------------------------------------------------

    async def _rows(
        self, spans: Iterable[Span], agent: str | None, route: str, cols: str
    ) -> list[tuple[Any, ...]]:
        parts: list[str] = []
        args: list[Any] = []
        for sp in spans:
            if agent is None:
                parts.append(
                    f"SELECT agent, bucket, step, {cols} FROM metric_traffic "
                    "WHERE step = ? AND bucket >= ? AND bucket < ? AND route = ? AND agent <> ?"
                )
                args += [sp.step, sp.start, sp.end, route, FLEET]
            else:
                parts.append(
                    f"SELECT agent, bucket, step, {cols} FROM metric_traffic "
                    "WHERE agent = ? AND route = ? AND step = ? AND bucket >= ? AND bucket < ?"
                )
                args += [agent, route, sp.step, sp.start, sp.end]
        if not parts:
            return []
        return await self.db.fetch(" UNION ALL ".join(parts), *args)

    async def summary(
        self,
        start: float,
        end: float,
        *,
        agent: str = FLEET,
        route: str = FLEET,
        agents: Sequence[str] | None = None,
    ) -> Signals:
        """Golden signals of one agent (or route, or the fleet, or a set of agents)."""
        spans, s0, e0 = cover(self.tiers, start, end, self.clock())
        a = _Acc()
        if agents is None:
            for row in await self._rows(spans, agent, route, _COLS):
                a.add_row(row[3:])
        elif agents:
            table = await self.agents_table(start, end, agents, resolution=0.0)
            blobs = []
            for sig in table.values():
                for i in range(6):
                    a.classes[i] += sig.classes[i]
                a.in_flight = max(a.in_flight, sig.in_flight_max)
                a.queue = max(a.queue, sig.queue_max)
                blobs.append(sig.latency.to_bytes())
            a.latency = Sketch.merged(blobs)
        return _signals(a, s0, e0)

    async def agents_table(
        self,
        start: float,
        end: float,
        agents: Sequence[str] | None = None,
        resolution: float | None = None,
    ) -> dict[str, Signals]:
        """Golden signals per agent over the range (every agent with data, or `agents`).

        The range's edges are rounded outward to buckets of up to `resolution` seconds (by
        default 1/500 of the range: an hour for 30 days, 10 s for an hour)."""
        res = (end - start) / 500 if resolution is None else resolution
        spans, s0, e0 = cover(self.tiers, start, end, self.clock(), res)
        if not spans or (agents is not None and not agents):
            return {}  # no agents asked for (`IN ()` is not SQL PostgreSQL takes)
        where, args = self._where(spans, agents)
        # counts summed by the database; only the sketches cross into Python (then the core)
        counts = await self.db.fetch(
            "SELECT agent, SUM(c_other), SUM(c_1xx), SUM(c_2xx), SUM(c_3xx), SUM(c_4xx), "
            f"SUM(c_5xx), MAX(in_flight_max), MAX(queue_max) FROM metric_traffic WHERE {where} "
            "GROUP BY agent",
            *args,
        )
        blobs: dict[str, list[bytes]] = {}
        for name, lat in await self.db.fetch(
            f"SELECT agent, latency FROM metric_traffic WHERE {where} AND latency IS NOT NULL",
            *args,
        ):
            b = blobs.get(name)
            if b is None:
                blobs[name] = [lat]
            else:
                b.append(lat)
        out = {}
        for name, c0, c1, c2, c3, c4, c5, inf, q in counts:
            a = _Acc([int(c0), int(c1), int(c2), int(c3), int(c4), int(c5)])
            a.in_flight, a.queue = int(inf or 0), int(q or 0)
            # one call into the core per agent: decode and merge every bucket's sketch there
            a.latency = Sketch.merged(blobs.get(name, []))
            out[name] = _signals(a, s0, e0)
        return out

    @staticmethod
    def _where(spans: Sequence[Span], agents: Sequence[str] | None) -> tuple[str, list[Any]]:
        ors: list[str] = []
        args: list[Any] = []
        for sp in spans:
            ors.append("(step = ? AND bucket >= ? AND bucket < ?)")
            args += [sp.step, sp.start, sp.end]
        where = f"route = ? AND agent <> ? AND ({' OR '.join(ors)})"
        args[:0] = [FLEET, FLEET]
        if agents is not None:
            where += f" AND agent IN ({', '.join('?' for _ in agents)})"
            args += list(agents)
        return where, args

    async def series(
        self,
        start: float,
        end: float,
        *,
        agent: str = FLEET,
        route: str = FLEET,
        points: int = 120,
        step: int | None = None,
    ) -> tuple[int, list[Signals]]:
        """The signals per time step over the range (for charts): (step, points)."""
        now = self.clock()
        st = step or pick_step(self.tiers, start, end, now, points)
        tier_steps = [int(t.step) for t in self.tiers]
        read_step = max([s for s in tier_steps if s <= st and st % s == 0] or [tier_steps[0]])
        lo, hi = bucket_of(start, st), bucket_of(end, st) + st
        rows = await self._rows([Span(read_step, lo, hi)], agent, route, _COLS)
        groups: dict[int, _Acc] = {}
        for row in rows:
            b = bucket_of(row[1], st)
            a = groups.get(b)
            if a is None:
                a = groups[b] = _Acc()
            a.add_row(row[3:])
        out = []
        for b in range(lo, hi, st):
            a = groups.get(b)
            out.append(_signals(a if a is not None else _Acc(), b, b + st))
        return st, out

    async def known_agents(self, since: float) -> list[str]:
        """Agents with traffic since `since` (finest tier)."""
        step = int(self.tiers[0].step)
        rows = await self.db.fetch(
            "SELECT DISTINCT agent FROM metric_traffic WHERE step = ? AND bucket >= ? "
            "AND route = ? AND agent <> ?",
            step,
            bucket_of(since, step),
            FLEET,
            FLEET,
        )
        return sorted(r[0] for r in rows)
