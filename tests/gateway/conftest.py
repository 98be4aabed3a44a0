"""Fixtures: real upstream servers and a client session (the gateway process helpers live in
gateway_process.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from upstreams import Upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The main test upstream."""
    up = Upstream("main").start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def upstream2() -> Iterator[Upstream]:
    """A second upstream, for health checks and failover."""
    up = Upstream("second").start()
    yield up
    up.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for the test."""
    async with aiohttp.ClientSession() as s:
        yield s
