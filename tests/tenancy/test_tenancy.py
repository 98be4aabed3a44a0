"""Tenancy on both backends: keys shown once, hashed, expiring, rotating, revoked; roles."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from agentgate.errors import Forbidden, Invalid, Unauthorized
from agentgate.store import Store
from agentgate.tenancy import (
    PERMISSIONS,
    ROLES,
    Principal,
    allowed,
    authenticate,
    create_key,
    create_tenant,
    gateway_keys,
    key_snapshot,
    keys_version,
    require,
    revoke_key,
    rotate_key,
    update_tenant,
)


async def test_key_lifecycle(store: Store, clock: Any) -> None:
    t = await create_tenant(store, "acme")
    s = store.scoped(t.id)
    v0 = await keys_version(store)
    rec, secret = await create_key(s, "ci", ["publisher", "viewer"], expires_in=3600)
    assert secret.startswith(f"ag_{rec.id}_") and rec.prefix == secret[:11]
    assert rec.sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(await s.api_keys.list())  # only the hash is stored
    assert rec.roles == ("publisher", "viewer") and rec.expires_at == clock() + 3600
    assert await keys_version(store) > v0

    p = await authenticate(store, secret)
    assert p == Principal(tenant_id=t.id, key_id=rec.id, roles=frozenset({"publisher", "viewer"}))
    for bad in (
        "",
        "nope",
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "ag_" + "0" * 32 + "_" + "x" * 43,
    ):
        with pytest.raises(Unauthorized):
            await authenticate(store, bad)

    snap = await gateway_keys(store)
    assert snap == [
        {
            "id": rec.id,
            "sha256": rec.sha256,
            "hash": f"sha256:{rec.sha256}",
            "tenant": t.id,
            "roles": ["publisher", "viewer"],
        }
    ]
    clock.advance(3600)  # expired
    with pytest.raises(Unauthorized):
        await authenticate(store, secret)
    assert await gateway_keys(store) == []


async def test_rotation_overlap_and_revocation(store: Store, clock: Any) -> None:
    t = await create_tenant(store, "acme")
    s = store.scoped(t.id)
    old, old_secret = await create_key(s, "deploy", ["operator"])
    v = await keys_version(store)
    old2, new, new_secret = await rotate_key(s, old.id, overlap=60)
    assert new.rotated_from == old.id and old2.overlap_until == clock() + 60
    assert new.roles == old.roles and new.name == "deploy"
    assert await keys_version(store) > v
    assert (await authenticate(store, old_secret)).key_id == old.id
    assert (await authenticate(store, new_secret)).key_id == new.id
    snap = await key_snapshot(store)
    assert {k["id"] for k in snap.keys} == {old.id, new.id}
    assert snap.next_change_at == clock() + 60
    clock.advance(60)
    with pytest.raises(Unauthorized):
        await authenticate(store, old_secret)
    assert [k["id"] for k in await gateway_keys(store)] == [new.id]

    v = await keys_version(store)
    await revoke_key(s, new.id)
    assert await keys_version(store) > v  # a poller sees the change at once
    with pytest.raises(Unauthorized):
        await authenticate(store, new_secret)
    assert await gateway_keys(store) == []


async def test_disabled_tenant_keys_stop(store: Store) -> None:
    t = await create_tenant(store, "acme")
    _, secret = await create_key(store.scoped(t.id), "k", ["admin"])
    await update_tenant(store, t.id, disabled=True)
    with pytest.raises(Unauthorized):
        await authenticate(store, secret)
    assert await gateway_keys(store) == []


async def test_validation(store: Store) -> None:
    with pytest.raises(Invalid) as e:
        await create_tenant(store, "Bad Name")
    assert e.value.path == "$.name"
    t = await create_tenant(store, "acme", quotas={"agents": 3})
    s = store.scoped(t.id)
    with pytest.raises(Invalid) as e:
        await create_key(s, "k", ["root"])
    assert e.value.path == "$.roles"
    with pytest.raises(Invalid):
        await create_key(s, "k", [])
    with pytest.raises(Invalid) as e:
        await create_key(s, "k", ["admin"], expires_in=0)
    assert e.value.path == "$.expires_in"
    with pytest.raises(Invalid) as e:
        await update_tenant(store, t.id, quotas={"agents": -1})
    assert e.value.path == "$.quotas.agents"


def test_permission_matrix() -> None:
    admin = Principal("t1", "k", frozenset({"admin"}))
    viewer = Principal("t1", "k", frozenset({"viewer"}))
    operator = Principal("t1", "k", frozenset({"operator"}))
    publisher = Principal("t1", "k", frozenset({"publisher"}))
    assert all(allowed(admin, a) for a in PERMISSIONS)
    assert all(set(roles) <= set(ROLES) for roles in PERMISSIONS.values())
    assert allowed(publisher, "template:publish") and not allowed(operator, "template:publish")
    assert allowed(operator, "agent:create") and not allowed(viewer, "agent:create")
    assert allowed(viewer, "audit:read") and not allowed(viewer, "key:manage")
    assert not allowed(admin, "no:such-action")
    with pytest.raises(Forbidden):
        require(viewer, "agent:delete")
    require(admin, "agent:delete", tenant_id="t1")
    with pytest.raises(Forbidden):
        require(admin, "agent:delete", tenant_id="t2")  # roles never cross tenants
    require(Principal("", "", frozenset(), system=True), "tenant:write", tenant_id="t9")
