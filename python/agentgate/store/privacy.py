"""GDPR tables: installation keys, subject keys and links, subject requests, consent records,
the audit retention anchor. Subjects appear only as pseudonyms (`subject_ref`)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from agentgate.store._base import Clock, dumps, loads, need, new_id
from agentgate.store._base import opt_float as _f
from agentgate.store.db import Database, Row

__all__ = [
    "ConsentRecord",
    "PrivacyRepo",
    "PrivacyRequest",
]


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    """A data subject request."""

    id: str
    tenant_id: str
    subject_ref: str
    subject_sealed: str | None
    kind: str
    status: str
    note: str
    created_at: float
    deadline_at: float
    completed_at: float | None
    result: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """Consent given or withdrawn by a subject for a purpose."""

    id: str
    tenant_id: str
    subject_ref: str
    purpose: str
    granted: bool
    source: str
    time: float
    recorded_at: float


_RCOLS = (
    "id, tenant_id, subject_ref, subject_sealed, kind, status, note, created_at, deadline_at, "
    "completed_at, result"
)
_CCOLS = "id, tenant_id, subject_ref, purpose, granted, source, time, recorded_at"


def _req(r: Row) -> PrivacyRequest:
    return PrivacyRequest(
        id=r["id"],
        tenant_id=r["tenant_id"],
        subject_ref=r["subject_ref"],
        subject_sealed=r["subject_sealed"],
        kind=r["kind"],
        status=r["status"],
        note=r["note"],
        created_at=float(r["created_at"]),
        deadline_at=float(r["deadline_at"]),
        completed_at=_f(r["completed_at"]),
        result=loads(r["result"]),
    )


def _consent(r: Row) -> ConsentRecord:
    return ConsentRecord(
        id=r["id"],
        tenant_id=r["tenant_id"],
        subject_ref=r["subject_ref"],
        purpose=r["purpose"],
        granted=bool(r["granted"]),
        source=r["source"],
        time=float(r["time"]),
        recorded_at=float(r["recorded_at"]),
    )


class PrivacyRepo:
    """Every GDPR table (tenant ids are explicit arguments: the service scopes them)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # --- installation and subject keys --------------------------------------------------------

    async def security_key(self, name: str, make: Any) -> str:
        """The wrapped installation key `name`; `await make()` creates it on first use."""
        row = await self._db.fetchrow("SELECT wrapped_key FROM security_keys WHERE name = ?", name)
        if row is not None:
            return str(row["wrapped_key"])
        wrapped = await make()
        async with self._db.transaction() as tx:
            again = await tx.fetchrow("SELECT wrapped_key FROM security_keys WHERE name = ?", name)
            if again is not None:
                return str(again["wrapped_key"])
            await tx.execute(
                "INSERT INTO security_keys (name, wrapped_key, created_at) VALUES (?, ?, ?)",
                name,
                wrapped,
                self._clock(),
            )
        return str(wrapped)

    async def subject_key(self, tenant_id: str, ref: str) -> str | None:
        """The subject's wrapped data key, None once erased (or never created)."""
        row = await self._db.fetchrow(
            "SELECT wrapped_key FROM subject_keys WHERE tenant_id = ? AND subject_ref = ?",
            tenant_id,
            ref,
        )
        return None if row is None else str(row["wrapped_key"])

    async def add_subject_key(self, tenant_id: str, ref: str, wrapped: str) -> str:
        """Store a subject key unless one exists; returns the stored one."""
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT wrapped_key FROM subject_keys WHERE tenant_id = ? AND subject_ref = ?",
                tenant_id,
                ref,
            )
            if row is not None:
                return str(row["wrapped_key"])
            await tx.execute(
                "INSERT INTO subject_keys (tenant_id, subject_ref, wrapped_key, created_at) "
                "VALUES (?, ?, ?, ?)",
                tenant_id,
                ref,
                wrapped,
                self._clock(),
            )
        return wrapped

    async def shred(
        self, tenant_id: str, ref: str, kinds_to_delete: builtins.list[str]
    ) -> dict[str, int]:
        """Delete the subject key, its links, consents (and linked API keys for `api_key` in
        `kinds_to_delete`) in one transaction; returns counts per table."""
        counts: dict[str, int] = {}
        async with self._db.transaction() as tx:
            if "api_key" in kinds_to_delete:
                counts["api_keys"] = await tx.execute(
                    "DELETE FROM api_keys WHERE tenant_id = ? AND id IN (SELECT ref FROM "
                    "subject_links WHERE tenant_id = ? AND subject_ref = ? AND kind = 'api_key')",
                    tenant_id,
                    tenant_id,
                    ref,
                )
                await tx.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'keys_version'"
                )
            if "consent" in kinds_to_delete:
                counts["consents"] = await tx.execute(
                    "DELETE FROM consents WHERE tenant_id = ? AND subject_ref = ?", tenant_id, ref
                )
            counts["subject_links"] = await tx.execute(
                "DELETE FROM subject_links WHERE tenant_id = ? AND subject_ref = ?", tenant_id, ref
            )
            counts["subject_keys"] = await tx.execute(
                "DELETE FROM subject_keys WHERE tenant_id = ? AND subject_ref = ?", tenant_id, ref
            )
            await tx.execute(
                "UPDATE privacy_requests SET subject_sealed = NULL "
                "WHERE tenant_id = ? AND subject_ref = ?",
                tenant_id,
                ref,
            )
        return counts

    async def reassign_consents(self, tenant_id: str, ref: str, anonymous_ref: str) -> int:
        """Detach consent records from the subject (anonymisation keeps them, unlinked)."""
        return await self._db.execute(
            "UPDATE consents SET subject_ref = ? WHERE tenant_id = ? AND subject_ref = ?",
            anonymous_ref,
            tenant_id,
            ref,
        )

    # --- links --------------------------------------------------------------------------------

    async def link(self, tenant_id: str, ref: str, kind: str, target: str) -> None:
        """Attach a record of another module (`kind`, its id) to a subject (idempotent)."""
        exists = await self._db.fetchrow(
            "SELECT 1 AS x FROM subject_links WHERE tenant_id = ? AND subject_ref = ? "
            "AND kind = ? AND ref = ?",
            tenant_id,
            ref,
            kind,
            target,
        )
        if exists is None:
            await self._db.execute(
                "INSERT INTO subject_links (tenant_id, subject_ref, kind, ref, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                tenant_id,
                ref,
                kind,
                target,
                self._clock(),
            )

    async def links(self, tenant_id: str, ref: str) -> builtins.list[tuple[str, str]]:
        """(kind, id) of every record linked to the subject."""
        rows = await self._db.fetch(
            "SELECT kind, ref FROM subject_links WHERE tenant_id = ? AND subject_ref = ? "
            "ORDER BY kind, ref",
            tenant_id,
            ref,
        )
        return [(r["kind"], r["ref"]) for r in rows]

    # --- requests -----------------------------------------------------------------------------

    async def create_request(
        self,
        tenant_id: str,
        ref: str,
        subject_sealed: str,
        kind: str,
        note: str,
        deadline: float,
    ) -> PrivacyRequest:
        """A new request in status `received`."""
        rid, now = new_id(), self._clock()
        await self._db.execute(
            f"INSERT INTO privacy_requests ({_RCOLS}) "
            "VALUES (?, ?, ?, ?, ?, 'received', ?, ?, ?, NULL, NULL)",
            rid,
            tenant_id,
            ref,
            subject_sealed,
            kind,
            note,
            now,
            now + deadline,
        )
        return await self.get_request(tenant_id, rid)

    async def get_request(self, tenant_id: str, rid: str) -> PrivacyRequest:
        """One request of the tenant, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_RCOLS} FROM privacy_requests WHERE id = ? AND tenant_id = ?", rid, tenant_id
        )
        return _req(need(row, "privacy request"))

    async def list_requests(
        self, tenant_id: str | None, status: str | None = None, limit: int = 1000
    ) -> builtins.list[PrivacyRequest]:
        """Requests, newest first (tenant None: every tenant)."""
        sql, args = f"SELECT {_RCOLS} FROM privacy_requests WHERE 1 = 1", []
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            args.append(tenant_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        rows = await self._db.fetch(f"{sql} ORDER BY created_at DESC, id LIMIT ?", *args, limit)
        return [_req(r) for r in rows]

    async def finish_request(
        self, tenant_id: str, rid: str, status: str, result: dict[str, Any]
    ) -> PrivacyRequest:
        """Record the outcome."""
        await self._db.execute(
            "UPDATE privacy_requests SET status = ?, completed_at = ?, result = ? "
            "WHERE id = ? AND tenant_id = ?",
            status,
            self._clock(),
            dumps(result),
            rid,
            tenant_id,
        )
        return await self.get_request(tenant_id, rid)

    async def overdue(self, now: float) -> builtins.list[PrivacyRequest]:
        """Open requests past their deadline, across tenants."""
        rows = await self._db.fetch(
            f"SELECT {_RCOLS} FROM privacy_requests WHERE status IN ('received', 'failed') "
            "AND deadline_at < ? ORDER BY deadline_at",
            now,
        )
        return [_req(r) for r in rows]

    async def delete_requests_before(self, cutoff: float) -> int:
        """Delete finished requests completed before `cutoff` (retention)."""
        return await self._db.execute(
            "DELETE FROM privacy_requests WHERE status = 'completed' AND completed_at < ?", cutoff
        )

    # --- consent ------------------------------------------------------------------------------

    async def add_consent(
        self, tenant_id: str, ref: str, purpose: str, granted: bool, source: str, time: float
    ) -> ConsentRecord:
        """Record consent given or withdrawn."""
        cid = new_id()
        await self._db.execute(
            f"INSERT INTO consents ({_CCOLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            cid,
            tenant_id,
            ref,
            purpose,
            int(granted),
            source,
            time,
            self._clock(),
        )
        row = await self._db.fetchrow(f"SELECT {_CCOLS} FROM consents WHERE id = ?", cid)
        return _consent(need(row, "consent"))

    async def consents(
        self, tenant_id: str, ref: str | None = None, purpose: str | None = None
    ) -> builtins.list[ConsentRecord]:
        """Consent records, oldest first (of one subject / purpose when given)."""
        sql, args = f"SELECT {_CCOLS} FROM consents WHERE tenant_id = ?", [tenant_id]
        if ref is not None:
            sql += " AND subject_ref = ?"
            args.append(ref)
        if purpose is not None:
            sql += " AND purpose = ?"
            args.append(purpose)
        rows = await self._db.fetch(f"{sql} ORDER BY time, id", *args)
        return [_consent(r) for r in rows]

    # --- audit retention ----------------------------------------------------------------------

    async def drop_audit_before(self, cutoff: float) -> int:
        """Delete the oldest audit entries with time < cutoff (a prefix of the chain) and move
        the anchor to the last one removed; returns how many went."""
        async with self._db.transaction() as tx:
            first_kept = await tx.fetchrow(
                "SELECT MIN(seq) AS s FROM audit WHERE time >= ?", cutoff
            )
            bound_row = await tx.fetchrow("SELECT MAX(seq) AS s FROM audit WHERE time < ?", cutoff)
            if bound_row is None or bound_row["s"] is None:
                return 0
            bound = int(bound_row["s"])
            if first_kept is not None and first_kept["s"] is not None:
                # only a prefix may go: an old entry after a newer one stays
                bound = min(bound, int(first_kept["s"]) - 1)
            last = await tx.fetchrow("SELECT seq, hash FROM audit WHERE seq = ?", bound)
            if last is None:
                return 0
            n = await tx.execute("DELETE FROM audit WHERE seq <= ?", bound)
            await tx.execute("DELETE FROM audit_anchor WHERE id = 1")
            await tx.execute(
                "INSERT INTO audit_anchor (id, seq, hash, updated_at) VALUES (1, ?, ?, ?)",
                int(last["seq"]),
                last["hash"],
                self._clock(),
            )
        return n
