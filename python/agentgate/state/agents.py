"""Agent lifecycle as an event-sourced aggregate: one stream per agent name, point-in-time state.

Stream `agent:<tenant id>:<name>` holds the name's whole life: `agent.created`,
`agent.updated` (each carrying the full agent document), `agent.draining`, `agent.deleted`,
and `agent.restored` (the document `state restore` wrote back, or null for "did not exist").
Folding them gives the agent as it stood: the state as of T folds the newest snapshot taken
at or before T plus the events after it up to T. A snapshot is stored every `snapshot_every`
events, so a point-in-time read replays fewer than that many events.

Retention is per event class (`lifecycle` here; `checkpoint` for replica checkpoints), one year
by default: pruning first stores a snapshot at the newest expired event, so later states stay
exact; a state asked for before that point is refused rather than guessed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentgate.errors import Invalid, NotFound
from agentgate.store.events import Event, EventStore, NewEvent, Snapshot

__all__ = [
    "DEFAULT_RETENTION",
    "AgentHistory",
    "AgentState",
    "agent_document",
    "fold",
    "retention_loop",
]

log = logging.getLogger("agentgate.state")
YEAR = 365 * 86400.0
DEFAULT_RETENTION: Mapping[str, float] = {"lifecycle": YEAR, "checkpoint": YEAR}
KIND = "agent"

CREATED, UPDATED, DRAINING, DELETED, RESTORED = (
    "agent.created",
    "agent.updated",
    "agent.draining",
    "agent.deleted",
    "agent.restored",
)


def apply(state: dict[str, Any] | None, e: Event) -> dict[str, Any] | None:
    """One step of the fold (unknown event types leave the state as it is)."""
    if e.type in (CREATED, UPDATED):
        return dict(e.data["agent"])
    if e.type == RESTORED:
        doc = e.data.get("agent")
        return None if doc is None else dict(doc)
    if e.type == DRAINING and state is not None:
        return {**state, "state": "draining"}
    if e.type == DELETED:
        return None
    return state


def fold(state: dict[str, Any] | None, events: Iterable[Event]) -> dict[str, Any] | None:
    """The state after `events`, starting from `state`."""
    for e in events:
        state = apply(state, e)
    return state


def agent_document(agent: Any) -> dict[str, Any]:
    """The stored form of an agent row (`agentgate.store.Agent`)."""
    return {
        "id": agent.id,
        "name": agent.name,
        "template_ref": agent.template_ref,
        "template_digest": agent.template_digest,
        "params": dict(agent.params),
        "replicas": agent.replicas,
        "routes": list(agent.routes),
        "state": agent.state,
        "revision": agent.revision,
    }


@dataclass(frozen=True, slots=True)
class AgentState:
    """An agent as of a time: its document (None: no agent of that name then), the stream
    version and the time of the last event folded in."""

    name: str
    agent: dict[str, Any] | None
    version: int
    at: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "agent": self.agent, "version": self.version, "at": self.at}


def stream_of(tenant_id: str, name: str) -> str:
    """The stream of one agent name."""
    return f"{KIND}:{tenant_id}:{name}"


class AgentHistory:
    """Records agent lifecycle events and answers "what was it at T" (see the module doc)."""

    def __init__(self, events: EventStore, *, snapshot_every: int = 100) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.events = events
        self.snapshot_every = snapshot_every

    async def record(
        self,
        tenant_id: str,
        name: str,
        type: str,
        data: Mapping[str, Any],
        *,
        expected_version: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Event:
        """Append one lifecycle event (snapshotting when the version is a multiple of N)."""
        stream = stream_of(tenant_id, name)
        [e] = await self.events.append(
            tenant_id,
            stream,
            [NewEvent(type, data, "lifecycle", meta or {})],
            kind=KIND,
            name=name,
            expected_version=expected_version,
        )
        if e.version % self.snapshot_every == 0:
            await self._snapshot(stream, e.version)
        return e

    async def _snapshot(self, stream: str, version: int) -> Snapshot:
        base = await self.events.snapshot_before(stream, max_version=version)
        start = base.version if base else 0
        events = await self.events.read(stream, after_version=start, max_version=version)
        state = fold(base.state if base else None, events)
        at = events[-1].at if events else (base.at if base else 0.0)
        snap = Snapshot(stream, version, at, state)
        if base is None or base.version != version:
            await self.events.put_snapshot(snap)
        return snap

    async def state_at(self, tenant_id: str, name: str, at: float | None = None) -> AgentState:
        """The agent `name` as of `at` (now when None); NotFound when the name has no history,
        Invalid when `at` lies before what retention kept."""
        stream = stream_of(tenant_id, name)
        info = await self.events.info(stream)
        if info is None or info.tenant_id != tenant_id:
            raise NotFound(f"agent {name} has no recorded history")
        if at is not None and at < info.pruned_to:
            raise Invalid(
                f"history of agent {name} before {info.pruned_to} was pruned by retention",
                "$.at",
            )
        snap = await self.events.snapshot_before(stream, at)
        events = await self.events.read(stream, after_version=snap.version if snap else 0, until=at)
        state = fold(snap.state if snap else None, events)
        version = events[-1].version if events else (snap.version if snap else 0)
        last_at = events[-1].at if events else (snap.at if snap else None)
        return AgentState(name, state, version, last_at)

    async def names(self, tenant_id: str) -> list[str]:
        """Every agent name with history in the tenant."""
        return [s.name for s in await self.events.streams(tenant_id, KIND)]

    async def all_at(self, tenant_id: str, at: float | None = None) -> list[AgentState]:
        """Every agent of the tenant that existed as of `at`, by name."""
        out = []
        for name in await self.names(tenant_id):
            try:
                st = await self.state_at(tenant_id, name, at)
            except Invalid:
                continue  # pruned before `at`: nothing exact to say about it
            if st.agent is not None:
                out.append(st)
        return out

    async def prune(self, now: float, retention: Mapping[str, float] | None = None) -> int:
        """Apply retention per event class (seconds; DEFAULT_RETENTION for missing classes);
        returns how many events went."""
        rules = {**DEFAULT_RETENTION, **(retention or {})}
        gone = 0
        for cls, keep in rules.items():
            for stream, version in await self.events.expired(cls, now - keep):
                snap = await self._snapshot(stream, version)
                gone += await self.events.prune(stream, cls, version, snap.at)
        return gone


async def retention_loop(
    history: AgentHistory,
    retention: Mapping[str, float] | None = None,
    *,
    every: float = 3600.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Apply retention now and then every `every` seconds, until cancelled."""
    while True:
        try:
            n = await history.prune(clock(), retention)
            if n:
                log.info("state retention pruned %d events", n)
        except Exception:
            log.exception("state retention failed; trying again in %.0f s", every)
        await asyncio.sleep(every)
