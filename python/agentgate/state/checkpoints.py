"""Replica checkpoints on the event log: the runtime appends, a restarted replica loads.

    cps = ReplicaCheckpoints(store.events)
    await cps.append(tenant_id, "summarizer", "r-0", {"cursor": 41, "memory": "…"})
    latest = await cps.latest(tenant_id, "summarizer", "r-0")      # an Event, or None
    latest.data                                                    # {"cursor": 41, …}

One stream per replica (`replica:<tenant id>:<agent>:<replica>`), events of class `checkpoint`
(their own retention). `expected_version` guards against two processes checkpointing one
replica: the loser gets `VersionConflict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentgate.store.events import Event, EventStore, NewEvent

__all__ = ["CHECKPOINT", "ReplicaCheckpoints"]

CHECKPOINT = "replica.checkpoint"
KIND = "replica"


def stream_of(tenant_id: str, agent: str, replica: str) -> str:
    """The stream of one replica's checkpoints."""
    return f"{KIND}:{tenant_id}:{agent}:{replica}"


class ReplicaCheckpoints:
    """Append and load replica checkpoints (see the module docstring)."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    async def append(
        self,
        tenant_id: str,
        agent: str,
        replica: str,
        data: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> Event:
        """Store one checkpoint; returns it (its `version` is the checkpoint's number)."""
        [e] = await self.events.append(
            tenant_id,
            stream_of(tenant_id, agent, replica),
            [NewEvent(CHECKPOINT, data, "checkpoint")],
            kind=KIND,
            name=f"{agent}/{replica}",
            expected_version=expected_version,
        )
        return e

    async def latest(
        self, tenant_id: str, agent: str, replica: str, *, at: float | None = None
    ) -> Event | None:
        """The newest checkpoint (as of `at` when given), or None."""
        e = await self.events.last(stream_of(tenant_id, agent, replica), at)
        return e if e is not None and e.tenant_id == tenant_id else None
