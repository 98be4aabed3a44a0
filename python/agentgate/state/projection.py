"""Projections: read models rebuilt from the event log, fed by tailing it by position.

Tailing positions on PostgreSQL needs care: an identity value is taken at insert but becomes
visible at commit, so a reader can see position 12 while 11 is still in flight (and 11 may
never come: a rollback leaves a gap). Reading "everything after the last position I saw"
would skip 11 for good. `Tailer` keeps a high-water mark instead (Marten's approach): it hands
out events only up to the first gap, and passes a gap only after it has stayed open for
`gap_timeout` seconds (a rolled-back or pruned position, not a slow commit). SQLite has one
writer at a time, so its gaps are never in flight: `gap_timeout` is 0 there.

`AgentStateView` is the read model of every agent's current document
(`agent_state_view`): `rebuild()` drops it and replays the whole log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agentgate.state.agents import KIND, apply
from agentgate.store._base import dumps, loads
from agentgate.store.events import Event, EventStore

__all__ = ["AgentStateView", "Tailer"]


class Tailer:
    """Events of the whole log in position order, never past an open gap (see module doc)."""

    def __init__(
        self,
        events: EventStore,
        *,
        after: int = 0,
        gap_timeout: float | None = None,
        batch: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = events
        self.hwm = after
        self.gap_timeout = (
            gap_timeout if gap_timeout is not None else (0.0 if events.dialect == "sqlite" else 3.0)
        )
        self.batch = batch
        self._clock = clock
        self._gaps: dict[int, float] = {}  # first missing position -> when first seen

    async def poll(self) -> list[Event]:
        """The next events that are safe to process; advances the high-water mark."""
        rows = await self.events.read_all(self.hwm, self.batch)
        out: list[Event] = []
        now = self._clock()
        for e in rows:
            expected = self.hwm + 1
            if e.position != expected:
                seen = self._gaps.setdefault(expected, now)
                if now - seen < self.gap_timeout:
                    break  # maybe a transaction still committing: wait for it
                self._gaps.pop(expected, None)
            out.append(e)
            self.hwm = e.position
        self._gaps = {p: t for p, t in self._gaps.items() if p > self.hwm}
        return out


class AgentStateView:
    """`agent_state_view`: each agent's current document, kept from the log."""

    NAME = "agent_state_view"

    def __init__(self, events: EventStore, *, gap_timeout: float | None = None) -> None:
        self.events = events
        self._gap_timeout = gap_timeout
        self._tailer: Tailer | None = None

    async def catch_up(self) -> int:
        """Apply every event that is safe to apply now; returns how many were read."""
        if self._tailer is None:
            self._tailer = Tailer(
                self.events,
                after=await self.events.position(self.NAME),
                gap_timeout=self._gap_timeout,
            )
        n = 0
        while True:
            batch = await self._tailer.poll()
            if not batch:
                return n
            async with self.events.db.transaction() as tx:
                for e in batch:
                    if not e.stream.startswith(KIND + ":"):
                        continue
                    name = e.stream.split(":", 2)[2]
                    row = await tx.fetchrow(
                        "SELECT state, version FROM agent_state_view "
                        "WHERE tenant_id = ? AND name = ?",
                        e.tenant_id,
                        name,
                    )
                    if row is not None and int(row["version"]) >= e.version:
                        continue  # already applied (replays are idempotent)
                    state = apply(loads(row["state"]) if row else None, e)
                    await tx.execute(
                        "DELETE FROM agent_state_view WHERE tenant_id = ? AND name = ?",
                        e.tenant_id,
                        name,
                    )
                    await tx.execute(
                        "INSERT INTO agent_state_view (tenant_id, name, state, version, position)"
                        " VALUES (?, ?, ?, ?, ?)",
                        e.tenant_id,
                        name,
                        dumps(state),
                        e.version,
                        e.position,
                    )
                await self.events.save_position(self.NAME, self._tailer.hwm, tx)
            n += len(batch)

    async def rebuild(self) -> int:
        """Drop the view and replay the whole log into it."""
        async with self.events.db.transaction() as tx:
            await tx.execute("DELETE FROM agent_state_view")
            await self.events.save_position(self.NAME, 0, tx)
        self._tailer = None
        return await self.catch_up()

    async def get(self, tenant_id: str, name: str) -> dict[str, object] | None:
        """An agent's current document from the view (None: none or deleted)."""
        row = await self.events.db.fetchrow(
            "SELECT state FROM agent_state_view WHERE tenant_id = ? AND name = ?",
            tenant_id,
            name,
        )
        if row is None:
            return None
        doc = loads(row["state"])
        return doc if isinstance(doc, dict) else None
