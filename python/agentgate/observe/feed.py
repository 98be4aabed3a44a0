"""Where the collector's numbers come from: a `StatsFeed` yields per-interval deltas.

The delta shape is the core's `GatewayCore.take_stats()`: per route (agent, route, requests by
status class, latency) and per agent (upstream latency), plus a point-in-time view of each
agent (`GatewayCore.stats()`: endpoints with health and breaker state, in flight, queue depths).

Latency arrives either as a `Sketch` (DDSketch, 1 % relative error; what
`agentgate._core.AtomicSketch.take()` returns) or as the core's fixed histogram buckets over
`LATENCY_BOUNDS`. Bucket counts are spread log-uniformly inside their bucket when turned into a
sketch (the interpolation Prometheus' `histogram_quantile` does, in log space), so quantiles from
bucket feeds are only as good as the bucket bounds; sketch feeds keep the 1 % guarantee.

Feeds here:
- `CoreFeed`: a `GatewayCore` in this process (the data plane after the redesign).
- `PrometheusFeed`: the multi-process Prometheus files the gateway workers write today, read
  in the admin process (cumulative counters turned into deltas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentgate._core import LATENCY_BOUNDS, Sketch

__all__ = [
    "AgentState",
    "CoreFeed",
    "Deltas",
    "PrometheusFeed",
    "RouteDelta",
    "StatsFeed",
    "buckets_to_sketch",
]

CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(slots=True)
class RouteDelta:
    """Requests of one route that finished during the interval."""

    agent: str
    route: str
    classes: Sequence[int]  # index 1..5 = Nxx, 0 = any other status
    latency: Sketch

    @property
    def requests(self) -> int:
        """All finished requests."""
        return sum(self.classes)


@dataclass(slots=True)
class AgentState:
    """A point-in-time view of one agent pool."""

    agent: str
    endpoints: int
    healthy: int
    breakers_open: int
    in_flight: int
    queued: int
    health_checked: bool = False


@dataclass(slots=True)
class Deltas:
    """What one `take()` returns."""

    routes: list[RouteDelta] = field(default_factory=list)
    upstream: dict[str, Sketch] = field(default_factory=dict)
    agents: dict[str, AgentState] = field(default_factory=dict)


class StatsFeed(Protocol):
    """A source of per-interval deltas; `take` resets what it returns."""

    def take(self) -> Deltas:
        """Counts since the previous call and the current agent states."""
        ...


_SPREAD = 8  # points per bucket when spreading bucket counts over a sketch


def buckets_to_sketch(counts: Sequence[int], total: float, out: Sketch | None = None) -> Sketch:
    """A sketch of bucket counts over `LATENCY_BOUNDS` (+Inf last), spread log-uniformly."""
    s = out if out is not None else Sketch()
    bounds = LATENCY_BOUNDS
    for i, n in enumerate(counts):
        if n <= 0:
            continue
        hi = bounds[i] if i < len(bounds) else bounds[-1] * 2
        lo = bounds[i - 1] if i > 0 else hi / 10
        k = min(_SPREAD, n)
        base, extra = divmod(n, k)
        ratio = math.log(hi / lo)
        for j in range(k):
            v = lo * math.exp(ratio * (j + 0.5) / k)
            s.add(v, base + (1 if j < extra else 0))
    _ = total  # the exact sum is not recoverable into a sketch; bucket midpoints stand in
    return s


def _state_of(name: str, pool: dict[str, Any], health_checked: bool = False) -> AgentState:
    eps = pool.get("endpoints", [])
    return AgentState(
        agent=name,
        endpoints=len(eps),
        healthy=sum(1 for ep in eps if ep.get("healthy") and ep.get("breaker") != "open"),
        breakers_open=sum(1 for ep in eps if ep.get("breaker") == "open"),
        in_flight=int(pool.get("in_flight", 0)),
        queued=int(sum(pool.get("queue", ()) or ())),
        health_checked=health_checked,
    )


class CoreFeed:
    """Deltas from a `GatewayCore` (or anything with its `take_stats` / `stats`).

    The feed must be the only caller of `take_stats` on that core: each call resets it.
    """

    def __init__(self, core: Any, health_checked: frozenset[str] = frozenset()) -> None:
        self._core = core
        self._checked = health_checked

    def take(self) -> Deltas:
        """Counts since the previous call and the current agent states."""
        routes, upstream = self._core.take_stats()
        out = Deltas()
        for agent, route, classes, lat, total in routes:
            sk = lat if isinstance(lat, Sketch) else buckets_to_sketch(lat, total)
            out.routes.append(RouteDelta(agent, route, list(classes), sk))
        for agent, lat, total in upstream:
            sk = lat if isinstance(lat, Sketch) else buckets_to_sketch(lat, total)
            prev = out.upstream.get(agent)
            if prev is None:
                out.upstream[agent] = sk
            else:
                prev.merge(sk)
        for name, pool in self._core.stats().items():
            out.agents[name] = _state_of(name, pool, name in self._checked)
        return out


class PrometheusFeed:
    """Deltas from the gateway workers' multi-process Prometheus files (today's `serve`).

    `agentgate_requests` and `agentgate_request_duration_seconds` are cumulative; the feed keeps
    the previous totals and returns the differences (a restart of the counters, seen as a
    decrease, counts from zero). `states` supplies the agents' health as seen by the admin
    process's own probes, merged with the workers' breaker, in-flight and queue gauges.
    """

    def __init__(self, states: Any = None) -> None:
        self._prev_classes: dict[tuple[str, str, str], float] = {}
        self._prev_buckets: dict[tuple[str, str, str], float] = {}
        self._states = states
        self._primed = False

    def take(self) -> Deltas:
        """Counts since the previous call and the current agent states."""
        from agentgate.observe.metrics import _registry, fleet_state

        classes: dict[tuple[str, str], list[int]] = {}
        buckets: dict[tuple[str, str], list[int]] = {}
        cur_classes: dict[tuple[str, str, str], float] = {}
        cur_buckets: dict[tuple[str, str, str], float] = {}
        health: dict[str, dict[str, bool]] = {}
        for metric in _registry().collect():
            if metric.name == "agentgate_endpoint_healthy":
                for s in metric.samples:
                    hs = health.setdefault(s.labels.get("agent", ""), {})
                    url = s.labels.get("endpoint", "")
                    hs[url] = hs.get(url, True) and s.value > 0
            if metric.name == "agentgate_requests":
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        k = (s.labels["agent"], s.labels["route"], s.labels["status_class"])
                        cur_classes[k] = cur_classes.get(k, 0.0) + s.value
            elif metric.name == "agentgate_request_duration_seconds":
                for s in metric.samples:
                    if s.name.endswith("_bucket"):
                        k = (s.labels["agent"], s.labels["route"], s.labels["le"])
                        cur_buckets[k] = cur_buckets.get(k, 0.0) + s.value
        out = Deltas()
        if self._primed:
            for k, v in cur_classes.items():
                d = v - self._prev_classes.get(k, 0.0)
                if d < 0:
                    d = v
                if d > 0:
                    cls = CLASSES.index(k[2]) if k[2] in CLASSES else 0
                    classes.setdefault((k[0], k[1]), [0] * 6)[cls] += int(d)
            les = [*(repr(float(b)) for b in LATENCY_BOUNDS), "+Inf"]
            for key in {(a, r) for a, r, _ in cur_buckets}:
                cum_now = [cur_buckets.get((*key, le), 0.0) for le in les]
                cum_prev = [self._prev_buckets.get((*key, le), 0.0) for le in les]
                if cum_now[-1] < cum_prev[-1]:
                    cum_prev = [0.0] * len(les)
                per = []
                last = 0.0
                for a, b in zip(cum_now, cum_prev, strict=True):
                    c = a - b
                    per.append(max(0, round(c - last)))
                    last = c
                if any(per):
                    buckets[key] = per
            for key in set(classes) | set(buckets):
                sk = buckets_to_sketch(buckets.get(key, [0] * (len(LATENCY_BOUNDS) + 1)), 0.0)
                out.routes.append(RouteDelta(key[0], key[1], classes.get(key, [0] * 6), sk))
        self._prev_classes, self._prev_buckets = cur_classes, cur_buckets
        self._primed = True
        fleet = fleet_state()
        pools: dict[str, Any] = self._states() if self._states is not None else {}
        for name in set(fleet) | set(pools) | set(health):
            live = fleet.get(name, {})
            pool = pools.get(name, {})
            checked = health.get(name, {})
            urls = list(dict.fromkeys([*live.get("breakers", {}), *checked]))
            eps: list[dict[str, Any]] = pool.get("endpoints") or [
                {"url": u, "healthy": checked.get(u, True)} for u in urls
            ]
            merged = {
                "endpoints": [
                    {**ep, "breaker": live.get("breakers", {}).get(ep.get("url"), "closed")}
                    for ep in eps
                ],
                "in_flight": live.get("in_flight", 0),
                "queue": [live.get("queued", 0)],
            }
            out.agents[name] = _state_of(
                name, merged, bool(pool.get("health_checked")) or bool(checked)
            )
        return out
