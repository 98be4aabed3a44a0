"""`state restore`: put agents back as they were at a time, through new events.

For each agent with history, the document as of T is compared with the current one; where they
differ, the agents table is set to the old document (created again, updated, or drained when
the agent did not exist at T) and an `agent.restored` event records it. Nothing is deleted from
the log: the restore is itself history, and can be undone by restoring to a later time.
"""

from __future__ import annotations

from typing import Any

from agentgate.errors import NotFound
from agentgate.state.agents import RESTORED, AgentHistory, AgentState
from agentgate.store import Store

__all__ = ["restore_agents"]


async def restore_agents(
    store: Store,
    history: AgentHistory,
    tenant_id: str,
    at: float,
    name: str | None = None,
    *,
    actor: str = "system",
) -> list[AgentState]:
    """Restore one agent (`name`) or all agents of the tenant to their state as of `at`;
    returns the states written back (agents already in that state are left alone)."""
    scope = store.scoped(tenant_id)
    names = [name] if name is not None else await history.names(tenant_id)
    written = []
    for n in names:
        then = await history.state_at(tenant_id, n, at)
        now = await history.state_at(tenant_id, n)
        if _same(then.agent, now.agent):
            continue
        await _apply(scope, n, then.agent)
        await history.record(
            tenant_id,
            n,
            RESTORED,
            {"agent": then.agent, "as_of": at},
            expected_version=now.version,
            meta={"actor": actor},
        )
        written.append(then)
    return written


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("template_ref", "template_digest", "params", "replicas", "routes", "state")
    if a is None or b is None:
        return a is b
    return all(a.get(k) == b.get(k) for k in keys)


async def _apply(scope: Any, name: str, doc: dict[str, Any] | None) -> None:
    try:
        current = await scope.agents.get(name)
    except NotFound:
        current = None
    if doc is None:
        if current is not None and current.state != "draining":
            await scope.agents.update(name, state="draining")  # the factory's reaper deletes it
        return
    fields = {
        "template_ref": doc["template_ref"],
        "template_digest": doc["template_digest"],
        "params": dict(doc["params"]),
        "replicas": int(doc["replicas"]),
        "routes": list(doc["routes"]),
    }
    if current is None:
        await scope.agents.create(name, state=doc.get("state", "active"), **fields)
    else:
        await scope.agents.update(name, state=doc.get("state", "active"), **fields)
