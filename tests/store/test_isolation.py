"""Tenant isolation by construction: through every method of every tenant repository, tenant A
can neither see nor change tenant B's objects (NotFound / empty), on both backends.

The test enumerates the repositories' public methods, so a new method without a cross-tenant
case here fails the coverage check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentgate.errors import NotFound
from agentgate.store import AuditEntry, NewTemplate, Store, TenantScope

Call = Callable[[TenantScope], Awaitable[Any]]


def seal(e: AuditEntry) -> str:
    return hashlib.sha256(f"{e.prev_hash}{e.seq}".encode()).hexdigest()


async def snapshot(s: TenantScope, digest: str, agent_id: str) -> list[Any]:
    """Everything tenant B owns, as seen by B."""
    return [
        await s.api_keys.list(),
        await s.templates.list(),
        await s.templates.tags("echo"),
        await s.templates.tag_history("echo", "stable"),
        await s.signatures.list(digest),
        await s.publisher_keys.list(),
        await s.trust_roots.list(),
        await s.policies.list(),
        await s.agents.list(),
        await s.agents.get_by_id(agent_id),
        await s.audit.query(),
    ]


async def test_other_tenants_objects_are_unreachable(store: Store) -> None:
    a = store.scoped((await store.system.tenants.create("a")).id)
    b = store.scoped((await store.system.tenants.create("b")).id)
    d = "sha256:" + "b" * 64
    await b.templates.insert(
        NewTemplate(
            name="echo",
            version="1.0.0",
            major=1,
            minor=0,
            patch=0,
            digest=d,
            body={"x": 1},
            capabilities=("chat",),
        )
    )
    await b.templates.set_tag("echo", "stable", d)
    await b.signatures.add(d, "k1", {"sig": 1})
    await b.publisher_keys.add("k1", "pub")
    await b.trust_roots.add(1, {"threshold": 1}, [])
    await b.policies.add("quota", "package q")
    agent = await b.agents.create("bot", template_ref="echo@1", template_digest=d)
    bkey = await b.api_keys.insert(
        key_id="f" * 32, name="ci", sha256="1" * 64, prefix="ag_fff", roles=["admin"]
    )
    await b.audit.append(actor="x", action="y", target="bot", outcome="ok", seal=seal)
    before = await snapshot(b, d, agent.id)

    not_found: dict[str, Call] = {
        "api_keys.get": lambda s: s.api_keys.get(bkey.id),
        "api_keys.revoke": lambda s: s.api_keys.revoke(bkey.id),
        "api_keys.delete": lambda s: s.api_keys.delete(bkey.id),
        "api_keys.rotate": lambda s: s.api_keys.rotate(
            bkey.id, key_id="e" * 32, sha256="2" * 64, prefix="ag_eee", overlap_until=1e12
        ),
        "templates.get": lambda s: s.templates.get("echo", "1.0.0"),
        "templates.get_by_digest": lambda s: s.templates.get_by_digest(d),
        "templates.yank": lambda s: s.templates.yank("echo", "1.0.0"),
        "templates.deprecate": lambda s: s.templates.deprecate("echo", "1.0.0", "old"),
        "templates.set_tag": lambda s: s.templates.set_tag("echo", "stable", d),
        "templates.get_tag": lambda s: s.templates.get_tag("echo", "stable"),
        "templates.delete_tag": lambda s: s.templates.delete_tag("echo", "stable"),
        "signatures.add": lambda s: s.signatures.add(d, "k2", {}),
        "signatures.get": lambda s: s.signatures.get(d, "k1"),
        "signatures.mark_verified": lambda s: s.signatures.mark_verified(d, "k1", 1.0),
        "signatures.delete": lambda s: s.signatures.delete(d, "k1"),
        "publisher_keys.get": lambda s: s.publisher_keys.get("k1"),
        "publisher_keys.set_valid_until": lambda s: s.publisher_keys.set_valid_until("k1", 1.0),
        "publisher_keys.revoke": lambda s: s.publisher_keys.revoke("k1"),
        "trust_roots.get": lambda s: s.trust_roots.get(1),
        "policies.get": lambda s: s.policies.get("quota"),
        "policies.activate": lambda s: s.policies.activate("quota", 1),
        "policies.deactivate": lambda s: s.policies.deactivate("quota"),
        "policies.delete": lambda s: s.policies.delete("quota"),
        "agents.create": lambda s: s.agents.create("bot2", template_ref="x", template_digest=d),
        "agents.get": lambda s: s.agents.get("bot"),
        "agents.get_by_id": lambda s: s.agents.get_by_id(agent.id),
        "agents.update": lambda s: s.agents.update("bot", replicas=9),
        "agents.delete": lambda s: s.agents.delete("bot"),
    }
    empty: dict[str, Call] = {
        "api_keys.list": lambda s: s.api_keys.list(),
        "templates.versions": lambda s: s.templates.versions("echo"),
        "templates.candidates": lambda s: s.templates.candidates("echo", lower=(0, 0, 0)),
        "templates.list": lambda s: s.templates.list(capability="chat"),
        "templates.names": lambda s: s.templates.names(),
        "templates.tags": lambda s: s.templates.tags("echo"),
        "templates.tag_history": lambda s: s.templates.tag_history("echo", "stable"),
        "signatures.list": lambda s: s.signatures.list(d),
        "publisher_keys.list": lambda s: s.publisher_keys.list(),
        "trust_roots.list": lambda s: s.trust_roots.list(),
        "trust_roots.latest": lambda s: s.trust_roots.latest(),
        "policies.list": lambda s: s.policies.list(),
        "policies.versions": lambda s: s.policies.versions("quota"),
        "agents.list": lambda s: s.agents.list(),
        "agents.usage": lambda s: s.agents.usage(),
        "audit.query": lambda s: s.audit.query(target="bot"),
    }
    # Creating in one's own tenant can't touch another's rows: checked by the final snapshot.
    own: dict[str, Call] = {
        "api_keys.insert": lambda s: s.api_keys.insert(
            key_id="c" * 32, name="ci", sha256="3" * 64, prefix="ag_ccc", roles=["viewer"]
        ),
        "templates.insert": lambda s: s.templates.insert(
            NewTemplate(
                name="echo",
                version="1.0.0",
                major=1,
                minor=0,
                patch=0,
                digest="sha256:" + "a" * 64,
                body={},
            )
        ),
        "publisher_keys.add": lambda s: s.publisher_keys.add("k1", "other"),
        "trust_roots.add": lambda s: s.trust_roots.add(1, {}, []),
        "policies.add": lambda s: s.policies.add("quota", "package mine", activate=False),
        "audit.append": lambda s: s.audit.append(
            actor="a", action="b", target="bot", outcome="ok", seal=seal
        ),
    }

    # Every public method of every tenant repository has a case above.
    methods = set()
    for f in dataclasses.fields(TenantScope):
        repo = getattr(a, f.name)
        if f.name in ("tenant_id", "clock"):
            continue
        for name, _fn in inspect.getmembers(type(repo), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                methods.add(f"{f.name}.{name}")
    assert methods == set(not_found) | set(empty) | set(own)

    for label, call in not_found.items():
        with pytest.raises(NotFound):
            await call(a)
        assert await snapshot(b, d, agent.id) == before, label
    for label, call in empty.items():
        assert await call(a) in ([], None, (0, 0)), label
    for label, call in own.items():
        await call(a)
        assert await snapshot(b, d, agent.id) == before, label
    # What A created is A's, and B still can't see it either.
    assert [t.digest for t in await b.templates.list()] == [d]
    assert (await a.templates.get("echo", "1.0.0")).digest == "sha256:" + "a" * 64


def test_scope_is_frozen(tmp_path: Any) -> None:
    scope_fields = {f.name for f in dataclasses.fields(TenantScope)}
    assert "tenant_id" in scope_fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        TenantScope.__new__(TenantScope).__setattr__("tenant_id", "x")  # type: ignore[misc]
