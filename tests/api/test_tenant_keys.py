"""`POST /api/tenants/{id}/keys`: a system admin issues a tenant's first key through the API
(secret shown once, audited in that tenant's trail); nobody else can."""

from __future__ import annotations

from api_helpers import Api


async def test_system_admin_issues_first_tenant_key(api: Api) -> None:
    c = api.client
    r = await c.post("/api/tenants", json={"name": "acme"})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = await c.post(f"/api/tenants/{tid}/keys", json={"name": "acme-admin", "roles": ["admin"]})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    key = r.json()["key"]
    assert secret.startswith("ag_") and key["roles"] == ["admin"] and key["tenant_id"] == tid

    # the key acts in the new tenant, as its admin
    h = api.as_(secret)
    me = await c.get("/api/tenant", headers=h)
    assert me.status_code == 200 and me.json()["name"] == "acme"
    r = await c.post("/api/keys", json={"name": "ci", "roles": ["viewer"]}, headers=h)
    assert r.status_code == 201, r.text
    # shown once: listing never carries a secret
    listed = (await c.get("/api/keys", headers=h)).json()
    assert {k["name"] for k in listed} == {"acme-admin", "ci"}
    assert all("secret" not in k for k in listed)

    # audited in the tenant's own trail, by the system key, without the secret
    r = await c.get("/api/audit", params={"action": "key.create"}, headers=h)
    entries = r.json()
    first = next(e for e in entries if e["target"] == "key:acme-admin")
    assert first["outcome"] == "ok" and first["tenant_id"] == tid
    assert first["actor"] != f"key:{key['id']}" and first["details"]["roles"] == ["admin"]
    assert secret not in r.text


async def test_only_system_admins_issue_tenant_keys(api: Api) -> None:
    c = api.client
    acme_id, acme_admin = await api.tenant_key("acme", ["admin"])
    beta_id, _ = await api.tenant_key("beta", ["admin"])
    body = {"name": "k", "roles": ["admin"]}
    # another tenant's id is not even confirmed to exist
    r = await c.post(f"/api/tenants/{beta_id}/keys", json=body, headers=api.as_(acme_admin))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    # a tenant admin uses /api/keys for its own tenant
    r = await c.post(f"/api/tenants/{acme_id}/keys", json=body, headers=api.as_(acme_admin))
    assert r.status_code == 403
    # a system key without the admin role is not the system principal
    r = await c.post("/api/keys", json={"name": "sysviewer", "roles": ["viewer"]})
    viewer = r.json()["secret"]
    r = await c.post(f"/api/tenants/{acme_id}/keys", json=body, headers=api.as_(viewer))
    assert r.status_code == 403
    r = await c.post(f"/api/tenants/{acme_id}/keys", json=body, headers={"Authorization": ""})
    assert r.status_code == 401
    # system admin: unknown tenant 404, bad roles 422 with the path; nothing half-made
    r = await c.post("/api/tenants/" + "0" * 32 + "/keys", json=body)
    assert r.status_code == 404
    r = await c.post(f"/api/tenants/{acme_id}/keys", json={"name": "k", "roles": ["wizard"]})
    assert r.status_code == 422 and r.json()["path"] == "$.roles[0]"
    keys = (await c.get("/api/keys", headers=api.as_(acme_admin))).json()
    assert [k["name"] for k in keys] == ["acme-key"]
