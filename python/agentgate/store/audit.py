"""Audit trail storage: serialised appends in one global order, queries by time/actor/target.

The chain logic (what goes into a hash) belongs to security/: `append` takes a `seal` function
that receives the entry with `seq` and `prev_hash` filled in and returns its hash. Appends lock
the `audit_head` row (FOR UPDATE on PostgreSQL, the database write lock on SQLite), so entries
get consecutive `seq` numbers and each links to the one committed just before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agentgate.store._base import Clock, dumps, loads, need
from agentgate.store.db import Database, Row
from agentgate.store.models import AuditEntry

__all__ = ["GENESIS_HASH", "AuditRepo", "Seal", "SystemAuditRepo"]

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first entry."""

Seal = Callable[[AuditEntry], str]
"""Computes an entry's hash from the entry (its `hash` field is still empty)."""

_COLS = "seq, time, tenant_id, actor, action, target, outcome, decision, details, prev_hash, hash"
_SENTINEL: Any = object()


def _entry(r: Row) -> AuditEntry:
    return AuditEntry(
        seq=int(r["seq"]),
        time=float(r["time"]),
        tenant_id=r["tenant_id"],
        actor=r["actor"],
        action=r["action"],
        target=r["target"],
        outcome=r["outcome"],
        decision=loads(r["decision"]),
        details=loads(r["details"]),
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )


class _Audit:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def _append(
        self,
        tenant_id: str | None,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        seal: Seal,
        decision: dict[str, Any] | None,
        details: dict[str, Any] | None,
        time: float | None,
    ) -> AuditEntry:
        lock = " FOR UPDATE" if self._db.dialect == "postgresql" else ""
        async with self._db.transaction() as tx:
            head = need(
                await tx.fetchrow(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}"),
                "audit head",
            )
            entry = AuditEntry(
                seq=int(head["seq"]) + 1,
                time=self._clock() if time is None else time,
                tenant_id=tenant_id,
                actor=actor,
                action=action,
                target=target,
                outcome=outcome,
                decision=decision,
                details=details or {},
                prev_hash=head["hash"],
                hash="",
            )
            entry = dataclasses.replace(entry, hash=seal(entry))
            await tx.execute(
                f"INSERT INTO audit ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                entry.seq,
                entry.time,
                entry.tenant_id,
                entry.actor,
                entry.action,
                entry.target,
                entry.outcome,
                None if decision is None else dumps(decision),
                dumps(entry.details),
                entry.prev_hash,
                entry.hash,
            )
            await tx.execute(
                "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", entry.seq, entry.hash
            )
        return entry

    async def _query(
        self,
        tenant_id: Any,
        *,
        since: float | None,
        until: float | None,
        actor: str | None,
        target: str | None,
        action: str | None,
        after_seq: int,
        limit: int,
    ) -> list[AuditEntry]:
        sql = f"SELECT {_COLS} FROM audit WHERE seq > ?"
        args: list[Any] = [after_seq]
        if tenant_id is not _SENTINEL:
            if tenant_id is None:
                sql += " AND tenant_id IS NULL"
            else:
                sql += " AND tenant_id = ?"
                args.append(tenant_id)
        for cond, val in (
            ("time >= ?", since),
            ("time < ?", until),
            ("actor = ?", actor),
            ("target = ?", target),
            ("action = ?", action),
        ):
            if val is not None:
                sql += f" AND {cond}"
                args.append(val)
        rows = await self._db.fetch(f"{sql} ORDER BY seq LIMIT ?", *args, limit)
        return [_entry(r) for r in rows]


class AuditRepo(_Audit):
    """One tenant's view of the audit trail: appends are stamped with the tenant, queries see
    only its entries."""

    def __init__(self, db: Database, tenant_id: str, clock: Clock) -> None:
        super().__init__(db, clock)
        self._tenant = tenant_id

    async def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        seal: Seal,
        decision: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        time: float | None = None,
    ) -> AuditEntry:
        """Append an entry for this tenant; returns it with seq, prev_hash and hash."""
        return await self._append(
            self._tenant,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            seal=seal,
            decision=decision,
            details=details,
            time=time,
        )

    async def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """This tenant's entries in seq order; page with `after_seq` = last seq seen."""
        return await self._query(
            self._tenant,
            since=since,
            until=until,
            actor=actor,
            target=target,
            action=action,
            after_seq=after_seq,
            limit=limit,
        )


class SystemAuditRepo(_Audit):
    """The whole trail (all tenants and system entries): for verification and export."""

    async def append(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        seal: Seal,
        tenant_id: str | None = None,
        decision: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        time: float | None = None,
    ) -> AuditEntry:
        """Append an entry (tenant None = system action such as creating a tenant)."""
        return await self._append(
            tenant_id,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            seal=seal,
            decision=decision,
            details=details,
            time=time,
        )

    async def query(
        self,
        *,
        tenant_id: Any = _SENTINEL,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Entries in seq order across tenants (pass tenant_id to filter, None = system only)."""
        return await self._query(
            tenant_id,
            since=since,
            until=until,
            actor=actor,
            target=target,
            action=action,
            after_seq=after_seq,
            limit=limit,
        )

    async def anchor(self) -> tuple[int, str]:
        """(seq, hash) the chain continues from: (0, GENESIS_HASH) unless retention removed
        the oldest entries (security.retention records the last removed one)."""
        row = await self._db.fetchrow("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return (0, GENESIS_HASH) if row is None else (int(row["seq"]), row["hash"])

    async def head(self) -> tuple[int, str]:
        """(last seq, its hash); (0, GENESIS_HASH) when empty."""
        row = need(await self._db.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1"), "head")
        return int(row["seq"]), row["hash"]
