"""Custom and business metrics: counters, gauges and histograms with labels, per tenant.

Points are merged into the rollup tiers as they arrive (one transaction per batch), so queries
use the same tier cover as the request history:

- counter: each point is an increment (>= 0); `sum`/`rate` over a range.
- gauge: each point is the current value; `last`, `avg`, `min`, `max`, quantiles of the samples.
- histogram: each point is one observation; quantiles are DDSketch merges (1 % relative error).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from agentgate._core import Sketch
from agentgate.errors import Invalid
from agentgate.observe.db import MetricsDB
from agentgate.observe.rollup import bucket_of, cover, pick_step
from agentgate.observe.settings import DEFAULT_TIERS, Tier

__all__ = ["AGGREGATIONS", "CustomMetrics", "Point", "Result"]

Kind = Literal["counter", "gauge", "histogram"]
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last", "rate", "p50", "p95", "p99")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:.]{0,199}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
MAX_LABELS = 16


@dataclass(frozen=True, slots=True)
class Point:
    """One recorded value."""

    name: str
    kind: Kind
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    agent: str = ""
    at: float | None = None


def check_point(p: Point, path: str) -> None:
    """Invalid (422) naming the field when a point is unusable."""
    if not _NAME.match(p.name):
        raise Invalid(f"metric name must match {_NAME.pattern}", f"{path}.name")
    if p.value != p.value or p.value in (float("inf"), float("-inf")):
        raise Invalid("value must be a finite number", f"{path}.value")
    if p.kind == "counter" and p.value < 0:
        raise Invalid("a counter only goes up: value must be >= 0", f"{path}.value")
    if len(p.labels) > MAX_LABELS:
        raise Invalid(f"at most {MAX_LABELS} labels", f"{path}.labels")
    for k, v in p.labels:
        if not _LABEL.match(k):
            raise Invalid(f"label name must match {_LABEL.pattern}", f"{path}.labels.{k}")
        if len(v) > 500:
            raise Invalid("label value longer than 500 characters", f"{path}.labels.{k}")


@dataclass(slots=True)
class _Acc:
    count: int = 0
    sum: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    first: float = 0.0
    first_at: float = float("inf")
    last: float = 0.0
    last_at: float = float("-inf")
    sketch: Sketch | None = None

    def add_row(self, r: Sequence[Any], step_start: float) -> None:
        # r: count, sum, min, max, first, last, last_at, sketch
        self.count += int(r[0])
        self.sum += float(r[1])
        self.min = min(self.min, float(r[2]))
        self.max = max(self.max, float(r[3]))
        if step_start < self.first_at:
            self.first, self.first_at = float(r[4]), step_start
        if float(r[6]) >= self.last_at:
            self.last, self.last_at = float(r[5]), float(r[6])
        if r[7] is not None:
            s = Sketch.from_bytes(bytes(r[7]))
            if self.sketch is None:
                self.sketch = s
            else:
                self.sketch.merge(s)


@dataclass(slots=True)
class Result:
    """One aggregated value of one series group."""

    name: str
    agent: str
    labels: dict[str, str]
    value: float | None
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "name": self.name,
            "agent": self.agent,
            "labels": self.labels,
            "value": self.value,
            "start": self.start,
            "end": self.end,
        }


def _value(agg: str, a: _Acc, kind: str, seconds: float) -> float | None:
    if a.count == 0:
        return None
    if agg == "avg":
        return a.sum / a.count
    if agg == "min":
        return a.min
    if agg == "max":
        return a.max
    if agg == "sum":
        return a.sum
    if agg == "count":
        return float(a.count)
    if agg == "last":
        return a.last
    if agg == "rate":
        # counters: increments per second; gauges: change per second; histograms: events/s
        if kind == "counter":
            return a.sum / seconds
        if kind == "gauge":
            return (a.last - a.first) / seconds
        return a.count / seconds
    q = {"p50": 0.5, "p95": 0.95, "p99": 0.99}.get(agg)
    if q is None:
        raise Invalid(f"aggregation must be one of {', '.join(AGGREGATIONS)}", "$.query.agg")
    return a.sketch.quantile(q) if a.sketch is not None else None


class CustomMetrics:
    """Custom series of every tenant in `metric_series` / `metric_points`."""

    def __init__(
        self,
        db: MetricsDB,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.tiers = tuple(tiers)
        self.clock = clock
        self._ids: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    async def record(self, tenant_id: str, points: Sequence[Point]) -> int:
        """Merge points into every tier; returns how many were recorded."""
        import uuid

        for i, p in enumerate(points):
            check_point(p, f"$.points[{i}]")
        now = self.clock()
        async with self.db.transaction() as tx:
            # series ids (created on first use; the kind of an existing series must match)
            accs: dict[tuple[str, int, int], _Acc] = {}
            kinds: dict[str, str] = {}
            for i, p in enumerate(points):
                lk = orjson.dumps(sorted(p.labels)).decode()
                key = (tenant_id, p.name, p.agent, lk)
                hit = self._ids.get(key)
                if hit is None:
                    rows = await tx.fetch(
                        "SELECT id, kind FROM metric_series WHERE tenant_id = ? AND name = ? "
                        "AND agent = ? AND labels_key = ?",
                        *key,
                    )
                    if rows:
                        hit = (rows[0][0], rows[0][1])
                    else:
                        sid = uuid.uuid4().hex
                        await tx.executemany(
                            "INSERT INTO metric_series (id, tenant_id, name, kind, agent, labels, "
                            "labels_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [
                                (
                                    sid,
                                    tenant_id,
                                    p.name,
                                    p.kind,
                                    p.agent,
                                    orjson.dumps(dict(p.labels)).decode(),
                                    lk,
                                    now,
                                )
                            ],
                        )
                        hit = (sid, p.kind)
                    self._ids[key] = hit
                sid, kind = hit
                if kind != p.kind:
                    raise Invalid(
                        f"metric {p.name!r} with these labels is a {kind}, not a {p.kind}",
                        f"$.points[{i}].kind",
                    )
                kinds[sid] = kind
                at = p.at if p.at is not None else now
                for tier in self.tiers:
                    step = int(tier.step)
                    k = (sid, step, bucket_of(at, step))
                    a = accs.get(k)
                    if a is None:
                        a = accs[k] = _Acc()
                    a.count += 1
                    a.sum += p.value
                    a.min = min(a.min, p.value)
                    a.max = max(a.max, p.value)
                    if at < a.first_at:
                        a.first, a.first_at = p.value, at
                    if at >= a.last_at:
                        a.last, a.last_at = p.value, at
                    if kind != "counter":
                        if a.sketch is None:
                            a.sketch = Sketch()
                        a.sketch.add(p.value)
            # merge with what the buckets hold already
            rows_out = []
            by_bucket: dict[tuple[int, int], list[str]] = {}
            for sid, step, b in accs:
                by_bucket.setdefault((step, b), []).append(sid)
            for (step, b), sids in by_bucket.items():
                marks = ", ".join("?" for _ in sids)
                existing = await tx.fetch(
                    "SELECT series_id, count, sum, min, max, first, last, last_at, sketch "
                    f"FROM metric_points WHERE step = ? AND bucket = ? AND series_id IN ({marks})",
                    step,
                    b,
                    *sids,
                )
                have = {r[0]: r[1:] for r in existing}
                for sid in sids:
                    a = accs[(sid, step, b)]
                    old = have.get(sid)
                    if old is not None:
                        m = _Acc()
                        m.add_row(old, b)
                        m.count += a.count
                        m.sum += a.sum
                        m.min, m.max = min(m.min, a.min), max(m.max, a.max)
                        if a.last_at >= m.last_at:
                            m.last, m.last_at = a.last, a.last_at
                        if a.sketch is not None:
                            if m.sketch is None:
                                m.sketch = a.sketch
                            else:
                                m.sketch.merge(a.sketch)
                        a = m
                    rows_out.append(
                        (
                            sid,
                            step,
                            b,
                            a.count,
                            a.sum,
                            a.min,
                            a.max,
                            a.first,
                            a.last,
                            a.last_at,
                            a.sketch.to_bytes() if a.sketch is not None else None,
                        )
                    )
            await tx.executemany(
                "INSERT INTO metric_points (series_id, step, bucket, count, sum, min, max, first, "
                "last, last_at, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (series_id, step, bucket) DO UPDATE SET count = excluded.count, "
                "sum = excluded.sum, min = excluded.min, max = excluded.max, "
                "last = excluded.last, last_at = excluded.last_at, sketch = excluded.sketch",
                rows_out,
            )
        return len(points)

    async def names(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's metric names with kind and number of series."""
        rows = await self.db.fetch(
            "SELECT name, kind, COUNT(*) FROM metric_series WHERE tenant_id = ? "
            "GROUP BY name, kind ORDER BY name",
            tenant_id,
        )
        return [{"name": r[0], "kind": r[1], "series": int(r[2])} for r in rows]

    async def _series(
        self, tenant_id: str, name: str, agent: str | None, labels: dict[str, str]
    ) -> list[tuple[str, str, str, dict[str, str]]]:
        args: list[Any] = [tenant_id, name]
        sql = "SELECT id, kind, agent, labels FROM metric_series WHERE tenant_id = ? AND name = ?"
        if agent is not None:
            sql += " AND agent = ?"
            args.append(agent)
        out = []
        for sid, kind, ag, lab in await self.db.fetch(sql, *args):
            lbl = orjson.loads(lab)
            if all(lbl.get(k) == v for k, v in labels.items()):
                out.append((sid, kind, ag, lbl))
        return out

    async def query(
        self,
        tenant_id: str,
        name: str,
        *,
        agg: str = "avg",
        start: float,
        end: float,
        agent: str | None = None,
        labels: dict[str, str] | None = None,
        by: Sequence[str] = (),
        step: int | None = None,
        points: int = 120,
    ) -> list[dict[str, Any]]:
        """Aggregate the matching series, grouped by `by` (label names and/or `agent`).

        Without `step`: one value per group over the whole range. With `step` (or
        `points`>0 and `step`=0): a time series per group.
        """
        if agg not in AGGREGATIONS:
            raise Invalid(f"agg must be one of {', '.join(AGGREGATIONS)}", "$.query.agg")
        series = await self._series(tenant_id, name, agent, labels or {})
        if not series:
            return []
        now = self.clock()
        ids = {s[0]: s for s in series}

        def group_of(s: tuple[str, str, str, dict[str, str]]) -> tuple[str, ...]:
            return tuple(s[2] if b == "agent" else s[3].get(b, "") for b in by)

        marks = ", ".join("?" for _ in ids)
        if step is None:
            spans, s0, e0 = cover(self.tiers, start, end, now)
            groups: dict[tuple[str, ...], _Acc] = {}
            kinds: dict[tuple[str, ...], str] = {}
            for sp in spans:
                rows = await self.db.fetch(
                    "SELECT series_id, bucket, count, sum, min, max, first, last, last_at, sketch "
                    f"FROM metric_points WHERE step = ? AND bucket >= ? AND bucket < ? "
                    f"AND series_id IN ({marks})",
                    sp.step,
                    sp.start,
                    sp.end,
                    *ids,
                )
                for r in rows:
                    s = ids[r[0]]
                    g = group_of(s)
                    kinds[g] = s[1]
                    groups.setdefault(g, _Acc()).add_row(r[2:], float(r[1]))
            out = []
            for g, a in sorted(groups.items()):
                out.append(
                    {
                        "group": dict(zip(by, g, strict=True)),
                        "value": _value(agg, a, kinds[g], float(max(1, e0 - s0))),
                        "start": s0,
                        "end": e0,
                    }
                )
            return out
        st = step or pick_step(self.tiers, start, end, now, points)
        steps = [int(t.step) for t in self.tiers]
        read = max([s for s in steps if s <= st and st % s == 0] or [steps[0]])
        lo, hi = bucket_of(start, st), bucket_of(end, st) + st
        rows = await self.db.fetch(
            "SELECT series_id, bucket, count, sum, min, max, first, last, last_at, sketch "
            f"FROM metric_points WHERE step = ? AND bucket >= ? AND bucket < ? "
            f"AND series_id IN ({marks}) ORDER BY bucket",
            read,
            lo,
            hi,
            *ids,
        )
        cells: dict[tuple[str, ...], dict[int, _Acc]] = {}
        gkinds: dict[tuple[str, ...], str] = {}
        for r in rows:
            s = ids[r[0]]
            g = group_of(s)
            gkinds[g] = s[1]
            b = bucket_of(r[1], st)
            cells.setdefault(g, {}).setdefault(b, _Acc()).add_row(r[2:], float(r[1]))
        result: list[dict[str, Any]] = []
        for g, by_b in sorted(cells.items()):
            pts: list[list[float | None]] = []
            for b in range(lo, hi, st):
                cell = by_b.get(b)
                pts.append([b, _value(agg, cell, gkinds[g], float(st)) if cell else None])
            series_out: dict[str, Any] = {"group": dict(zip(by, g, strict=True)), "step": st}
            series_out["points"] = pts
            result.append(series_out)
        return result

    async def expire(self, now: float | None = None) -> None:
        """Delete points older than their tier's retention."""
        now = self.clock() if now is None else now
        async with self.db.transaction() as tx:
            for tier in self.tiers:
                await tx.executemany(
                    "DELETE FROM metric_points WHERE step = ? AND bucket < ?",
                    [(int(tier.step), bucket_of(now - tier.keep, int(tier.step)))],
                )
