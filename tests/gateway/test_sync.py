"""Store → gateway sync end to end: a real `agentgate serve` on the same SQLite file.

Create an agent with the factory → requests route through the gateway; revoke the key → 401
within a second; delete the agent → 404 once drained (and the row is gone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_process import start_gateway, stop_gateway
from store_agents import OPERATOR, prepare
from upstreams import Upstream

from agentgate.config import parse_config
from agentgate.errors import NotFound
from agentgate.runtime.store_source import StoreSource, StoreState, merge_config
from agentgate.store import Store, open_store
from agentgate.tenancy import create_key, revoke_key

BASE = """
agents:
  file:
    endpoints: [{url: "http://127.0.0.1:9"}]
routes:
  - {id: file, match: {path_prefix: /file}, agent: file}
"""


@pytest.fixture(scope="module")
def up() -> Any:
    u = Upstream("synced").start()
    yield u
    u.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(None, tmp_path)
    yield s
    await s.close()


async def until(
    http: aiohttp.ClientSession, url: str, status: int, headers: dict[str, str], limit: float
) -> float:
    """Seconds until `url` answers `status` (fails after `limit`)."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        async with http.get(url, headers=headers) as r:
            if r.status == status:
                return time.monotonic() - start
        await asyncio.sleep(0.005)
    pytest.fail(f"{url} did not answer {status} within {limit}s")


async def test_create_route_revoke_delete(
    up: Upstream, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, scope, secret = await prepare(store, up.url)
    monkeypatch.setenv("AGENTGATE_DATA_DIR", str(tmp_path))
    gw = start_gateway(BASE, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            auth = {"X-API-Key": secret}
            url = f"{gw.url}/t/acme/agents/bot/hello"
            async with http.get(url, headers=auth) as r:
                assert r.status == 404
            await factory.create(scope, OPERATOR, "echo@^1", name="bot")
            took = await until(http, url, 200, auth, 2.0)
            assert took < 1.0
            async with http.get(url, headers=auth) as r:
                body = await r.json()
                assert body["path"] == "/hello" and r.headers["X-Upstream"] == "synced"
            async with http.get(url) as r:
                assert r.status == 401  # the template's route requires a key
            # the config file's own routes are still there
            async with http.get(f"{gw.url}/file/x") as r:
                assert r.status == 502

            keys = await scope.api_keys.list()
            await revoke_key(scope, keys[0].id)
            assert await until(http, url, 401, auth, 2.0) < 1.0

            _, secret2 = await create_key(scope, "client2", ["viewer"])
            auth = {"X-API-Key": secret2}
            await until(http, url, 200, auth, 2.0)
            await factory.delete(scope, OPERATOR, "bot", wait=True)
            assert await until(http, url, 404, auth, 2.0) < 1.0
            with pytest.raises(NotFound):
                await scope.agents.get("bot")
    finally:
        await factory.close()
        stop_gateway(gw)


async def test_delete_waits_for_in_flight(
    up: Upstream, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory, scope, secret = await prepare(store, up.url)
    monkeypatch.setenv("AGENTGATE_DATA_DIR", str(tmp_path))
    gw = start_gateway(BASE, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            auth = {"X-API-Key": secret}
            base = f"{gw.url}/t/acme/agents/bot"
            await factory.create(scope, OPERATOR, "echo@^1", name="bot")
            await until(http, f"{base}/x", 200, auth, 2.0)
            slow = asyncio.create_task(http.get(f"{base}/slow-first?delay=1", headers=auth))
            await asyncio.sleep(0.3)
            await factory.delete(scope, OPERATOR, "bot")
            await until(http, f"{base}/x", 404, auth, 2.0)
            # routes are gone but the slow request holds the row in `draining`
            assert (await scope.agents.get("bot")).state == "draining"
            r = await slow
            assert r.status == 200 and await r.text() == "late"
            for _ in range(200):
                try:
                    await scope.agents.get("bot")
                except NotFound:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("drained agent was not deleted")
    finally:
        await factory.close()
        stop_gateway(gw)


async def test_merge_keeps_file_parts_and_file_wins(store: Store) -> None:
    base = parse_config(
        {
            "agents": {"acme/bot": {"endpoints": [{"url": "http://127.0.0.1:1"}]}},
            "routes": [{"id": "r", "match": {"path_prefix": "/r"}, "agent": "acme/bot"}],
        }
    )
    factory, scope, _ = await prepare(store, "http://127.0.0.1:2")
    await factory.create(scope, OPERATOR, "echo@^1", name="bot")
    await factory.create(scope, OPERATOR, "echo@^1", name="other")
    src = StoreSource(store)
    assert await src.poll_once() is True
    assert await src.poll_once() is False  # nothing changed
    cfg = src.contribute(base)
    assert [e.url for e in cfg.agents["acme/bot"].endpoints] == ["http://127.0.0.1:1"]
    assert cfg.route_ids() == ["r", "acme/other/0"]
    assert len(cfg.auth.api_keys) == 1
    assert merge_config(base, StoreState()) == base
    await factory.delete(scope, OPERATOR, "other")
    assert await src.poll_once() is True
    cfg = src.contribute(base)
    assert cfg.route_ids() == ["r"] and "acme/other" in cfg.agents
    await factory.close()
