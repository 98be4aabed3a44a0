"""The collector's feed from the data plane in this process.

`Gateway.flush` takes the core's counters every half second for Prometheus and pushes the same
delta here; the collector's `take` (every 10 s) gets everything pushed since its last call,
plus the agents' state at that moment. The core is read once per interval, by one reader.
"""

from __future__ import annotations

from collections.abc import Callable

from agentgate._core import AgentState as CoreAgentState
from agentgate._core import BreakerState, Sketch, StatsDelta, StatusClass
from agentgate.observe.feed import AgentState, Deltas, RouteDelta

__all__ = ["DataPlaneFeed"]


# the order of `RouteDelta.classes` (observe/feed.py): other, 1xx … 5xx
_ORDER = (
    StatusClass.Other,
    StatusClass.Informational,
    StatusClass.Success,
    StatusClass.Redirection,
    StatusClass.ClientError,
    StatusClass.ServerError,
)


class DataPlaneFeed:
    """A `StatsFeed` over deltas pushed by the gateway (`push`) and its agents' state."""

    def __init__(self, agents: Callable[[], list[CoreAgentState]]) -> None:
        self._agents = agents
        self._routes: dict[tuple[str, str], tuple[list[int], Sketch]] = {}
        self._upstream: dict[str, Sketch] = {}

    def push(self, d: StatsDelta) -> None:
        """Add one take of the core's counters."""
        for r in d.routes:
            sk = r.latency.sketch
            counts = [r.by_class[c] for c in _ORDER]
            prev = self._routes.get((r.agent, r.route))
            if prev is None:
                self._routes[(r.agent, r.route)] = (counts, sk)
            else:
                for i, n in enumerate(counts):
                    prev[0][i] += n
                prev[1].merge(sk)
        for a in d.agents:
            if not sum(a.upstream.buckets):
                continue
            sk = a.upstream.sketch
            prev_up = self._upstream.get(a.agent)
            if prev_up is None:
                self._upstream[a.agent] = sk
            else:
                prev_up.merge(sk)

    def take(self) -> Deltas:
        """Everything pushed since the previous call and the agents' state now."""
        out = Deltas()
        for (agent, route), (classes, sk) in self._routes.items():
            out.routes.append(RouteDelta(agent, route, classes, sk))
        out.upstream = self._upstream
        self._routes, self._upstream = {}, {}
        for a in self._agents():
            eps = a.endpoints
            out.agents[a.name] = AgentState(
                agent=a.name,
                endpoints=len(eps),
                healthy=sum(1 for e in eps if e.healthy and e.breaker != BreakerState.Open),
                breakers_open=sum(1 for e in eps if e.breaker == BreakerState.Open),
                in_flight=a.in_flight,
                queued=sum(a.queued.values()),
                health_checked=a.health_checked,
            )
        return out
