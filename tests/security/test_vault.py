"""The Vault transit client against a real HTTP server implementing the documented endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from leakcheck import new_secret
from vault_server import TransitServer

from agentgate.security.keyring import open_kek
from agentgate.security.keys import KekError
from agentgate.security.rotation import retire_kek, rotate_kek
from agentgate.security.secrets import SecretService
from agentgate.security.vault import VaultTransitKek
from agentgate.store import Store


@pytest_asyncio.fixture
async def vault() -> AsyncIterator[TransitServer]:
    srv = TransitServer(token=new_secret("hvs"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_transit_wrap_rotate_rewrap_retire(vault: TransitServer) -> None:
    kek = VaultTransitKek(vault.url, vault.token, key="k1")
    try:
        dek = b"\x01" * 32
        t1 = await kek.wrap(dek, b"")
        assert t1.startswith("vault:v1:") and kek.version_of(t1) == 1
        assert await kek.unwrap(t1, b"") == dek
        st = await kek.rotate()
        assert (st.provider, st.latest_version, st.min_decryption_version) == ("vault", 2, 1)
        assert await kek.unwrap(t1, b"") == dek  # old versions stay readable
        t2 = await kek.rewrap(t1, b"")
        assert kek.version_of(t2) == 2 and await kek.unwrap(t2, b"") == dek
        await kek.set_min_decryption_version(2)
        with pytest.raises(KekError, match="HTTP 400"):
            await kek.unwrap(t1, b"")
        assert "POST rewrap/k1" in vault.calls and "POST keys/k1/config" in vault.calls
    finally:
        await kek.close()
    bad = VaultTransitKek(vault.url, "wrong-token", key="k1")
    try:
        with pytest.raises(KekError, match="403") as ei:
            await bad.wrap(b"x" * 32, b"")
        assert vault.token not in str(ei.value)
    finally:
        await bad.close()


async def test_secrets_on_vault(vault: TransitServer, store: Store) -> None:
    env = {"AGENTGATE_KMS": "vault", "VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.token}
    kek = await open_kek(store, env)
    assert isinstance(kek, VaultTransitKek)
    try:
        svc = SecretService(store, kek)
        t = (await store.system.tenants.create("acme")).id
        v = new_secret()
        await svc.put(t, "openai", v)
        status, moved = await rotate_kek(svc, actor="test")
        assert (status.latest_version, moved) == (2, 1)
        await retire_kek(svc, 2, actor="test")
        assert await svc.value(t, "openai") == v
    finally:
        await kek.close()
    with pytest.raises(KekError, match="VAULT_ADDR"):
        await open_kek(store, {"AGENTGATE_KMS": "vault"})
