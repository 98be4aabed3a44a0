"""Quick path through the API."""

from __future__ import annotations

from api_helpers import Api, signed, template_doc

from agentgate import crypto


async def test_publish_resolve(api: Api, keypair: crypto.KeyPair) -> None:
    c = api.client
    r = await c.post("/api/publisher-keys", json={"public_key": keypair.public_b64()})
    assert r.status_code == 201, r.text
    r = await c.post("/api/templates", json=signed(template_doc(), keypair, api.clock.t))
    assert r.status_code == 201, r.text
    r = await c.get("/api/templates/summarizer/resolve", params={"ref": "^1.2"})
    assert r.status_code == 200, r.text
    assert r.json()["template"]["version"] == "1.2.3"
    r = await c.get("/api/nope")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
