"""Smoke: the store opens and migrates on both backends."""

from __future__ import annotations

from agentgate.store import Store


async def test_open_and_tenant(store: Store) -> None:
    t = await store.system.tenants.create("acme")
    assert (await store.system.tenants.get(t.id)).name == "acme"
    assert await store.system.api_keys.version() == 0
