"""AgentFactory on the real store (SQLite and PostgreSQL), real registry and real policy core."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from agentgate import crypto
from agentgate.errors import Conflict, Forbidden, Invalid, NotFound, PolicyDenied
from agentgate.policy import PolicyService
from agentgate.registry.service import RegistryService
from agentgate.registry.signing import key_id, sign_template
from agentgate.registry.template import parse_template
from agentgate.runtime import AgentFactory, ScopeAudit, gateway_parts, render_spec
from agentgate.store import AuditEntry, Store, TenantScope
from agentgate.tenancy import Principal

OPERATOR = Principal(tenant_id="", key_id="k1", roles=frozenset({"operator"}))
VIEWER = Principal(tenant_id="", key_id="k2", roles=frozenset({"viewer"}))


def seal(e: AuditEntry) -> str:
    return hashlib.sha256(f"{e.seq}|{e.prev_hash}|{e.action}|{e.target}".encode()).hexdigest()


def doc(version: str = "1.2.0", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "bot",
        "version": version,
        "capabilities": ["chat"],
        "spec": {
            "kind": "http",
            "endpoints": [{"url": "http://{{host}}:9100/{{base}}"}],
            "max_concurrency": 8,
        },
        "resources": {"cpu": "500m", "memory": "256MiB"},
        "params_schema": {
            "type": "object",
            "properties": {
                "host": {"type": "string"},
                "base": {"type": "string"},
                "port": {"type": "integer", "minimum": 1},
            },
            "required": ["host", "base", "port"],
        },
    }
    d.update(extra)
    return d


PARAMS = {"host": "127.0.0.1", "base": "api", "port": 9100}


async def setup(
    store: Store, quotas: dict[str, Any] | None = None
) -> tuple[AgentFactory, TenantScope, crypto.KeyPair]:
    t = await store.system.tenants.create("acme", quotas=quotas or {})
    scope = store.scoped(t.id)
    kp = crypto.generate_keypair()
    await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0.0)
    f = AgentFactory(store, RegistryService, PolicyService(), ScopeAudit(seal), drain_timeout=5)
    return f, scope, kp


async def publish(scope: TenantScope, kp: crypto.KeyPair | None, d: dict[str, Any]) -> None:
    reg = RegistryService(scope)
    if kp is None:
        await reg.publish(d, require_signature=False)
        return
    t = parse_template(d)
    env = sign_template(t.ref, t.digest, kp.private_key, signed_at=scope.clock())
    await reg.publish(d, env, publisher="alice")


async def test_create_resolves_range_renders_and_audits(store: Store) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc("1.2.0"))
    await publish(scope, kp, doc("1.3.1"))
    await publish(scope, kp, doc("2.0.0"))
    rec = await f.create(scope, OPERATOR, "bot@^1.2", PARAMS, replicas=2)
    assert rec.template_version == "1.3.1" and rec.agent.state == "active"
    assert rec.gateway_agent == "acme/bot" and rec.mount == "/t/acme/agents/bot"
    assert rec.decision is not None and rec.decision["allow"] is True
    got = await f.get(scope, OPERATOR, "bot")
    assert got.agent.replicas == 2 and got.agent.params == PARAMS
    entries = await scope.audit.query(action="agent.create")
    assert [e.outcome for e in entries] == ["success"] and entries[0].decision is not None
    # the gateway view: rendered pool, catch-all route under the mount
    t = await scope.templates.get_by_digest(rec.agent.template_digest)
    name, pool, routes = gateway_parts("acme", "bot", t.body, PARAMS, [])
    assert name == "acme/bot"
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.1:9100/api"]
    assert pool.max_concurrency == 8
    assert [(r.id, r.match.path_prefix, r.strip_prefix) for r in routes] == [
        ("acme/bot/0", "/t/acme/agents/bot", True)
    ]
    # by digest, under another name; duplicate name is Conflict
    rec2 = await f.create(scope, OPERATOR, f"bot@{rec.agent.template_digest}", PARAMS, name="b2")
    assert rec2.template_version == "1.3.1"
    with pytest.raises(Conflict):
        await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    assert [r.agent.name for r in await f.list(scope, VIEWER)] == ["b2", "bot"]


async def test_params_errors_name_the_json_path(store: Store) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    with pytest.raises(Invalid) as e:
        await f.create(scope, OPERATOR, "bot@^1", {**PARAMS, "port": 0})
    assert e.value.path == "$.params.port"
    with pytest.raises(Invalid) as e:
        await f.create(scope, OPERATOR, "bot@^1", {"host": "h", "port": 1})  # no base
    assert e.value.path == "$.params"
    with pytest.raises(Invalid) as e:
        await f.create(scope, OPERATOR, "bot@^1", PARAMS, routes=[{"match": {"path": "x"}}])
    assert e.value.path.startswith("$.routes[0].match")
    with pytest.raises(Invalid) as e:
        await f.create(scope, OPERATOR, "bot@^1", PARAMS, replicas=-1)
    assert e.value.path == "$.replicas"
    with pytest.raises(NotFound):
        await f.create(scope, OPERATOR, "bot@^7", PARAMS)
    with pytest.raises(Forbidden):
        await f.create(scope, VIEWER, "bot@^1", PARAMS)
    assert await scope.agents.list() == []


async def test_unsigned_template_denied_by_policy_and_audited(store: Store) -> None:
    f, scope, _ = await setup(store)
    await publish(scope, None, doc())
    with pytest.raises(PolicyDenied) as e:
        await f.create(scope, OPERATOR, "bot@1.2.0", PARAMS)
    assert e.value.decision["allow"] is False
    assert "signature" in e.value.decision["rules"]
    denied = await scope.audit.query(action="agent.create")
    assert [x.outcome for x in denied] == ["denied"]
    assert await scope.agents.list() == []


async def test_quota_denies_create_and_update(store: Store) -> None:
    f, scope, kp = await setup(store, quotas={"agents": 2, "replicas": 3})
    await publish(scope, kp, doc())
    await f.create(scope, OPERATOR, "bot@^1", PARAMS, replicas=2)
    with pytest.raises(PolicyDenied, match="replicas"):
        await f.create(scope, OPERATOR, "bot@^1", PARAMS, replicas=2, name="b2")
    with pytest.raises(PolicyDenied, match="replicas"):
        await f.update(scope, OPERATOR, "bot", replicas=4)
    rec = await f.update(scope, OPERATOR, "bot", replicas=3)
    assert rec.agent.replicas == 3 and rec.agent.revision == 2


async def test_update_revalidates_and_revision_conflict(store: Store) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    rec = await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    with pytest.raises(Invalid) as e:
        await f.update(scope, OPERATOR, "bot", params={"host": "h", "port": "x", "base": ""})
    assert e.value.path == "$.params.port"
    routes = [{"match": {"path_prefix": "/v1"}, "rate_limit": {"rate": "10/s"}}]
    up = await f.update(scope, OPERATOR, "bot", routes=routes, expected_revision=rec.agent.revision)
    assert up.agent.routes == routes
    with pytest.raises(Conflict):
        await f.update(scope, OPERATOR, "bot", replicas=2, expected_revision=rec.agent.revision)


async def test_delete_drains_then_removes(store: Store, clock: Any) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    rec = await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    v0 = await store.system.agents.versions()
    out = await f.delete(scope, OPERATOR, "bot")
    assert out.agent.state == "draining"
    assert (await store.system.agents.versions())[1] > v0[1]
    # a gateway still has one request in flight: the row stays
    await store.system.agents.report_inflight("gw1", {rec.agent.id: 1}, clock())
    await f.close()
    assert await f.reap() == 0
    assert (await scope.agents.get("bot")).state == "draining"
    await store.system.agents.report_inflight("gw1", {rec.agent.id: 0}, clock())
    assert await f.reap() == 1
    with pytest.raises(NotFound):
        await scope.agents.get("bot")
    assert [e.action for e in await scope.audit.query(target="agent:bot")] == [
        "agent.create",
        "agent.delete",
        "agent.deleted",
    ]


async def test_drain_timeout_and_wait(store: Store, clock: Any) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    rec = await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    await f.delete(scope, OPERATOR, "bot")
    await f.close()
    await store.system.agents.report_inflight("gw1", {rec.agent.id: 3}, clock())
    assert await f.reap() == 0
    clock.advance(5)
    assert await f.reap() == 1
    # wait=True returns once drained (reported zero)
    rec = await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    await store.system.agents.report_inflight("gw1", {rec.agent.id: 0}, clock() + 1)
    await f.delete(scope, OPERATOR, "bot", wait=True)
    assert await scope.agents.list() == []


def test_render_spec() -> None:
    spec = {"a": "{{x}}", "b": ["u-{{ y }}-{{x}}"], "c": 3}
    assert render_spec(spec, {"x": 5, "y": "z"}) == {"a": 5, "b": ["u-z-5"], "c": 3}
    with pytest.raises(Invalid) as e:
        render_spec(spec, {"x": 1})
    assert e.value.path == "$.spec.b[0]"


async def test_stored_tenant_policy_applies_in_a_fresh_process(store: Store) -> None:
    # A tenant policy saved earlier (by another process, before a restart) must be part of the
    # decision even though this factory's PolicyService has never seen it.
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    await scope.policies.add(
        "no_operators",
        "package agentgate.rules.no_operators\nimport rego.v1\n\n"
        'deny contains "operators may not create agents today" if {\n'
        '\t"operator" in input.caller.roles\n}\n',
    )
    with pytest.raises(PolicyDenied, match="operators may not create agents today"):
        await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    assert await scope.agents.list() == []
