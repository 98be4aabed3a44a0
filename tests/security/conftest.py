"""Security fixtures: the leak check on every test here, a KEK, a secret service on each backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from leakcheck import new_secret, no_leaks

from agentgate.security.keys import LocalKek, MasterKey
from agentgate.security.secrets import SecretService
from agentgate.store import Store

__all__ = ["no_leaks"]


@pytest.fixture
def master_hex() -> str:
    """A raw 32-byte master key as hex (tracked: it must never be printed either)."""
    from leakcheck import track

    return track(os.urandom(32).hex())


@pytest.fixture
def kek(master_hex: str) -> LocalKek:
    """A local key ring on a random master key."""
    return LocalKek(MasterKey.parse(master_hex), b"salt-for-tests!!")


@pytest_asyncio.fixture
async def secrets_svc(store: Store, kek: LocalKek) -> AsyncIterator[SecretService]:
    """A secret service on the parametrized store backend."""
    yield SecretService(store, kek)


@pytest.fixture
def secret_value() -> object:
    """Factory of fresh tracked secret values."""
    return new_secret
