"""The alert manager end to end: rules over the real metrics store, grouping, silences, cooldown,
escalation, acknowledgement, the outbox, and real receivers (HTTP, aiosmtpd, Alertmanager)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from observe_helpers import ListFeed, agent_state, traffic
from observe_servers import Alertmanager, Receiver, SmtpServer

from agentgate.observe.alerts.channels import (
    SLACK_LIMITS,
    EmailChannel,
    Notification,
    NotifiedAlert,
    SlackChannel,
    WebhookChannel,
    slack_payload,
)
from agentgate.observe.alerts.outbox import Outbox
from agentgate.observe.alerts.rules import Rule
from agentgate.observe.service import ObserveService, ObserveSettings
from agentgate.tenancy import create_tenant


@pytest_asyncio.fixture
async def env(
    store: Any, database_url: str | None, tmp_path: Path, clock: Any
) -> AsyncIterator[Any]:
    """An observe service on the store with a hand-fed feed and a system tenant."""
    feed = ListFeed()
    svc = await ObserveService.open(
        store, database_url, tmp_path, ObserveSettings(), feed=feed, clock=clock
    )
    t = await create_tenant(store, "system")
    await svc.alerts.install_defaults(t.id)

    class Env:
        pass

    e = Env()
    e.svc, e.feed, e.tenant, e.clock = svc, feed, t.id, clock  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        await svc.mdb.close()


async def test_shipped_rules_are_listed_as_soon_as_the_service_opens(
    store: Any, database_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule list read right after start shows the shipped rules, before any flush or timer."""
    from agentgate.observe.alerts.rules import DEFAULT_RULES
    from agentgate.observe.service import open_for_admin

    monkeypatch.delenv("AGENTGATE_CONFIG", raising=False)
    t = await create_tenant(store, "system")
    svc = await open_for_admin(store, database_url, tmp_path)
    try:
        names = {r["name"] for r in await svc.alerts.rules(t.id)}
        assert {r.name for r in DEFAULT_RULES} <= names
    finally:
        await svc.close()


async def _round(e: Any, seconds: float = 10.0) -> None:
    """One collector interval: flush, evaluate, notify, deliver."""
    await e.svc.collector.flush()
    await e.svc.alerts.evaluate()
    await e.svc.alerts.notify()
    await e.svc.outbox.deliver_due()
    e.clock.advance(seconds)


def _path(tag: str) -> str:
    return f"/hook/{tag}"


async def test_error_rate_pending_firing_grouped_resolved(
    env: Any, receiver: Receiver, request: Any
) -> None:
    e = env
    tag = request.node.name.replace("[", "-").rstrip("]")
    am = e.svc.alerts
    changes: list[tuple[str, str, str]] = []

    async def on_change(tenant_id: str, alert_id: str, state: str, detail: str) -> None:
        changes.append((tenant_id, alert_id, state))  # what the bus gets as alert.<state>

    am.on_change = on_change
    await am.put_channel(e.tenant, "hook", WebhookChannel(url=receiver.url(_path(tag))))
    await am.put_channel(
        e.tenant, "slack", SlackChannel(webhook_url=receiver.url(_path(tag + "-slack")))
    )
    # 10 % errors for two agents: HighErrorRate (for 60 s) pends, then fires for both
    for _ in range(7):
        for agent in ("svc-a", "svc-b"):
            traffic(e.feed, agent, ok=47, errors=3)
            agent_state(e.feed, agent)
        await _round(e)
        if _ == 0:
            active = await am.active(e.tenant)
            assert {a["labels"]["agent"] for a in active if a["rule"] == "HighErrorRate"} == {
                "svc-a",
                "svc-b",
            }
            assert all(a["state"] == "pending" for a in active if a["rule"] == "HighErrorRate")
    active = {
        a["labels"]["agent"]: a for a in await am.active(e.tenant) if a["rule"] == "HighErrorRate"
    }
    assert {a["state"] for a in active.values()} == {"firing"}
    # group_wait (30 s) after the group appeared: nothing sent before, one grouped message after
    assert receiver.on(_path(tag)) == []
    for _ in range(3):
        traffic(e.feed, "svc-a", 47, 3)
        traffic(e.feed, "svc-b", 47, 3)
        await _round(e)
    got = receiver.wait(_path(tag), 1)
    assert len(got) == 1
    body = got[0].body
    assert body["version"] == "4" and body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "HighErrorRate"}
    assert sorted(a["labels"]["agent"] for a in body["alerts"]) == ["svc-a", "svc-b"]
    assert got[0].headers.get("Idempotency-Key")
    slack = receiver.wait(_path(tag + "-slack"), 1)
    assert slack[0].body["blocks"][0]["type"] == "header"
    # unchanged group: no repeat within repeat_interval (4 h) even though rounds go on
    for _ in range(5):
        traffic(e.feed, "svc-a", 47, 3)
        traffic(e.feed, "svc-b", 47, 3)
        await _round(e, 60)
    assert len(receiver.on(_path(tag))) == 1
    # acknowledge one; both recover; the resolution goes out after group_interval (5 min)
    ack = await am.acknowledge(e.tenant, active["svc-a"]["id"], "key:test")
    assert ack["acked_at"] is not None
    e.clock.advance(400)  # the errors leave the 5-minute window
    for _ in range(2):
        traffic(e.feed, "svc-a", 50, 0)
        traffic(e.feed, "svc-b", 50, 0)
        await _round(e)
    resolved = receiver.wait(_path(tag), 2)
    assert resolved[1].body["status"] == "resolved"
    assert {a["status"] for a in resolved[1].body["alerts"]} == {"resolved"}
    hist = await am.history(e.tenant)
    kinds = {h["kind"] for h in hist if h["rule"] == "HighErrorRate"}
    assert {"pending", "firing", "acknowledged", "notified", "resolved"} <= kinds
    # every state change reached the hook after its commit, in order, and nothing else did
    seq = [s for t, a, s in changes if a == active["svc-a"]["id"] and t == e.tenant]
    assert seq == ["pending", "firing", "acknowledged", "resolved"]
    st = await am.stats(e.tenant)
    r = st["rules"]["HighErrorRate"]
    assert r["fired"] == 2 and r["acknowledged"] == 1 and r["resolved"] == 2
    assert r["time_to_acknowledge"]["max"] > 0


