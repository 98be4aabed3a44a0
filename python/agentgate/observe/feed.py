"""Where the collector's numbers come from: a `StatsFeed` yields per-interval deltas.

The delta shape follows the core's `DataPlane.take_stats()`: per route (agent, route, requests
by status class, latency) and per agent (upstream latency), plus a point-in-time view of each
agent (`DataPlane.agents()`: endpoints with health and breaker state, in flight, queue depths).

Latency arrives either as a `Sketch` (DDSketch, 1 % relative error; what
`agentgate._core.AtomicSketch.take()` returns) or as the core's fixed histogram buckets over
`LATENCY_BOUNDS`. Bucket counts are spread log-uniformly inside their bucket when turned into a
sketch (the interpolation Prometheus' `histogram_quantile` does, in log space), so quantiles from
bucket feeds are only as good as the bucket bounds; sketch feeds keep the 1 % guarantee.

Feeds:
- `DataPlaneFeed` (`observe/dataplane_feed.py`): the data plane in this process, as
  `agentgate serve` runs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agentgate._core import LATENCY_BOUNDS, Sketch

__all__ = [
    "AgentState",
    "Deltas",
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
