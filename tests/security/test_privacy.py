"""GDPR on both backends: requests with deadlines, export bundle, crypto-shredding that keeps
the audit chain verifiable while the erased bytes leave the database file, consent, retention."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_secrets import raw_database

from agentgate.errors import Conflict, Invalid
from agentgate.security.audit import verify_store
from agentgate.security.keys import LocalKek
from agentgate.security.privacy import PrivacyService, overdue_requests
from agentgate.security.retention import RetentionJob
from agentgate.security.subjects import ERASED
from agentgate.store import Store
from agentgate.tenancy import create_key, create_tenant

DAY = 86400.0
ALICE = "alice@example.com"


class NotesSource:
    """Another module's personal data (as the runtime's agent state would register it)."""

    name = "agent_state"

    def __init__(self) -> None:
        self.notes: dict[str, list[str]] = {}

    async def export(self, tenant_id: str, subject_ref: str) -> Any:
        return self.notes.get(subject_ref, [])

    async def erase(self, tenant_id: str, subject_ref: str, *, anonymise: bool) -> int:
        return len(self.notes.pop(subject_ref, []))


async def test_access_and_erasure(
    store: Store, kek: LocalKek, clock: Any, tmp_path: Path, database_url: str | None
) -> None:
    t = await create_tenant(store, "acme")
    svc = PrivacyService(store, kek)
    notes = NotesSource()
    svc.register(notes)
    ref = await svc.vault.ref(t.id, ALICE)
    notes.notes[ref] = ["prefers dark mode"]
    # personal data in the audit chain, a linked API key, consent
    await svc.audit_personal(
        t.id, ALICE, actor="key:x", action="user.signup", target="user:1",
        personal={"email": ALICE, "phone": "+41 79 555 01 23"},
    )  # fmt: skip
    key, _ = await create_key(store.scoped(t.id), "alice-laptop-KEYMARK", ["viewer"])
    await svc.link(t.id, ALICE, "api_key", key.id)
    await svc.record_consent(t.id, ALICE, "marketing", True, "signup-form")
    clock.advance(60)
    await svc.record_consent(t.id, ALICE, "marketing", False, "settings-page")
    assert not await svc.has_consent(t.id, ALICE, "marketing")
    await svc.record_consent(t.id, "bob@example.com", "marketing", True, "signup-form")

    # access request: status, deadline, export bundle
    req = await svc.create_request(t.id, ALICE, "access", actor="key:x")
    assert (req.status, req.deadline_at) == ("received", clock() + 30 * DAY)
    done = await svc.process(t.id, req.id, actor="key:x")
    assert done.status == "completed" and done.result == {
        "records": {
            "agent_state": 1, "agents": 0, "api_keys": 1, "audit": 2, "consents": 2,
            "privacy_requests": 1,
        }
    }  # fmt: skip
    with pytest.raises(Conflict):
        await svc.process(t.id, req.id, actor="key:x")
    bundle = await svc.export_request(t.id, req.id)
    assert bundle["subject"] == ALICE and bundle["subject_ref"] == ref
    assert bundle["data"]["audit"][0]["details"]["personal"]["email"] == ALICE
    assert bundle["data"]["audit"][1]["action"] == "privacy.access.request"
    assert bundle["data"]["api_keys"][0]["name"] == "alice-laptop-KEYMARK"
    assert [c["granted"] for c in bundle["data"]["consents"]] == [True, False]
    assert bundle["data"]["agent_state"] == ["prefers dark mode"]
    raw_before = await asyncio.to_thread(raw_database, store.dialect, tmp_path, database_url)
    assert ALICE.encode() not in raw_before  # only pseudonyms and ciphertext at rest
    assert b"KEYMARK" in raw_before
    wrapped = await svc.repo.subject_key(t.id, ref)
    assert wrapped is not None and wrapped.encode() in raw_before
    assert (await verify_store(store.system.audit)).ok

    # erasure: the chain verifies before and after; the subject key and linked data are gone
    er = await svc.create_request(t.id, ALICE, "erasure", actor="key:x")
    done = await svc.process(t.id, er.id, actor="key:x")
    assert done.result is not None and done.result["deleted"]["subject_keys"] == 1
    assert done.result["deleted"]["api_keys"] == 1 and done.result["deleted"]["consents"] == 2
    assert notes.notes == {}
    assert (await verify_store(store.system.audit)).ok
    entry = next(e for e in await store.system.audit.query() if e.action == "user.signup")
    assert await svc.vault.reveal(t.id, entry.details["personal"]) == ERASED
    assert await svc.consents(t.id, ALICE) == []
    assert len(await svc.consents(t.id, "bob@example.com")) == 1
    with pytest.raises(Conflict, match="erased"):
        await svc.export_request(t.id, req.id)
    raw_after = await asyncio.to_thread(raw_database, store.dialect, tmp_path, database_url)
    assert wrapped.encode() not in raw_after and ALICE.encode() not in raw_after
    if store.dialect == "sqlite":  # pg_dump shows live rows only: the file check is SQLite's
        assert b"KEYMARK" not in raw_after
    # the subject may come back: a new key, new data, the old entries stay erased
    await svc.audit_personal(
        t.id, ALICE, actor="key:x", action="user.signup", target="user:2", personal={"n": 2}
    )
    assert await svc.vault.reveal(t.id, entry.details["personal"]) == ERASED


async def test_anonymisation_overdue_and_validation(
    store: Store, kek: LocalKek, clock: Any
) -> None:
    t = await create_tenant(store, "acme")
    svc = PrivacyService(store, kek)
    await svc.record_consent(t.id, ALICE, "analytics", True, "banner")
    with pytest.raises(Invalid):
        await svc.create_request(t.id, ALICE, "rectify", actor="k")
    req = await svc.create_request(t.id, ALICE, "anonymisation", actor="k")
    late = await svc.create_request(t.id, "carol@example.com", "access", actor="k")
    assert await overdue_requests(store) == []
    clock.advance(30 * DAY + 1)
    assert {r.id for r in await overdue_requests(store)} == {req.id, late.id}
    await svc.process(t.id, req.id, actor="k")
    assert [r.id for r in await overdue_requests(store)] == [late.id]
    # anonymised: consent kept but no longer the subject's
    assert await svc.consents(t.id, ALICE) == []
    assert len(await svc.consents(t.id)) == 1


async def test_retention_keeps_the_chain_verifiable(store: Store, clock: Any) -> None:
    seal_actions = ["a1", "a2", "a3"]
    for a in seal_actions:
        await store.system.audit.append(actor="x", action=a, target="t", outcome="ok", seal=_seal())
        clock.advance(3 * 365 * DAY)
    job = RetentionJob(store)
    report = await job.run_once()
    # a1 is 9y old, a2 6y: only a1 passes 7 years; metrics/events/logs belong to other modules
    assert report.deleted["audit"] == 1
    assert report.unregistered == ["events", "logs", "metrics"]
    assert [e.action for e in await store.system.audit.query()] == ["a2", "a3", "retention.run"]
    res = await verify_store(store.system.audit)
    assert res.ok, res
    purged: list[float] = []

    async def purge_metrics(cutoff: float) -> int:
        purged.append(cutoff)
        return 7

    job.register("metrics", purge_metrics)
    report = await job.run_once()
    assert report.deleted["metrics"] == 7 and purged == [clock() - 90 * DAY]
    assert (await verify_store(store.system.audit)).ok
    # tampering is still caught after the anchor moved
    await store.db.execute("UPDATE audit SET target = 'edited' WHERE action = 'a3'")
    assert not (await verify_store(store.system.audit)).ok


def _seal() -> Any:
    from agentgate.security.audit import seal

    return seal