async def test_silence_cooldown_escalation_and_agent_down(
    env: Any, receiver: Receiver, request: Any
) -> None:
    e = env
    tag = request.node.name.replace("[", "-").rstrip("]")
    am = e.svc.alerts
    await am.put_channel(e.tenant, "team", WebhookChannel(url=receiver.url(_path(tag))))
    await am.put_channel(e.tenant, "pager", WebhookChannel(url=receiver.url(_path(tag + "-pager"))))
    await am.put_rule(
        e.tenant,
        Rule.model_validate(
            {
                "name": "AgentDown",
                "conditions": [{"metric": "healthy_endpoints", "op": "==", "threshold": 0}],
                "for": "30s",
                "severity": "critical",
                "channels": ["team"],
                "escalation": [{"after": "10m", "channels": ["pager"]}],
                "cooldown": "1h",
                "annotations": {"summary": "{agent} is down"},
            }
        ),
    )
    # a silence on agent quiet-1 keeps it out of every notification
    await am.silence(
        e.tenant,
        [{"name": "agent", "value": "quiet-.*", "regex": True}],
        None,
        e.clock() + 86400,
        "key:t",
    )
    for _ in range(8):
        agent_state(e.feed, "down-1", healthy=0, endpoints=2)
        agent_state(e.feed, "quiet-1", healthy=0, endpoints=1)
        await _round(e)
    msgs = receiver.wait(_path(tag), 1)
    assert [a["labels"]["agent"] for a in msgs[0].body["alerts"]] == ["down-1"]
    assert msgs[0].body["alerts"][0]["annotations"]["summary"] == "down-1 is down"
    active = {
        a["labels"]["agent"]: a for a in await am.active(e.tenant) if a["rule"] == "AgentDown"
    }
    assert active["quiet-1"]["silenced"] and not active["down-1"]["silenced"]
    # unacknowledged for 10 minutes: escalated to the pager, once
    for _ in range(70):
        agent_state(e.feed, "down-1", healthy=0, endpoints=2)
        agent_state(e.feed, "quiet-1", healthy=0, endpoints=1)
        await _round(e)
    pages = receiver.wait(_path(tag + "-pager"), 1)
    assert len(pages) == 1 and pages[0].body["alerts"][0]["labels"]["agent"] == "down-1"
    assert (await am.get(e.tenant, active["down-1"]["id"]))["escalation_level"] == 1
    # it recovers and breaks again within the cooldown: no new firing notification for 1 h
    for _ in range(40):  # > group_interval for the resolution
        agent_state(e.feed, "down-1", healthy=2, endpoints=2)
        agent_state(e.feed, "quiet-1", healthy=1, endpoints=1)
        await _round(e)
    n_before = len(receiver.on(_path(tag)))
    assert receiver.on(_path(tag))[-1].body["status"] == "resolved"
    for _ in range(12):
        agent_state(e.feed, "down-1", healthy=0, endpoints=2)
        await _round(e)
    assert len(receiver.on(_path(tag))) == n_before, "cooldown holds the new alert back"
    e.clock.advance(3600)
    for _ in range(5):
        agent_state(e.feed, "down-1", healthy=0, endpoints=2)
        await _round(e)
    assert len(receiver.wait(_path(tag), n_before + 1)) == n_before + 1


