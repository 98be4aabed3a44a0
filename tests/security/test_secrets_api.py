"""`/api/secrets` on both backends: write-only values, roles, tenants, KEK routes, problems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from leakcheck import new_secret
from sec_api import SecApi, make_sec_api

from agentgate.security.audit import verify_store


@pytest_asyncio.fixture
async def api(database_url: str | None, tmp_path: Path, master_hex: str) -> AsyncIterator[SecApi]:
    a = await make_sec_api(database_url, tmp_path, {"AGENTGATE_MASTER_KEY": master_hex})
    try:
        yield a
    finally:
        await a.close()


async def test_secret_routes(api: SecApi) -> None:
    c = api.client
    v = new_secret("sk")
    r = await c.post("/api/secrets", json={"name": "openai", "value": v, "class": "api_key"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["class"] == "api_key" and body["version"] == 1 and v not in r.text
    assert (await c.post("/api/secrets", json={"name": "openai", "value": v})).status_code == 409
    r = await c.get("/api/secrets/openai")
    assert r.status_code == 200 and v not in r.text and "value" not in r.json()
    assert [s["name"] for s in (await c.get("/api/secrets")).json()] == ["openai"]
    v2 = new_secret("sk")
    r = await c.post("/api/secrets/openai/rotate", json={"value": v2})
    assert r.status_code == 200 and r.json()["version"] == 2
    r = await c.post("/api/secrets/openai/rotate", json={})
    assert r.status_code == 422 and "not generated" in r.json()["detail"]
    # a bad body names the field and never echoes the value
    bad = new_secret("sk")
    r = await c.post("/api/secrets", json={"name": "x", "value": bad, "class": "nope"})
    assert r.status_code == 422 and bad not in r.text
    r = await c.post("/api/secrets", json={"name": "bad name", "value": bad})
    assert r.status_code == 422 and r.json()["path"] == "$.name" and bad not in r.text
    # nested names, generated tokens
    r = await c.post(
        "/api/secrets", json={"name": "agents/a1/token", "value": bad, "class": "token"}
    )
    assert r.status_code == 201
    r = await c.post("/api/secrets/agents/a1/token/rotate", json={})
    assert r.status_code == 200 and r.json()["version"] == 2
    sec = await api.security.secrets()
    tid = (await api.store.system.tenants.get_by_name("system")).id
    assert await sec.value(tid, "openai") == v2
    assert await sec.value(tid, "agents/a1/token") != bad
    assert (await c.delete("/api/secrets/openai")).status_code == 204
    assert (await c.get("/api/secrets/openai")).status_code == 404
    actions = [e.action for e in await api.store.system.audit.query()]
    assert actions.count("secret.rotate") == 3 and "secret.delete" in actions
    assert (await verify_store(api.store.system.audit)).ok


async def test_secret_roles_tenants_and_kek(api: SecApi) -> None:
    c = api.client
    _, viewer = await api.tenant_key("viewers", ["viewer"])
    _, op = await api.tenant_key("ops", ["operator"])
    _, admin = await api.tenant_key("acme", ["admin"])
    v = new_secret()
    assert (
        await c.post("/api/secrets", json={"name": "k", "value": v}, headers=op)
    ).status_code == 403
    assert (await c.get("/api/secrets", headers=viewer)).status_code == 403
    assert (
        await c.post("/api/secrets", json={"name": "k", "value": v}, headers=admin)
    ).status_code == 201
    assert (await c.get("/api/secrets/k")).status_code == 404  # the system tenant's view
    assert (await c.get("/api/secrets", headers=op)).json() == []
    # the key ring is for system principals
    assert (await c.get("/api/secrets/-/kek", headers=admin)).status_code == 403
    assert (await c.post("/api/secrets/-/kek/rotate", headers=admin)).status_code == 403
    r = await c.post("/api/secrets/-/kek/rotate")
    assert r.status_code == 200 and r.json() == {
        "kek": {"provider": "local", "latest_version": 2, "min_decryption_version": 1},
        "rewrapped": 1,
    }
    r = await c.post("/api/secrets/-/kek/retire", json={"min_decryption_version": 5})
    assert r.status_code == 422
    r = await c.post("/api/secrets/-/kek/retire", json={"min_decryption_version": 2})
    assert r.status_code == 200 and r.json()["min_decryption_version"] == 2
    assert (await c.get("/api/secrets/-/rotation")).json() == []


async def test_no_master_key_is_503(database_url: str | None, tmp_path: Path) -> None:
    a = await make_sec_api(database_url, tmp_path, {})
    try:
        r = await a.client.post("/api/secrets", json={"name": "k", "value": new_secret()})
        assert r.status_code == 503 and "AGENTGATE_MASTER_KEY" in r.json()["detail"]
    finally:
        await a.close()
