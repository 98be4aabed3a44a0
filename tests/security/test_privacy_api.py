"""`/api/privacy` on both backends: requests, export, erasure, consent, retention, roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sec_api import SecApi, make_sec_api

from agentgate.security.audit import verify_store


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest_asyncio.fixture
async def api(
    database_url: str | None, tmp_path: Path, master_hex: str
) -> AsyncIterator[tuple[SecApi, Any]]:
    clock = _Clock()
    a = await make_sec_api(database_url, tmp_path, {"AGENTGATE_MASTER_KEY": master_hex}, clock)
    try:
        yield a, clock
    finally:
        await a.close()


async def test_privacy_routes(api: tuple[SecApi, Any]) -> None:
    a, clock = api
    c = a.client
    subj = "dana@example.com"
    r = await c.post(
        "/api/privacy/consents",
        json={"subject": subj, "purpose": "newsletter", "granted": True, "source": "form"},
    )
    assert r.status_code == 201 and subj not in r.text
    ref = r.json()["subject_ref"]
    r = await c.get("/api/privacy/consents", params={"subject": subj})
    assert [x["purpose"] for x in r.json()] == ["newsletter"]
    r = await c.post("/api/privacy/requests", json={"subject": subj, "kind": "access"})
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "received" and req["subject_ref"] == ref and not req["overdue"]
    assert req["deadline_at"] == clock() + 30 * 86400
    r = await c.post(f"/api/privacy/requests/{req['id']}/process")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    r = await c.get(f"/api/privacy/requests/{req['id']}/export")
    assert r.status_code == 200 and r.json()["subject"] == subj
    assert r.json()["data"]["consents"][0]["purpose"] == "newsletter"
    assert (await c.post(f"/api/privacy/requests/{req['id']}/process")).status_code == 409
    r = await c.post("/api/privacy/requests", json={"subject": subj, "kind": "erasure"})
    er = r.json()
    clock.t += 31 * 86400
    r = await c.get("/api/privacy/requests", params={"overdue": "true"})
    assert [x["id"] for x in r.json()] == [er["id"]]
    r = await c.post(f"/api/privacy/requests/{er['id']}/process")
    assert r.status_code == 200 and r.json()["result"]["deleted"]["consents"] == 1
    assert (await c.get("/api/privacy/requests", params={"overdue": "true"})).json() == []
    assert (await c.get(f"/api/privacy/requests/{req['id']}/export")).status_code == 409
    assert (await c.get("/api/privacy/requests", params={"status": "bogus"})).status_code == 422
    r = await c.post("/api/privacy/requests", json={"subject": subj, "kind": "forget-me"})
    assert r.status_code == 422 and r.json()["path"] == "$.kind"
    r = await c.get("/api/privacy/retention")
    assert r.json()["periods"]["audit"] == 7 * 365 * 86400
    r = await c.post("/api/privacy/retention/run")
    assert r.status_code == 200 and r.json()["deleted"]["audit"] == 0
    assert (await verify_store(a.store.system.audit)).ok
    # roles: operators and viewers see nothing of privacy; admins of a tenant cannot run retention
    _, viewer = await a.tenant_key("v", ["viewer"])
    _, admin = await a.tenant_key("other", ["admin"])
    assert (await c.get("/api/privacy/requests", headers=viewer)).status_code == 403
    assert (await c.post("/api/privacy/retention/run", headers=admin)).status_code == 403
    assert (await c.get(f"/api/privacy/requests/{req['id']}", headers=admin)).status_code == 404
