"""`/api/state`: agents as of a time from their event history, and restore through new events."""

from __future__ import annotations

from api_helpers import Api, signed, template_doc

from agentgate import crypto


async def _publish(api: Api, kp: crypto.KeyPair) -> None:
    c = api.client
    r = await c.post("/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0})
    assert r.status_code == 201, r.text
    for v in ("1.2.3", "1.3.0"):
        r = await c.post("/api/templates", json=signed(template_doc(version=v), kp, api.clock.t))
        assert r.status_code == 201, r.text


async def test_state_as_of_and_restore(api: Api, keypair: crypto.KeyPair) -> None:
    await _publish(api, keypair)
    c = api.client
    t0 = api.clock.t
    r = await c.post("/api/agents", json={"template": "summarizer@1.2.3", "params": {"model": "a"}})
    assert r.status_code == 201, r.text
    api.clock.t += 60
    t1 = api.clock.t
    r = await c.patch(
        "/api/agents/summarizer", json={"replicas": 3, "template": "summarizer@1.3.0"}
    )
    assert r.status_code == 200, r.text
    api.clock.t += 60
    # before it existed, as created, as updated
    r = await c.get("/api/state/agents/summarizer", params={"at": t0 - 1})
    assert r.status_code == 200 and r.json()["agent"] is None
    first = (await c.get("/api/state/agents/summarizer", params={"at": str(t0 + 30)})).json()
    assert first["agent"]["replicas"] == 1 and first["agent"]["template_ref"] == "summarizer@1.2.3"
    iso = "2023-11-14T22:13:40Z"  # t0 + 20 (the test clock starts at 1_700_000_000)
    assert (await c.get("/api/state/agents/summarizer", params={"at": iso})).json() == first
    now = (await c.get("/api/state/agents/summarizer")).json()
    assert now["agent"]["replicas"] == 3 and now["version"] == 2
    listed = (await c.get("/api/state/agents", params={"at": t1 - 1})).json()["agents"]
    assert [a["name"] for a in listed] == ["summarizer"]
    # bad times are 422 naming the parameter
    r = await c.get("/api/state/agents/summarizer", params={"at": "yesterday"})
    assert r.status_code == 422 and r.json()["path"] == "$.query.at"
    assert (await c.get("/api/state/agents/nobody")).status_code == 404
    # restore to t0+30: the live agent goes back, the log grows by one event
    r = await c.post("/api/state/restore", json={"at": t0 + 30, "agent": "summarizer"})
    assert r.status_code == 200, r.text
    assert [s["agent"]["replicas"] for s in r.json()["restored"]] == [1]
    live = (await c.get("/api/agents/summarizer")).json()
    assert live["replicas"] == 1 and live["template"]["ref"] == "summarizer@1.2.3"
    after = (await c.get("/api/state/agents/summarizer")).json()
    assert after["version"] == 3 and after["agent"]["replicas"] == 1
    # the history before the restore is intact
    mid = (await c.get("/api/state/agents/summarizer", params={"at": t1 + 1})).json()
    assert mid["agent"]["replicas"] == 3
    # restoring to the same state again writes nothing
    r = await c.post("/api/state/restore", json={"at": t0 + 30})
    assert r.json()["restored"] == []
    entries = (await c.get("/api/audit", params={"action": "state.restore"})).json()
    assert [e["outcome"] for e in entries] == ["ok", "ok"]
    # delete: the state shows draining, then gone once drained
    assert (await c.delete("/api/agents/summarizer")).status_code == 202
    st = (await c.get("/api/state/agents/summarizer")).json()
    assert st["agent"]["state"] == "draining"
