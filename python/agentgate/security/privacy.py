"""GDPR: data subject requests (access/export, erasure, anonymisation) with a 30-day deadline,
consent records, links from other modules' records to a subject, and the overdue condition.

What is held about a subject, and where:
- audit entries: personal fields are `SubjectVault.protect`ed (encrypted under the subject's
  key); erasure destroys the key, the entries and the chain stay intact and verifiable;
- consent records and subject requests: by pseudonym only;
- API keys and agents linked to the subject (`link(tenant, subject, "api_key", key_id)`);
- anything another module holds (agent state and checkpoints, metric labels, alert history):
  a `SubjectSource` it registers with `register`, called for export and erasure.

On SQLite, erasure runs with `PRAGMA secure_delete` and truncates the WAL afterwards, so the
erased bytes are gone from the database files. PostgreSQL keeps dead tuples until VACUUM
(erasure runs a plain VACUUM on the touched tables; `VACUUM FULL` rewrites the files). Backups
keep erased data until they expire under the backup retention.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from agentgate.errors import Conflict, Invalid
from agentgate.security.audit import seal as audit_seal
from agentgate.security.keys import Kek
from agentgate.security.subjects import ERASED, SubjectVault
from agentgate.store import Seal, Store
from agentgate.store.privacy import ConsentRecord, PrivacyRepo, PrivacyRequest

__all__ = ["KINDS", "PrivacyService", "SubjectSource", "overdue_requests"]

DAY = 86400.0
KINDS = ("access", "erasure", "anonymisation")


class SubjectSource(Protocol):
    """Personal data another module holds: exported and erased by pseudonym."""

    name: str

    async def export(self, tenant_id: str, subject_ref: str) -> Any:
        """Everything held about the subject (JSON-ready)."""
        ...

    async def erase(self, tenant_id: str, subject_ref: str, *, anonymise: bool) -> int:
        """Delete (or anonymise) it; returns how many records changed."""
        ...


async def overdue_requests(store: Store, now: float | None = None) -> list[PrivacyRequest]:
    """Open subject requests past their deadline (the alert condition; see README)."""
    return await PrivacyRepo(store.db, store.clock).overdue(store.clock() if now is None else now)


class PrivacyService:
    """Subject requests, consent and erasure on one store."""

    def __init__(
        self,
        store: Store,
        kek: Kek,
        *,
        deadline: float = 30 * DAY,
        seal: Seal = audit_seal,
        sources: Sequence[SubjectSource] = (),
    ) -> None:
        self.store = store
        self.vault = SubjectVault(store, kek)
        self.repo = PrivacyRepo(store.db, store.clock)
        self.deadline = deadline
        self.seal = seal
        self.sources: list[SubjectSource] = list(sources)

    def register(self, source: SubjectSource) -> None:
        """Add another module's personal data to exports and erasures."""
        self.sources.append(source)

    async def _audit(
        self, tenant_id: str, actor: str, action: str, target: str, details: dict[str, Any]
    ) -> None:
        await self.store.system.audit.append(
            actor=actor,
            action=action,
            target=target,
            outcome="ok",
            seal=self.seal,
            tenant_id=tenant_id,
            details=details,
        )

    async def audit_personal(
        self,
        tenant_id: str,
        subject: str,
        *,
        actor: str,
        action: str,
        target: str,
        personal: dict[str, Any],
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit entry whose personal fields are encrypted under the subject's key."""
        d = dict(details or {})
        d["personal"] = await self.vault.protect(tenant_id, subject, personal)
        await self._audit(tenant_id, actor, action, target, d)

    async def link(self, tenant_id: str, subject: str, kind: str, ref: str) -> None:
        """Record that `kind` record `ref` (e.g. an API key id) belongs to the subject."""
        await self.repo.link(tenant_id, await self.vault.ref(tenant_id, subject), kind, ref)

    # --- requests -----------------------------------------------------------------------------

    async def create_request(
        self, tenant_id: str, subject: str, kind: str, *, note: str = "", actor: str
    ) -> PrivacyRequest:
        """A new request (status `received`, deadline now + 30 days); audited."""
        if kind not in KINDS:
            raise Invalid(f"kind must be one of {list(KINDS)}", "$.kind")
        ref = await self.vault.ref(tenant_id, subject)
        sealed = orjson.dumps(await self.vault.protect(tenant_id, subject, subject)).decode()
        req = await self.repo.create_request(tenant_id, ref, sealed, kind, note, self.deadline)
        await self._audit(
            tenant_id,
            actor,
            f"privacy.{kind}.request",
            f"privacy_request:{req.id}",
            {"subject_ref": ref, "deadline_at": req.deadline_at},
        )
        return req

    async def _subject_of(self, req: PrivacyRequest) -> str:
        if req.subject_sealed is None:
            raise Conflict("the subject of this request has been erased")
        subject = await self.vault.reveal(req.tenant_id, orjson.loads(req.subject_sealed))
        if subject == ERASED:
            raise Conflict("the subject of this request has been erased")
        return str(subject)

    async def process(self, tenant_id: str, rid: str, *, actor: str) -> PrivacyRequest:
        """Carry out a request now; completed requests are not run twice (Conflict)."""
        req = await self.repo.get_request(tenant_id, rid)
        if req.status == "completed":
            raise Conflict(f"request {rid} is already completed")
        subject = await self._subject_of(req)
        if req.kind == "access":
            bundle = await self.export(tenant_id, subject)
            result: dict[str, Any] = {
                "records": {k: len(v) for k, v in bundle["data"].items() if isinstance(v, list)}
            }
        else:
            result = {
                "deleted": await self.erase(tenant_id, subject, anonymise=req.kind != "erasure")
            }
        done = await self.repo.finish_request(tenant_id, rid, "completed", result)
        await self._audit(
            tenant_id,
            actor,
            f"privacy.{req.kind}.complete",
            f"privacy_request:{rid}",
            {"subject_ref": req.subject_ref, **result},
        )
        return done

    async def export_request(self, tenant_id: str, rid: str) -> dict[str, Any]:
        """The export bundle of an access request's subject."""
        req = await self.repo.get_request(tenant_id, rid)
        if req.kind != "access":
            raise Conflict("only access requests have an export")
        return await self.export(tenant_id, await self._subject_of(req))

    async def get(self, tenant_id: str, rid: str) -> PrivacyRequest:
        """One request."""
        return await self.repo.get_request(tenant_id, rid)

    async def list(
        self, tenant_id: str, status: str | None = None
    ) -> builtins.list[PrivacyRequest]:
        """The tenant's requests, newest first."""
        return await self.repo.list_requests(tenant_id, status)

    # --- export and erasure -------------------------------------------------------------------

    async def export(self, tenant_id: str, subject: str) -> dict[str, Any]:
        """A JSON bundle of everything held about the subject in this tenant."""
        ref = await self.vault.ref(tenant_id, subject)
        db = self.store.db
        audit_rows = await db.fetch(
            "SELECT seq, time, actor, action, target, outcome, details FROM audit "
            "WHERE tenant_id = ? AND details LIKE ? ORDER BY seq",
            tenant_id,
            f"%{ref}%",
        )
        audit = [
            {**r, "details": await self.vault.reveal_all(tenant_id, orjson.loads(r["details"]))}
            for r in audit_rows
        ]
        links = await self.repo.links(tenant_id, ref)
        key_ids = [r for k, r in links if k == "api_key"]
        agent_ids = [r for k, r in links if k == "agent"]
        keys = []
        for kid in key_ids:
            row = await db.fetchrow(
                "SELECT id, name, prefix, roles, created_at, expires_at, revoked_at FROM api_keys "
                "WHERE tenant_id = ? AND id = ?",
                tenant_id,
                kid,
            )
            if row is not None:
                keys.append({**row, "roles": orjson.loads(row["roles"])})
        agents = []
        for aid in agent_ids:
            row = await db.fetchrow(
                "SELECT id, name, template_ref, params, state, created_at FROM agents "
                "WHERE tenant_id = ? AND id = ?",
                tenant_id,
                aid,
            )
            if row is not None:
                agents.append({**row, "params": orjson.loads(row["params"])})
        consents = [
            {"purpose": c.purpose, "granted": c.granted, "source": c.source, "time": c.time}
            for c in await self.repo.consents(tenant_id, ref)
        ]
        requests = [
            {"id": r.id, "kind": r.kind, "status": r.status, "created_at": r.created_at}
            for r in await self.repo.list_requests(tenant_id)
            if r.subject_ref == ref
        ]
        data: dict[str, Any] = {
            "audit": audit,
            "api_keys": keys,
            "agents": agents,
            "consents": consents,
            "privacy_requests": requests,
        }
        for src in self.sources:
            data[src.name] = await src.export(tenant_id, ref)
        return {
            "subject": subject,
            "subject_ref": ref,
            "tenant_id": tenant_id,
            "generated_at": self.store.clock(),
            "sources": sorted(data),
            "data": data,
        }

    async def erase(
        self, tenant_id: str, subject: str, *, anonymise: bool = False
    ) -> dict[str, int]:
        """Crypto-shred the subject's key and delete (erasure) or detach (anonymisation) the
        rest; returns counts per kind of record."""
        ref = await self.vault.ref(tenant_id, subject)
        db = self.store.db
        counts: dict[str, int] = {}
        for src in self.sources:
            counts[src.name] = await src.erase(tenant_id, ref, anonymise=anonymise)
        if anonymise:
            counts["consents_detached"] = await self.repo.reassign_consents(
                tenant_id, ref, "anon-" + os.urandom(8).hex()
            )
        sqlite = db.dialect == "sqlite"
        if sqlite:
            await db.execute("PRAGMA secure_delete = ON")
        try:
            kinds = [] if anonymise else ["api_key", "consent"]
            counts.update(await self.repo.shred(tenant_id, ref, kinds))
        finally:
            if sqlite:
                await db.execute("PRAGMA secure_delete = OFF")
        if sqlite:
            # the WAL still holds the deleted rows' old pages until it is checkpointed away
            await db.fetch("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            for table in ("subject_keys", "subject_links", "consents", "api_keys"):
                await db.execute(f"VACUUM {table}")
        return counts

    # --- consent ------------------------------------------------------------------------------

    async def record_consent(
        self,
        tenant_id: str,
        subject: str,
        purpose: str,
        granted: bool,
        source: str,
        time: float | None = None,
    ) -> ConsentRecord:
        """Consent given or withdrawn (the latest record per purpose is what holds)."""
        ref = await self.vault.ref(tenant_id, subject)
        t = self.store.clock() if time is None else time
        return await self.repo.add_consent(tenant_id, ref, purpose, granted, source, t)

    async def consents(
        self, tenant_id: str, subject: str | None = None, purpose: str | None = None
    ) -> builtins.list[ConsentRecord]:
        """Consent records of the tenant (of one subject / purpose)."""
        ref = None if subject is None else await self.vault.ref(tenant_id, subject)
        return await self.repo.consents(tenant_id, ref, purpose)

    async def has_consent(self, tenant_id: str, subject: str, purpose: str) -> bool:
        """Whether the subject's latest record for `purpose` grants it."""
        recs = await self.consents(tenant_id, subject, purpose)
        return bool(recs) and recs[-1].granted
