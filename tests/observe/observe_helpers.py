"""Helpers of the observability tests."""

from __future__ import annotations

from agentgate.observe.feed import AgentState, Deltas, RouteDelta


class ListFeed:
    """The data plane's side of the interface for alert tests: deltas handed in by the test."""

    def __init__(self) -> None:
        self.next = Deltas()

    def take(self) -> Deltas:
        out, self.next = self.next, Deltas()
        return out


def traffic(feed: ListFeed, agent: str, ok: int, errors: int, latency: float = 0.01) -> None:
    """Queue `ok` 2xx and `errors` 5xx answers of `agent` for the next flush."""
    from agentgate._core import Sketch

    sk = Sketch()
    sk.add(latency, ok + errors)
    feed.next.routes.append(RouteDelta(agent, "r", [0, 0, ok, 0, 0, errors], sk))


def agent_state(
    feed: ListFeed,
    agent: str,
    healthy: int = 1,
    endpoints: int = 1,
    queued: int = 0,
    breakers_open: int = 0,
) -> None:
    """Set the agent's current state for the next flush."""
    feed.next.agents[agent] = AgentState(agent, endpoints, healthy, breakers_open, 0, queued)
