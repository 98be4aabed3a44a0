"""Platform changes on the bus: published by the control plane, seen by every subscriber (one
per gateway host), on each backend; a revoked key reaches every subscriber."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentgate.api.app import create_api, standalone
from agentgate.bus import Bus, BusSettings, TopicSettings, open_bus
from agentgate.bus.changes import Change, ChangeFeed, Subscription
from agentgate.cli_control import bootstrap
from agentgate.security.services import Security
from agentgate.store import open_store
from agentgate.tenancy import create_key, create_tenant

sys.path.insert(0, str(Path(__file__).parent))
from consumer_proc import killed_consumer

pytestmark = pytest.mark.timeout(90)


async def next_change(sub: Subscription, within: float = 20.0) -> Change:
    return await asyncio.wait_for(sub.__anext__(), within)


async def test_changes_reach_every_subscriber_in_order(make_bus, topic: str) -> None:
    bus: Bus = await make_bus()
    feed = ChangeFeed(bus, topic)
    old = Change.of("key.revoke", "t1", "key:before")
    assert await feed.publish(old)  # before anyone subscribed: not replayed
    subs = [await feed.subscribe(f"host{i}") for i in range(2)]
    sent = [Change.of("template.publish", "t1", f"template:x@1.{i}.0") for i in range(5)]
    for c in sent:
        assert await feed.publish(c)
    for sub in subs:
        got = [await next_change(sub) for _ in sent]
        assert [c.id for c in got] == [c.id for c in sent]
        assert got[0].kind == "template" and got[0].target == "template:x@1.0.0"
        await sub.close()


async def test_malformed_change_is_dead_lettered_not_delivered(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(max_deliveries=1)
    feed = ChangeFeed(bus, topic)
    sub = await feed.subscribe("host")
    await bus.publish(topic, b"not a change")
    good = Change.of("config.reload", None, "config")
    await feed.publish(good)
    assert (await next_change(sub)).id == good.id
    await sub.close()


async def test_closed_subscription_deletes_its_group(make_bus, group_exists, topic: str) -> None:
    bus: Bus = await make_bus()
    feed = ChangeFeed(bus, topic)
    # one subscriber name twice (two hosts with the same `host:pid`): still two groups
    subs = [await feed.subscribe("host") for _ in range(2)]
    groups = [sub.consumer.group for sub in subs]
    assert groups[0] != groups[1]
    for g in groups:
        assert await group_exists(bus, topic, g)
    first = Change.of("key.revoke", "t1", "key:1")
    assert await feed.publish(first)
    assert (await next_change(subs[0])).id == first.id
    await subs[0].close()
    assert not await group_exists(bus, topic, groups[0])
    # the other subscription's group is untouched and still gets every change
    assert await group_exists(bus, topic, groups[1])
    second = Change.of("key.revoke", "t1", "key:2")
    assert await feed.publish(second)
    assert [(await next_change(subs[1])).id for _ in range(2)] == [first.id, second.id]
    await subs[1].close()
    assert not await group_exists(bus, topic, groups[1])


async def test_a_new_subscription_deletes_groups_killed_processes_left(
    make_bus, backend: str, bus_connection: dict[str, Any], group_exists, topic: str
) -> None:
    bus: Bus = await make_bus(visibility_timeout=2.0)
    feed = ChangeFeed(bus, topic, abandoned_after=3.0)
    live = await feed.subscribe("live")
    assert await feed.publish(Change.of("key.revoke", "t1", "key:0"))
    # a change-feed group whose process was killed (memory: abandoned in this process)
    dead = "changes-dead-0123456789ab"
    if backend == "memory":
        doomed = bus.consumer(topic, dead)
        await doomed.ack(*await doomed.fetch(max_messages=1, wait=5))
        del doomed
    else:
        await killed_consumer(backend, bus_connection, topic, dead, 1, 1)
    served = asyncio.Event()

    async def follow() -> None:
        async for _ in live:
            served.set()

    task = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(served.wait(), 30)
        deadline = asyncio.get_running_loop().time() + 30
        while dead not in (named := await bus.abandoned_groups(topic, "changes-", 3.0)):
            assert asyncio.get_running_loop().time() < deadline, named
            await asyncio.sleep(0.2)
        assert named == [dead]  # the live subscription renews its membership
        fresh = await feed.subscribe("fresh")
        assert not await group_exists(bus, topic, dead)
        assert await group_exists(bus, topic, live.consumer.group)
        assert await group_exists(bus, topic, fresh.consumer.group)
        await fresh.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await live.close()


async def test_close_logs_a_failed_group_deletion(
    make_bus, backend: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    if backend == "memory":
        pytest.skip("the embedded bus has no connection to lose")
    bus: Bus = await make_bus()
    sub = await ChangeFeed(bus, topic).subscribe("host")
    await bus.close()  # the broker is out of reach for the deletion
    with caplog.at_level(logging.WARNING, logger="agentgate.bus.changes"):
        await sub.close()  # does not raise
    [rec] = [r for r in caplog.records if r.name == "agentgate.bus.changes"]
    assert sub.consumer.group in rec.getMessage() and "not deleted" in rec.getMessage()


async def test_key_revocation_reaches_every_host(
    backend: str, bus_connection: dict[str, Any], tmp_path: Path
) -> None:
    """The control plane revokes a key through the API; subscribers on two separate bus
    connections (two gateway hosts) each get `key.revoke` naming it."""
    topic = f"changes-{os.urandom(4).hex()}"

    def settings() -> BusSettings:
        return BusSettings(defaults=TopicSettings(visibility_timeout=5.0), **bus_connection)

    # one bus per "host"; the memory bus lives in one process, so the hosts share it there
    control = open_bus(settings(), backend)  # type: ignore[arg-type]
    await control.start()
    hosts: list[Bus] = []
    for _ in range(2):
        if backend == "memory":
            hosts.append(control)
        else:
            b = open_bus(settings(), backend)  # type: ignore[arg-type]
            await b.start()
            hosts.append(b)
    store = await open_store(None, tmp_path)
    try:
        await bootstrap(store)
        t = await create_tenant(store, "acme")
        key, _ = await create_key(store.scoped(t.id), "admin", ["admin"])
        _, secret = await create_key(store.scoped(t.id), "ops", ["admin"])
        subs = [await ChangeFeed(h, topic).subscribe(f"host{i}") for i, h in enumerate(hosts)]
        api = create_api(
            store,
            changes=ChangeFeed(control, topic),
            security=Security(store, env={"AGENTGATE_MASTER_KEY": os.urandom(32).hex()}),
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=standalone(api)),
            base_url="http://api",
            headers={"Authorization": f"Bearer {secret}"},
        )
        async with client:
            r = await client.delete(f"/api/keys/{key.id}")
            assert r.status_code == 200, r.text
        for sub in subs:
            change = await next_change(sub)
            assert (change.action, change.tenant_id, change.target) == (
                "key.revoke",
                t.id,
                f"key:{key.id}",
            )
            await sub.close()
        await api.state.context.factory.close()
    finally:
        await store.close()
        for b in {id(b): b for b in [control, *hosts]}.values():
            await b.close()
