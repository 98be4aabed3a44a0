"""The API against a real SQLite store: permissions, tenant isolation, audit, problems, agents."""

from __future__ import annotations

from api_helpers import Api, signed, template_doc

from agentgate import crypto


async def _publish(api: Api, kp: crypto.KeyPair, headers: dict[str, str] | None = None) -> None:
    h = headers or {}
    r = await api.client.post(
        "/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0}, headers=h
    )
    assert r.status_code == 201, r.text
    for v in ("1.2.3", "1.3.0", "2.0.0"):
        r = await api.client.post(
            "/api/templates", json=signed(template_doc(version=v), kp, api.clock.t), headers=h
        )
        assert r.status_code == 201, r.text


async def test_problem_shapes(api: Api) -> None:
    c = api.client
    r = await c.post("/api/keys", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["type"] == "about:blank"
    r = await c.post("/api/keys", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = await c.post("/api/keys", json={"name": "k", "roles": ["wizard"]})
    assert r.status_code == 422 and r.json()["path"] == "$.roles[0]"
    r = await c.put("/api/keys")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    r = await c.get("/api/keys", headers={"Authorization": "Bearer ag_bad"})
    assert r.status_code == 401 and r.json()["status"] == 401


async def test_key_lifecycle_and_roles(api: Api) -> None:
    c = api.client
    r = await c.post("/api/keys", json={"name": "viewer", "roles": ["viewer"]})
    assert r.status_code == 201
    viewer = r.json()["secret"]
    kid = r.json()["key"]["id"]
    assert "secret" not in (await c.get(f"/api/keys/{kid}")).json()
    # viewers may read templates but not manage keys or publish
    assert (await c.get("/api/templates", headers=api.as_(viewer))).status_code == 200
    assert (await c.get("/api/keys", headers=api.as_(viewer))).status_code == 403
    r = await c.post("/api/keys/" + kid + "/rotate", json={"overlap": 0})
    assert r.status_code == 201
    assert (await c.get("/api/tenant", headers=api.as_(viewer))).status_code == 401
    new = r.json()["secret"]
    assert (await c.get("/api/tenant", headers=api.as_(new))).status_code == 200
    assert (await c.delete(f"/api/keys/{r.json()['key']['id']}")).status_code == 200
    assert (await c.get("/api/tenant", headers=api.as_(new))).status_code == 401


async def test_cross_tenant_is_404(api: Api, keypair: crypto.KeyPair) -> None:
    await _publish(api, keypair)
    other_id, other = await api.tenant_key("acme", ["admin"])
    h = api.as_(other)
    c = api.client
    assert (await c.get("/api/templates/summarizer/1.2.3", headers=h)).status_code == 404
    r = await c.get("/api/templates/summarizer/resolve", params={"ref": "^1"}, headers=h)
    assert r.status_code == 404
    pk = (await c.get("/api/publisher-keys")).json()[0]["keyid"]
    assert (await c.get(f"/api/publisher-keys/{pk}", headers=h)).status_code == 404
    assert (await c.delete(f"/api/publisher-keys/{pk}", headers=h)).status_code == 404
    own = (await c.get("/api/tenant")).json()["id"]
    assert (await c.get(f"/api/tenants/{own}", headers=h)).status_code == 404
    assert (await c.get("/api/tenants", headers=h)).status_code == 403  # not a system key
    assert (await c.get(f"/api/tenants/{other_id}")).status_code == 200  # system sees all


async def test_templates_resolve_tag_rollback_and_audit(api: Api, keypair: crypto.KeyPair) -> None:
    await _publish(api, keypair)
    c = api.client
    r = await c.get("/api/templates/summarizer/resolve", params={"ref": "^1.2"})
    assert r.json()["template"]["version"] == "1.3.0"
    assert (
        await c.put("/api/templates/summarizer/tags/stable", json={"target": "1.2.3"})
    ).is_success
    assert (
        await c.put("/api/templates/summarizer/tags/stable", json={"target": "2.0.0"})
    ).is_success
    r = await c.post("/api/templates/summarizer/tags/stable/rollback", json={})
    assert r.status_code == 200, r.text
    r = await c.get("/api/templates/summarizer/resolve", params={"ref": "stable"})
    assert r.json()["template"]["version"] == "1.2.3"
    r = await c.post("/api/templates/summarizer/1.3.0/yank", json={})
    assert r.json()["yanked"] is True
    r = await c.get("/api/templates/summarizer/resolve", params={"ref": "^1.2"})
    assert r.json()["template"]["version"] == "1.2.3"
    r = await c.get("/api/templates", params={"q": "summarises", "capability": "text.summarize"})
    assert r.status_code == 200 and r.json()[0]["key"].startswith("summarizer@")
    # unsigned publish is refused, and the refusal is audited
    r = await c.post("/api/templates", json={"template": template_doc(version="3.0.0")})
    assert r.status_code == 422 and r.json()["path"] == "$.signature"
    entries = (await c.get("/api/audit", params={"action": "template.publish"})).json()
    assert [e["outcome"] for e in entries] == ["ok", "ok", "ok", "error:422"]
    assert (await c.get("/api/audit/verify")).json()["ok"] is True
    lines = (await c.get("/api/audit/export")).text.splitlines()
    assert len(lines) >= 8


async def test_agents_and_policy_dry_run(api: Api, keypair: crypto.KeyPair) -> None:
    await _publish(api, keypair)
    c = api.client
    r = await c.post(
        "/api/agents", json={"template": "summarizer@^1.2", "params": {"model": "m"}, "replicas": 2}
    )
    assert r.status_code == 201, r.text
    assert r.json()["template"]["version"] == "1.3.0"
    r = await c.post("/api/agents", json={"template": "summarizer@^1.2", "params": {}})
    assert r.status_code == 422 and r.json()["path"].startswith("$.params")
    assert [a["name"] for a in (await c.get("/api/agents")).json()] == ["summarizer"]
    r = await c.patch("/api/agents/summarizer", json={"replicas": 3})
    assert r.status_code == 200 and r.json()["replicas"] == 3
    rego = (
        "package agentgate.rules.nobig\n\n"
        'deny contains msg if {\n  input.request.replicas > 5\n  msg := "too many"\n}\n'
    )
    r = await c.post("/api/policies", json={"name": "nobig", "rego": rego})
    assert r.status_code == 201, r.text
    dry = {"stage": "create", "input": {"request": {"replicas": 9}}}
    r = await c.post("/api/policies/dry-run", json=dry)
    assert r.status_code == 200, r.text
    assert r.json()["allow"] is False and "nobig" in r.json()["rules"]
    r = await c.patch("/api/agents/summarizer", json={"replicas": 9})
    assert r.status_code == 403 and "nobig" in r.json()["decision"]["rules"]
    assert (await c.delete("/api/agents/summarizer")).status_code == 202
