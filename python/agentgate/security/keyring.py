"""Opening the installation's key ring: the configured KEK provider plus its persisted state."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agentgate.security.keys import Kek, KekError, LocalKek, master_key_from_env
from agentgate.security.vault import VaultTransitKek
from agentgate.store import Store
from agentgate.store.secrets import KekStateRepo, KekStateRow

__all__ = ["ENV_KMS", "kek_for_salt", "open_kek", "save_state"]

ENV_KMS = "AGENTGATE_KMS"


async def open_kek(store: Store, env: Mapping[str, str] | None = None) -> Kek | None:
    """The KEK named by the environment (`AGENTGATE_KMS`: `local`, the default, or `vault`);
    None when no master key is configured."""
    e = os.environ if env is None else env
    provider = e.get(ENV_KMS, "local")
    if provider == "vault":
        return VaultTransitKek.from_env(e)
    if provider != "local":
        raise KekError(f"{ENV_KMS} must be local or vault, got {provider!r}")
    current, previous = master_key_from_env(e)
    if current is None:
        return None
    state = await kek_state(store)
    return LocalKek(
        current,
        state.salt,
        latest_version=state.latest_version,
        min_decryption_version=state.min_decryption_version,
        previous=previous,
    )


def kek_for_salt(salt: bytes | None, env: Mapping[str, str] | None = None) -> Kek | None:
    """The KEK from the environment with a known salt (no store: restoring into an empty
    directory, where the salt comes from the backup repository's config)."""
    e = os.environ if env is None else env
    if e.get(ENV_KMS, "local") == "vault":
        return VaultTransitKek.from_env(e)
    current, previous = master_key_from_env(e)
    if current is None:
        return None
    return LocalKek(current, salt or b"", previous=previous)


async def kek_state(store: Store) -> KekStateRow:
    """The persisted key-ring state (created with a fresh salt on first use)."""
    return await KekStateRepo(store.db, store.clock).get_or_create(os.urandom(16))


async def save_state(store: Store, kek: Kek) -> None:
    """Persist a local ring's versions after rotate / retire (Vault keeps its own)."""
    if isinstance(kek, LocalKek):
        await KekStateRepo(store.db, store.clock).save(
            kek.latest_version, kek.min_decryption_version
        )
