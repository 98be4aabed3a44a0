"""The runtime's rows: replicas (the agents' `unix:` endpoints), failure status, checkpoints."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from agentgate.errors import Conflict
from agentgate.store._base import Clock, bump_counter, dumps, loads
from agentgate.store.db import Database, Row

__all__ = ["Checkpoint", "ReplicaRow", "RuntimeRepo", "RuntimeStatus"]

_RE = "id, agent_id, tenant_id, host, endpoint, state, pid, restarts, updated_at"


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """A replica as stored: `endpoint` is `unix:/path` (local) or `http://host:port` (Ray)."""

    id: str
    agent_id: str
    tenant_id: str
    host: str
    endpoint: str
    state: str
    pid: int | None
    restarts: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """Why an agent is not running (`failed`, `crash_loop`), with the tail of stderr."""

    agent_id: str
    state: str
    reason: str
    stderr: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One agent's checkpoint: a JSON document and its version (1, 2, …)."""

    version: int
    data: Any
    updated_at: float


def _replica(r: Row) -> ReplicaRow:
    return ReplicaRow(
        id=r["id"],
        agent_id=r["agent_id"],
        tenant_id=r["tenant_id"],
        host=r["host"],
        endpoint=r["endpoint"],
        state=r["state"],
        pid=None if r["pid"] is None else int(r["pid"]),
        restarts=int(r["restarts"]),
        updated_at=float(r["updated_at"]),
    )