async def test_outbox_retries_and_survives_restart(
    env: Any, receiver: Receiver, request: Any
) -> None:
    e = env
    tag = request.node.name.replace("[", "-").rstrip("]")
    am = e.svc.alerts
    await am.put_channel(e.tenant, "hook", WebhookChannel(url=receiver.url(_path(tag))))
    receiver.fail_next = 2
    for _ in range(10):
        agent_state(e.feed, "q-1", queued=50)
        await e.svc.collector.flush()
        await am.evaluate()
        await am.notify()
        e.clock.advance(10)
    # queued, not delivered yet: "restart" = a new outbox on the same database
    assert await e.svc.outbox.pending() == 1
    box = Outbox(e.svc.store.db, am.channel, e.svc.settings.alerts, e.clock)
    assert await box.deliver_due() == 0  # 500
    assert await box.pending() == 1
    e.clock.advance(box.backoff(1))
    assert await box.deliver_due() == 0  # 500 again
    e.clock.advance(box.backoff(2))
    assert await box.deliver_due() == 1
    got = receiver.wait(_path(tag), 1)
    assert got[0].body["alerts"][0]["labels"]["alertname"] == "QueueDepth"
    # another restart: nothing is sent twice
    box2 = Outbox(e.svc.store.db, am.channel, e.svc.settings.alerts, e.clock)
    e.clock.advance(3600)
    assert await box2.deliver_due() == 0
    assert len(receiver.on(_path(tag))) == 1
    rows = await e.svc.store.db.fetch("SELECT state, attempts FROM alert_outbox")
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 3)]


def test_slack_blocks_stay_within_limits() -> None:
    long = "x" * 10_000
    alerts = [
        NotifiedAlert(
            fingerprint=str(i),
            status="firing" if i % 3 else "resolved",
            labels={"alertname": "A" * 300, "agent": long, **{f"l{j}": long for j in range(15)}},
            annotations={"summary": long},
            starts_at=1.0,
            ends_at=None,
        )
        for i in range(120)
    ]
    n = Notification("g", "slack", {"alertname": "A" * 400}, alerts, external_url="http://x")
    p = slack_payload(n)
    blocks = p["blocks"]
    assert len(blocks) <= SLACK_LIMITS["blocks"]
    for b in blocks:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= SLACK_LIMITS["header_text"]
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= SLACK_LIMITS["section_text"]
            assert len(b.get("fields", [])) <= SLACK_LIMITS["fields"]
            assert all(len(f["text"]) <= SLACK_LIMITS["field_text"] for f in b.get("fields", []))
    assert "more" in blocks[-2]["text"]["text"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_email_over_starttls_with_auth(env: Any, smtp_server: SmtpServer) -> None:
    e = env
    am = e.svc.alerts
    ch = EmailChannel.model_validate(
        {
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "security": "starttls",
            "username": smtp_server.user,
            "password": smtp_server.password,
            "from": "alerts@agentgate.test",
            "to": ["oncall@example.test"],
            "verify_tls": False,
        }
    )
    await am.put_channel(e.tenant, "mail", ch)
    from agentgate.observe.alerts.channels import payload, send

    before = len(smtp_server.mails)
    await send(ch, payload("email", am.test_notification(e.tenant, "mail")))
    mails = smtp_server.wait(before + 1)
    m = mails[-1]
    assert m.tls and m.login == "alerts" and m.rcpts == ["oncall@example.test"]
    assert b"AgentgateTest" in m.data and b"Message-ID: <test-" in m.data
    bad = ch.model_copy(update={"password": "wrong", "timeout": 1.0})
    from agentgate.observe.alerts.channels import DeliveryError

    with pytest.raises(DeliveryError) as ei:
        await send(bad, payload("email", am.test_notification(e.tenant, "mail")))
    assert "wrong" not in str(ei.value) and "s3cret" not in str(ei.value)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_alertmanager_receives_and_resolves(env: Any, alertmanager: Alertmanager) -> None:
    e = env
    am = e.svc.alerts
    from agentgate.observe.alerts.channels import AlertmanagerChannel

    await am.put_channel(e.tenant, "am", AlertmanagerChannel(url=alertmanager.url))
    for _ in range(8):
        agent_state(e.feed, "brk-1", breakers_open=1, endpoints=2, healthy=1)
        await _round(e)

    async def alerts() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as s, s.get(alertmanager.url + "/api/v2/alerts") as r:
            assert r.status == 200
            return list(await r.json())

    got = [a for a in await alerts() if a["labels"].get("agent") == "brk-1"]
    assert got and got[0]["labels"]["alertname"] == "BreakerOpenOr5xxBurst"
    assert got[0]["status"]["state"] == "active"
    for _ in range(40):
        agent_state(e.feed, "brk-1", breakers_open=0, endpoints=2, healthy=2)
        await _round(e)
    # resolved alerts carry endsAt in the past: Alertmanager stops listing them as active
    for _ in range(100):
        now = [a for a in await alerts() if a["labels"].get("agent") == "brk-1"]
        if not now or now[0]["status"]["state"] != "active":
            break
        await asyncio.sleep(0.1)
    assert not now or now[0]["status"]["state"] != "active"
    assert orjson.dumps(got)  # JSON all the way
