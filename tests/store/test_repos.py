"""Repositories on both backends (SQLite and PostgreSQL), against the real databases."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

import pytest

from agentgate.errors import Conflict, Invalid, NotFound
from agentgate.store import GENESIS_HASH, AuditEntry, NewTemplate, Store


def tpl(name: str, version: str, caps: tuple[str, ...] = ("chat",), **kw: Any) -> NewTemplate:
    core, _, pre = version.partition("-")
    major, minor, patch = (int(x) for x in core.split("."))
    digest = "sha256:" + hashlib.sha256(f"{name}@{version}".encode()).hexdigest()
    return NewTemplate(
        name=name,
        version=version,
        major=major,
        minor=minor,
        patch=patch,
        prerelease=pre,
        digest=digest,
        body={"name": name, "version": version, "spec": {"kind": "http"}},
        description=f"{name} agent",
        capabilities=caps,
        **kw,
    )


def seal(e: AuditEntry) -> str:
    return hashlib.sha256(f"{e.prev_hash}|{e.seq}|{e.action}|{e.target}".encode()).hexdigest()


async def test_tenants_crud(store: Store, clock: Any) -> None:
    t = await store.system.tenants.create("acme", quotas={"agents": 5})
    assert t.quotas == {"agents": 5} and not t.disabled and t.created_at == clock()
    with pytest.raises(Conflict):
        await store.system.tenants.create("acme")
    assert (await store.system.tenants.get_by_name("acme")).id == t.id
    clock.advance(1)
    t2 = await store.system.tenants.update(t.id, display_name="Acme", disabled=True)
    assert t2.display_name == "Acme" and t2.disabled and t2.updated_at == clock()
    assert [x.name for x in await store.system.tenants.list()] == ["acme"]
    await store.system.tenants.delete(t.id)
    with pytest.raises(NotFound):
        await store.system.tenants.get(t.id)
    with pytest.raises(NotFound):
        await store.system.tenants.delete(t.id)


async def test_templates_versions_ranges_tags(store: Store) -> None:
    t = await store.system.tenants.create("acme")
    s = store.scoped(t.id)
    for v in ["1.0.0", "1.2.0", "1.2.5", "1.10.0", "2.0.0-rc.1", "2.0.0", "0.9.1"]:
        await s.templates.insert(tpl("echo", v, caps=("chat", "search") if v == "1.2.5" else ()))
    with pytest.raises(Conflict):
        await s.templates.insert(tpl("echo", "1.0.0"))
    with pytest.raises(Invalid):
        await s.templates.insert(
            NewTemplate(name="x", version="x", major=-1, minor=0, patch=0, digest="d", body={})
        )
    got = await s.templates.get("echo", "1.2.5")
    assert got.capabilities == ("chat", "search") and got.body["spec"] == {"kind": "http"}
    assert (await s.templates.get_by_digest(got.digest)).version == "1.2.5"
    # sorted numerically, not as text
    assert [x.version for x in await s.templates.versions("echo")] == [
        "0.9.1",
        "1.0.0",
        "1.2.0",
        "1.2.5",
        "1.10.0",
        "2.0.0",
        "2.0.0-rc.1",
    ]
    # ^1.2 → >=1.2.0 <2.0.0
    cands = await s.templates.candidates("echo", lower=(1, 2, 0), upper=(2, 0, 0))
    assert [x.version for x in cands] == ["1.2.0", "1.2.5", "1.10.0"]
    await s.templates.yank("echo", "1.2.5")
    cands = await s.templates.candidates("echo", lower=(1, 2, 0), upper=(2, 0, 0))
    assert [x.version for x in cands] == ["1.2.0", "1.10.0"]
    assert len(await s.templates.candidates("echo", lower=(1, 2, 0), include_yanked=True)) == 5
    dep = await s.templates.deprecate("echo", "1.0.0", "use 1.10")
    assert dep.deprecated == "use 1.10"
    assert [x.version for x in await s.templates.list(capability="search")] == ["1.2.5"]
    assert await s.templates.names() == ["echo"]

    d1 = (await s.templates.get("echo", "1.2.0")).digest
    d2 = (await s.templates.get("echo", "1.10.0")).digest
    await s.templates.set_tag("echo", "stable", d1, by="alice")
    tag = await s.templates.set_tag("echo", "stable", d2, by="bob")
    assert tag.digest == d2 and tag.seq == 2
    hist = await s.templates.tag_history("echo", "stable")
    assert [(h.seq, h.digest, h.previous_digest) for h in hist] == [(1, d1, None), (2, d2, d1)]
    with pytest.raises(NotFound):  # digest of another template name
        await s.templates.insert(tpl("other", "1.0.0"))
        await s.templates.set_tag(
            "echo", "stable", (await s.templates.get("other", "1.0.0")).digest
        )
    await s.templates.delete_tag("echo", "stable")
    with pytest.raises(NotFound):
        await s.templates.get_tag("echo", "stable")


async def test_trust_policies_agents(store: Store, clock: Any) -> None:
    t = await store.system.tenants.create("acme")
    s = store.scoped(t.id)
    tmpl = await s.templates.insert(tpl("echo", "1.0.0"))
    sig = await s.signatures.add(tmpl.digest, "k1", {"payloadType": "x", "signatures": []})
    assert sig.verified_at is None
    with pytest.raises(Conflict):
        await s.signatures.add(tmpl.digest, "k1", {})
    with pytest.raises(NotFound):
        await s.signatures.add("sha256:nope", "k1", {})
    assert (await s.signatures.mark_verified(tmpl.digest, "k1", 5.0)).verified_at == 5.0
    assert [x.keyid for x in await s.signatures.list(tmpl.digest)] == ["k1"]

    pk = await s.publisher_keys.add("k1", "base64key", valid_until=clock() + 10)
    assert pk.valid_from == clock() and pk.valid_until == clock() + 10
    assert (await s.publisher_keys.revoke("k1")).revoked_at == clock()
    assert (await s.publisher_keys.set_valid_until("k1", None)).valid_until is None

    assert await s.trust_roots.latest() is None
    await s.trust_roots.add(1, {"keys": ["k1"], "threshold": 1}, [])
    await s.trust_roots.add(2, {"keys": ["k1", "k2"], "threshold": 1}, [{"keyid": "k1"}])
    with pytest.raises(Conflict):
        await s.trust_roots.add(2, {}, [])
    latest = await s.trust_roots.latest()
    assert latest is not None and latest.version == 2 and latest.signatures == [{"keyid": "k1"}]

    p1 = await s.policies.add("quota", "package a\nallow := true")
    p2 = await s.policies.add("quota", "package a\nallow := false", created_by="bob")
    assert (p1.version, p2.version) == (1, 2)
    assert (await s.policies.get("quota")).version == 2
    await s.policies.activate("quota", 1)
    assert (await s.policies.get("quota")).version == 1
    assert [p.version for p in await s.policies.list(active_only=True)] == [1]
    await s.policies.deactivate("quota")
    with pytest.raises(NotFound):
        await s.policies.get("quota")

    a = await s.agents.create(
        "bot", template_ref="echo@^1", template_digest=tmpl.digest, params={"x": 1}, replicas=2
    )
    assert a.revision == 1 and a.state == "pending" and a.params == {"x": 1}
    with pytest.raises(Conflict):
        await s.agents.create("bot", template_ref="echo@^1", template_digest=tmpl.digest)
    with pytest.raises(NotFound):
        await s.agents.create("bot2", template_ref="echo@^1", template_digest="sha256:none")
    clock.advance(1)
    b = await s.agents.update("bot", expected_revision=1, replicas=3, routes=[{"path": "/a"}])
    assert b.revision == 2 and b.replicas == 3 and b.routes == [{"path": "/a"}]
    with pytest.raises(Conflict):
        await s.agents.update("bot", expected_revision=1, replicas=4)
    assert await s.agents.usage() == (1, 3)
    assert (await s.agents.get_by_id(a.id)).name == "bot"
    await s.agents.delete("bot")
    assert await s.agents.list() == []


async def test_audit_appends_are_serialised(store: Store) -> None:
    t = await store.system.tenants.create("acme")
    s = store.scoped(t.id)
    await store.system.audit.append(
        actor="root", action="tenant:create", target=t.id, outcome="ok", seal=seal
    )
    await asyncio.gather(
        *(
            s.audit.append(
                actor="alice",
                action="agent:create",
                target=f"a{i}",
                outcome="ok",
                seal=seal,
                decision={"allow": True} if i % 2 else None,
            )
            for i in range(20)
        )
    )
    everything = await store.system.audit.query()
    assert [e.seq for e in everything] == list(range(1, 22))
    prev = GENESIS_HASH
    for e in everything:
        assert e.prev_hash == prev and e.hash == seal(dataclasses.replace(e, hash=""))
        prev = e.hash
    assert await store.system.audit.head() == (21, prev)
    mine = await s.audit.query(actor="alice")
    assert len(mine) == 20 and all(e.tenant_id == t.id for e in mine)
    assert [e.target for e in await s.audit.query(target="a3")] == ["a3"]
    assert len(await store.system.audit.query(tenant_id=None)) == 1
    page = await s.audit.query(after_seq=mine[9].seq, limit=5)
    assert [e.seq for e in page] == [m.seq for m in mine[10:15]]


async def test_tenant_delete_cascades(store: Store) -> None:
    t = await store.system.tenants.create("acme")
    s = store.scoped(t.id)
    x = await s.templates.insert(tpl("echo", "1.0.0"))
    await s.templates.set_tag("echo", "stable", x.digest)
    await s.agents.create("bot", template_ref="echo", template_digest=x.digest)
    await s.api_keys.insert(
        key_id="k" * 32, name="k", sha256="0" * 64, prefix="ag_", roles=["admin"]
    )
    await store.system.tenants.delete(t.id)
    assert await s.templates.list() == [] and await s.agents.list() == []
    assert await s.api_keys.list() == []