class RuntimeRepo:
    """Cross-tenant runtime rows (the supervisor is one per host and serves every tenant);
    checkpoint calls take the tenant id explicitly and bind it in every statement."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # ---- replicas ----
    async def put_replica(
        self,
        replica_id: str,
        *,
        agent_id: str,
        tenant_id: str,
        host: str,
        endpoint: str,
        state: str,
        pid: int | None,
        restarts: int,
    ) -> None:
        """Insert or update a replica; bumps agents_version (the ready set may change)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO agent_replicas ({_RE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, "
                "tenant_id = excluded.tenant_id, host = excluded.host, "
                "endpoint = excluded.endpoint, state = excluded.state, pid = excluded.pid, "
                "restarts = excluded.restarts, updated_at = excluded.updated_at",
                replica_id,
                agent_id,
                tenant_id,
                host,
                endpoint,
                state,
                pid,
                restarts,
                self._clock(),
            )
            await bump_counter(tx, "agents_version")

    async def delete_replica(self, replica_id: str) -> None:
        """Forget a replica (no error if absent); bumps agents_version."""
        async with self._db.transaction() as tx:
            n = await tx.execute("DELETE FROM agent_replicas WHERE id = ?", replica_id)
            if n:
                await bump_counter(tx, "agents_version")

    async def delete_host(self, host: str) -> int:
        """Forget every replica of a host (a supervisor starting afresh); bumps agents_version."""
        async with self._db.transaction() as tx:
            n = await tx.execute("DELETE FROM agent_replicas WHERE host = ?", host)
            if n:
                await bump_counter(tx, "agents_version")
        return n

    async def replicas(self, agent_id: str) -> builtins.list[ReplicaRow]:
        """An agent's replicas on every host."""
        rows = await self._db.fetch(
            f"SELECT {_RE} FROM agent_replicas WHERE agent_id = ? ORDER BY id", agent_id
        )
        return [_replica(r) for r in rows]

    async def ready_endpoints(self) -> dict[str, builtins.list[str]]:
        """agent id → endpoints of its ready replicas (what the gateway balances over)."""
        rows = await self._db.fetch(
            "SELECT agent_id, endpoint FROM agent_replicas WHERE state = 'ready' "
            "ORDER BY agent_id, endpoint"
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["agent_id"], []).append(r["endpoint"])
        return out

    # ---- status ----
    async def set_status(
        self, agent_id: str, tenant_id: str, state: str, reason: str = "", stderr: str = ""
    ) -> None:
        """Record why an agent is failed or crash-looping."""
        await self._db.execute(
            "INSERT INTO agent_runtime_status (agent_id, tenant_id, state, reason, stderr, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
            "state = excluded.state, reason = excluded.reason, stderr = excluded.stderr, "
            "updated_at = excluded.updated_at",
            agent_id,
            tenant_id,
            state,
            reason,
            stderr,
            self._clock(),
        )

    async def clear_status(self, agent_id: str) -> None:
        """The agent runs again: forget the failure."""
        await self._db.execute("DELETE FROM agent_runtime_status WHERE agent_id = ?", agent_id)

    async def status(self, agent_id: str) -> RuntimeStatus | None:
        """The recorded failure of an agent, if any."""
        r = await self._db.fetchrow(
            "SELECT agent_id, state, reason, stderr, updated_at FROM agent_runtime_status "
            "WHERE agent_id = ?",
            agent_id,
        )
        if r is None:
            return None
        return RuntimeStatus(
            r["agent_id"], r["state"], r["reason"], r["stderr"], float(r["updated_at"])
        )

    async def forget_agent(self, agent_id: str) -> None:
        """Drop an agent's replicas, status and checkpoint (its final delete)."""
        async with self._db.transaction() as tx:
            n = await tx.execute("DELETE FROM agent_replicas WHERE agent_id = ?", agent_id)
            await tx.execute("DELETE FROM agent_runtime_status WHERE agent_id = ?", agent_id)
            await tx.execute("DELETE FROM agent_checkpoints WHERE agent_id = ?", agent_id)
            if n:
                await bump_counter(tx, "agents_version")

    # ---- checkpoints ----
    async def load_checkpoint(self, tenant_id: str, agent_id: str) -> Checkpoint | None:
        """The agent's checkpoint, or None before the first save."""
        r = await self._db.fetchrow(
            "SELECT version, data, updated_at FROM agent_checkpoints "
            "WHERE tenant_id = ? AND agent_id = ?",
            tenant_id,
            agent_id,
        )
        if r is None:
            return None
        return Checkpoint(int(r["version"]), loads(r["data"]), float(r["updated_at"]))

    async def save_checkpoint(
        self, tenant_id: str, agent_id: str, data: Any, expected_version: int | None
    ) -> Checkpoint:
        """Save `data` as the next version if the stored one is `expected_version` (0: none
        stored yet; None: whatever is stored). Conflict names the stored version otherwise.

        The write itself is conditional (INSERT on the key, or UPDATE … WHERE version = ?), so
        two writers racing on PostgreSQL cannot both win."""
        text = dumps(data)
        for _ in range(8):
            expected = expected_version
            if expected is None:
                cur = await self.load_checkpoint(tenant_id, agent_id)
                expected = 0 if cur is None else cur.version
            now = self._clock()
            if expected == 0:
                try:
                    await self._db.execute(
                        "INSERT INTO agent_checkpoints (tenant_id, agent_id, version, data, "
                        "updated_at) VALUES (?, ?, 1, ?, ?)",
                        tenant_id,
                        agent_id,
                        text,
                        now,
                    )
                    return Checkpoint(1, data, now)
                except Conflict:
                    pass
            else:
                n = await self._db.execute(
                    "UPDATE agent_checkpoints SET version = version + 1, data = ?, "
                    "updated_at = ? WHERE tenant_id = ? AND agent_id = ? AND version = ?",
                    text,
                    now,
                    tenant_id,
                    agent_id,
                    expected,
                )
                if n:
                    return Checkpoint(expected + 1, data, now)
            if expected_version is not None:
                cur = await self.load_checkpoint(tenant_id, agent_id)
                have = 0 if cur is None else cur.version
                raise Conflict(f"checkpoint is at version {have}, not {expected_version}")
        raise Conflict("checkpoint changed under every retry")
