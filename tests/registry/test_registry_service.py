"""RegistryService on the real store (SQLite and PostgreSQL via the shared fixtures)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentgate import crypto
from agentgate.errors import Conflict, Invalid, NotFound
from agentgate.registry.search import SearchIndex
from agentgate.registry.service import RegistryService
from agentgate.registry.signing import ExpiredKey, UntrustedKey, key_id, sign_template
from agentgate.registry.template import parse_template
from agentgate.store import Store


def doc(version: str, description: str = "Summarises documents") -> dict[str, Any]:
    return {
        "name": "summarizer",
        "version": version,
        "description": description,
        "capabilities": ["text"],
        "spec": {"kind": "http", "endpoints": [{"url": "http://127.0.0.1:9001"}]},
    }


async def setup(store: Store) -> tuple[RegistryService, crypto.KeyPair]:
    t = await store.system.tenants.create("acme")
    scope = store.scoped(t.id)
    kp = crypto.generate_keypair()
    await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0.0)
    return RegistryService(scope, index=SearchIndex()), kp


async def publish(reg: RegistryService, kp: crypto.KeyPair, d: dict[str, Any]) -> Any:
    t = parse_template(d)
    env = sign_template(t.ref, t.digest, kp.private_key, signed_at=reg.scope.clock())
    return await reg.publish(d, env, publisher="alice")


async def test_publish_resolve_lineage_and_immutability(store: Store) -> None:
    reg, kp = await setup(store)
    p1 = await publish(reg, kp, doc("1.0.0"))
    assert p1.verified is not None and p1.template.publisher == "alice"
    p2 = await publish(reg, kp, doc("1.2.0"))
    assert p2.template.parent_digest == p1.template.digest
    await publish(reg, kp, doc("2.0.0-beta.1"))
    assert (await reg.resolve("summarizer", "^1")).template.version == "1.2.0"
    assert (await reg.resolve("summarizer", "1.0.0")).template.version == "1.0.0"
    assert (await reg.resolve("summarizer", "^2.0.0-beta")).template.version == "2.0.0-beta.1"
    assert (await reg.resolve("summarizer", p1.template.digest)).template.version == "1.0.0"
    with pytest.raises(NotFound):
        await reg.resolve("summarizer", "^3")
    with pytest.raises(Invalid):
        await reg.resolve("summarizer", ">=1.2.3.4")
    with pytest.raises(Conflict):
        await publish(reg, kp, doc("1.0.0", "changed"))
    verified = await reg.verify(p2.template)
    assert verified.digest == p2.template.digest


async def test_unsigned_and_untrusted_publish(store: Store) -> None:
    reg, _ = await setup(store)
    with pytest.raises(UntrustedKey, match="unsigned"):
        await reg.publish(doc("1.0.0"))
    stranger = crypto.generate_keypair()
    with pytest.raises(UntrustedKey):
        await publish(reg, stranger, doc("1.0.0"))
    p = await reg.publish(doc("1.0.0"), require_signature=False)
    with pytest.raises(UntrustedKey):
        await reg.verify(p.template)


async def test_revoked_key_refused_after_revocation(store: Store, clock: Any) -> None:
    reg, kp = await setup(store)
    p = await publish(reg, kp, doc("1.0.0"))
    clock.advance(10)
    await reg.scope.publisher_keys.revoke(key_id(kp.public_key))
    clock.advance(10)
    with pytest.raises(ExpiredKey):
        await publish(reg, kp, doc("1.1.0"))
    # Published before the revocation: still verifies on deploy.
    await reg.verify(p.template)


async def test_tags_rollback_yank_deprecate(store: Store) -> None:
    reg, kp = await setup(store)
    p1 = await publish(reg, kp, doc("1.0.0"))
    p2 = await publish(reg, kp, doc("1.1.0"))
    await reg.tag("summarizer", "stable", "1.0.0")
    await reg.tag("summarizer", "stable", p2.template.digest)
    assert (await reg.resolve("summarizer", "stable")).template.version == "1.1.0"
    back = await reg.rollback("summarizer", "stable")
    assert back.digest == p1.template.digest
    assert len(await reg.tag_history("summarizer", "stable")) == 3
    with pytest.raises(Conflict):
        await reg.rollback("summarizer", "stable", to="sha256:" + "0" * 64)

    await reg.yank("summarizer", "1.1.0")
    assert (await reg.resolve("summarizer", "^1")).template.version == "1.0.0"
    assert (await reg.resolve("summarizer", "1.1.0")).template.version == "1.1.0"
    await reg.deprecate("summarizer", "1.0.0", "use 2.x")
    r = await reg.resolve("summarizer", "^1")
    assert r.warning is not None and "use 2.x" in r.warning


async def test_search_and_tenant_isolation(store: Store) -> None:
    reg, kp = await setup(store)
    await publish(reg, kp, doc("1.0.0"))
    other = await store.system.tenants.create("other")
    oreg = RegistryService(store.scoped(other.id), index=reg.index)
    hits = await reg.search("summarise documents", capabilities=("text",))
    assert [h.key for h in hits] == ["summarizer@1.0.0"]
    assert await oreg.search("summarise documents") == []
    with pytest.raises(NotFound):
        await oreg.resolve("summarizer", "^1")
    fresh = RegistryService(reg.scope, index=SearchIndex())
    assert await fresh.reindex() == 1


async def test_invalid_document_names_path(store: Store) -> None:
    reg, _ = await setup(store)
    d = copy.deepcopy(doc("1.0.0"))
    d["spec"]["endpoints"][0]["url"] = "nope"
    with pytest.raises(Invalid) as info:
        await reg.publish(d, require_signature=False)
    assert info.value.path == "$.spec.endpoints[0].url"
