"""Gateways apply platform changes from the bus: two gateway hosts (each a core data plane with
its store source and its own Redis bus connection) on one store; a key revoked through the
control-plane API on a third connection is refused on both hosts within 1 s, although their
store polling is slowed to 30 s (so only the bus can have told them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from redis_ephemeral import RedisServer

from agentgate.api.app import create_api, standalone
from agentgate.bus import Bus, BusSettings, TopicSettings, open_bus
from agentgate.bus.changes import Change, ChangeFeed
from agentgate.cli_control import bootstrap
from agentgate.config import parse_config
from agentgate.gateway.dataplane import Gateway
from agentgate.runtime.store_source import StoreSource
from agentgate.security.services import Security
from agentgate.store import open_store
from agentgate.tenancy import create_key, create_tenant

sys.path.insert(0, str(Path(__file__).parent.parent / "gateway"))
from upstreams import Upstream

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def upstream() -> Any:
    up = Upstream("changes").start()
    yield up
    up.stop()


async def redis_bus(url: str) -> Bus:
    bus = open_bus(
        BusSettings(defaults=TopicSettings(visibility_timeout=5.0), redis_url=url), "redis"
    )
    await bus.start()
    return bus


class Host:
    """One gateway host: its data plane, store connection, bus connection and sync tasks."""

    def __init__(self, gw: Gateway, source: StoreSource, bus: Bus, tasks: list[Any]) -> None:
        self.gw, self.source, self.bus, self.tasks = gw, source, bus, tasks
        self.url = f"http://127.0.0.1:{gw.listen('127.0.0.1:0')}"

    @classmethod
    async def start(cls, base: Any, db: Path, redis_url: str, topic: str, name: str) -> Host:
        store = await open_store(None, db)
        source = StoreSource(store, interval=30.0)  # polling alone would take 30 s
        await source.load()
        gw = Gateway(base, sources=[source])
        bus = await redis_bus(redis_url)
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(source.follow(ChangeFeed(bus, topic), name)),
            loop.create_task(source.run(gw.install)),
        ]
        return cls(gw, source, bus, tasks)

    async def close(self) -> None:
        # each step bounded: a hang fails naming its step and where every task waited. The
        # sync tasks' step hung in 1 run in 10: redis-py had lost the follow task's
        # cancellation, which agentgate.cancellation now raises again
        for t in self.tasks:
            t.cancel()
        async with step("sync tasks end when cancelled"):
            await asyncio.gather(*self.tasks, return_exceptions=True)
        async with step("the data plane shuts down"):
            await self.gw.shutdown(1.0)
        async with step("the bus closes"):
            await self.bus.close()
        async with step("the store closes"):
            await self.source.store.close()


@contextlib.asynccontextmanager
async def step(what: str, within: float = 15.0) -> AsyncIterator[None]:
    """Fail with `what`, and where each task waited, if the block takes over `within` s."""
    waits: list[str] = []
    # taken just before the deadline: once the timeout cancels the block, the tasks move on
    snapshot = asyncio.get_running_loop().call_later(
        max(0.0, within - 0.1), lambda: waits.append(_await_chains())
    )
    try:
        async with asyncio.timeout(within):
            yield
    except TimeoutError:
        pytest.fail(f"hung: {what} (> {within} s); tasks were waiting here:\n{''.join(waits)}")
    finally:
        snapshot.cancel()


def _await_chains() -> str:
    """Each pending task and the chain of coroutines it is suspended in, innermost last."""
    out = []
    for task in asyncio.all_tasks():
        out.append(f"{task.get_name()} (cancel requests: {task.cancelling()})\n")
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                code = frame.f_code
                out.append(f"  {code.co_filename}:{frame.f_lineno} {code.co_name}\n")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return "".join(out)


@pytest.fixture
async def control(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[dict[str, Any]]:
    store = await open_store(None, tmp_path)
    bus = await redis_bus(redis_server.url)
    topic = f"changes-{os.urandom(4).hex()}"
    await bootstrap(store)
    t = await create_tenant(store, "acme")
    _, admin = await create_key(store.scoped(t.id), "ops", ["admin"])
    api = create_api(
        store,
        changes=ChangeFeed(bus, topic),
        security=Security(store, env={"AGENTGATE_MASTER_KEY": os.urandom(32).hex()}),
    )
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=standalone(api)),
        base_url="http://api",
        headers={"Authorization": f"Bearer {admin}"},
    )
    try:
        yield {"store": store, "tenant": t, "client": client, "topic": topic, "bus": bus}
    finally:
        await client.aclose()
        await api.state.context.factory.close()
        await bus.close()
        await store.close()


async def test_revoked_key_refused_on_every_host_within_a_second(
    control: dict[str, Any], upstream: Upstream, tmp_path: Path, redis_server: RedisServer
) -> None:
    store, t, client = control["store"], control["tenant"], control["client"]
    key, secret = await create_key(store.scoped(t.id), "caller", ["viewer"])
    base = parse_config(
        {
            "agents": {"up": {"endpoints": [{"url": upstream.url}]}},
            "routes": [
                {"id": "up", "match": {"path_prefix": "/"}, "agent": "up", "auth": "required"}
            ],
        }
    )
    hosts = []
    for i in range(2):
        async with step(f"host{i} starts"):
            hosts.append(
                await Host.start(base, tmp_path, redis_server.url, control["topic"], f"host{i}")
            )
    try:
        async with aiohttp.ClientSession() as http:

            async def status(h: Host) -> int:
                async with (
                    step(f"a request to {h.url}", 10.0),
                    http.get(f"{h.url}/echo", headers={"X-API-Key": secret}) as r,
                ):
                    return r.status

            assert [await status(h) for h in hosts] == [200, 200]
            async with step("the key is revoked through the API"):
                r = await client.delete(f"/api/keys/{key.id}")
            assert r.status_code == 200, r.text
            revoked = time.monotonic()
            took: list[float] = []
            for h in hosts:
                while await status(h) != 401:
                    assert time.monotonic() - revoked < 5.0, "the revocation never arrived"
                    await asyncio.sleep(0.005)
                took.append(time.monotonic() - revoked)
            assert max(took) < 1.0, took
            # the change came by the bus: no host polled the store since it started
            assert all(h.source.loads >= 2 for h in hosts)
    finally:
        for h in hosts:
            await h.close()


async def test_alert_and_config_changes_are_published(control: dict[str, Any]) -> None:
    """`alert.<state>` from the alert manager's hook, `config.reload` as serve publishes it."""
    feed = ChangeFeed(control["bus"], control["topic"])
    sub = await feed.subscribe("watcher")
    hook = feed.alert_hook()
    assert await hook("t1", "a1", "firing", "value 3.0")
    assert await feed.publish(Change.of("config.reload", None, "config", {"file": "/x.yaml"}))
    got = [await asyncio.wait_for(sub.__anext__(), 20) for _ in range(2)]
    assert [(c.action, c.tenant_id, c.target) for c in got] == [
        ("alert.firing", "t1", "alert:a1"),
        ("config.reload", None, "config"),
    ]
    assert got[0].data == {"detail": "value 3.0"}
    await sub.close()
