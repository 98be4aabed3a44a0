"""The `publish` policy stage runs on `POST /api/templates`: a tenant policy can refuse a publish
(403 problem naming the rule, nothing stored) and every decision is in the audit trail."""

from __future__ import annotations

from typing import Any

from api_helpers import Api, signed, template_doc

from agentgate import crypto

NO_PRERELEASE = """package agentgate.rules.no_prerelease

import rego.v1

deny contains msg if {
	input.stage == "publish"
	contains(input.template.version, "-")
	msg := sprintf("prerelease %s may not be published by %s", [
		input.template.version,
		input.caller.id,
	])
}
"""

ONLY_ON_CREATE = """package agentgate.rules.create_only

import rego.v1

deny contains "never created" if input.stage == "create"
"""


async def _setup(api: Api, kp: crypto.KeyPair, *modules: tuple[str, str]) -> None:
    r = await api.client.post(
        "/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0}
    )
    assert r.status_code == 201, r.text
    for name, rego in modules:
        r = await api.client.post("/api/policies", json={"name": name, "rego": rego})
        assert r.status_code == 201, r.text


async def _publish_audit(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get("/api/audit", params={"action": "template.publish"})
    assert r.status_code == 200, r.text
    return list(r.json())


async def test_tenant_policy_denies_publish(api: Api, keypair: crypto.KeyPair) -> None:
    await _setup(api, keypair, ("no_prerelease", NO_PRERELEASE))
    body = signed(template_doc(version="2.0.0-beta.1"), keypair, api.clock.t)
    r = await api.client.post("/api/templates", json=body)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert p["title"] == "Denied by policy"
    assert "no_prerelease" in p["detail"] and "summarizer@2.0.0-beta.1" in p["detail"]
    assert p["decision"]["stage"] == "publish" and p["decision"]["allow"] is False
    assert p["decision"]["rules"] == ["no_prerelease"]
    # the input carried the caller: the message names the key that tried
    assert "may not be published by key:" in p["decision"]["reasons"][0]["message"]
    # nothing was stored
    assert (await api.client.get("/api/templates/summarizer")).status_code == 404

    [entry] = await _publish_audit(api)
    assert entry["outcome"] == "denied" and entry["target"] == "template:summarizer@2.0.0-beta.1"
    assert entry["decision"]["stage"] == "publish"
    assert entry["decision"]["rules"] == ["no_prerelease"]


async def test_allowed_publish_audits_the_decision(api: Api, keypair: crypto.KeyPair) -> None:
    # a rule of another stage does not apply to publish
    await _setup(api, keypair, ("no_prerelease", NO_PRERELEASE), ("create_only", ONLY_ON_CREATE))
    r = await api.client.post(
        "/api/templates", json=signed(template_doc(version="2.0.0"), keypair, api.clock.t)
    )
    assert r.status_code == 201, r.text
    [entry] = await _publish_audit(api)
    assert entry["outcome"] == "ok"
    assert entry["decision"] == {"stage": "publish", "allow": True, "rules": [], "reasons": []}


async def test_policy_change_applies_to_next_publish(api: Api, keypair: crypto.KeyPair) -> None:
    await _setup(api, keypair)
    doc = template_doc(version="3.0.0-rc.1")
    r = await api.client.post("/api/templates", json=signed(doc, keypair, api.clock.t))
    assert r.status_code == 201, r.text
    r = await api.client.post(
        "/api/policies", json={"name": "no_prerelease", "rego": NO_PRERELEASE}
    )
    assert r.status_code == 201, r.text
    doc = template_doc(version="3.0.0-rc.2")
    r = await api.client.post("/api/templates", json=signed(doc, keypair, api.clock.t))
    assert r.status_code == 403 and r.json()["decision"]["rules"] == ["no_prerelease"]
    # another tenant's publish is judged by its own (default) bundle only
    _, other = await api.tenant_key("acme", ["admin"])
    h = api.as_(other)
    r = await api.client.post(
        "/api/publisher-keys", json={"public_key": keypair.public_b64(), "valid_from": 0}, headers=h
    )
    assert r.status_code == 201, r.text
    r = await api.client.post("/api/templates", json=signed(doc, keypair, api.clock.t), headers=h)
    assert r.status_code == 201, r.text
