"""Fixtures: a real store (SQLite file; PostgreSQL via `store_url`), the API app in-process,
a bootstrapped system tenant with its admin key, and a helper to sign templates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from api_helpers import Api, make_api

from agentgate import crypto


@pytest_asyncio.fixture
async def api(database_url: str | None, tmp_path: Path) -> AsyncIterator[Api]:
    """The API on a fresh store of each backend (SQLite file, PostgreSQL database), bootstrapped."""
    a, store = await make_api(database_url, tmp_path)
    try:
        yield a
    finally:
        await a.client.aclose()
        await store.close()


@pytest.fixture
def keypair() -> crypto.KeyPair:
    """A publisher key pair."""
    return crypto.generate_keypair()
