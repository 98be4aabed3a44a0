"""Fixtures of the observability tests: the metrics connection on each store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from agentgate.observe.db import MetricsDB, open_metrics_db


@pytest_asyncio.fixture
async def mdb(store: Any, database_url: str | None, tmp_path: Path) -> AsyncIterator[MetricsDB]:
    """The metrics connection to the (migrated) store of the parametrized backend."""
    db = await open_metrics_db(database_url, tmp_path)
    try:
        yield db
    finally:
        await db.close()
