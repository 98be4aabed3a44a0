"""Faults the bus survives: a consumer killed mid-batch, a broker restarted while producers
publish with acks=all, a poison message, a slow consumer, and the group a killed consumer left."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from agentgate.bus import Bus, BusUnavailable, Message, Outgoing, dlq_topic

sys.path.insert(0, str(Path(__file__).parent))
from consumer_proc import killed_consumer

pytestmark = pytest.mark.timeout(120)


async def consume_all(bus: Bus, topic: str, group: str, n: int, within: float = 30.0):
    """Values of `n` distinct messages (acked), and every delivery seen on the way."""
    c = bus.consumer(topic, group)
    seen: list[Message] = []
    values: set[str] = set()
    deadline = time.monotonic() + within
    while len(values) < n and time.monotonic() < deadline:
        got = await c.fetch(max_messages=500, wait=0.5)
        if got:
            await c.ack(*got)
        seen += got
        values |= {m.value.decode() for m in got}
    await c.close()
    return values, seen


async def test_consumer_killed_mid_batch_loses_nothing(
    make_bus, backend: str, bus_connection: dict[str, Any], topic: str
) -> None:
    bus: Bus = await make_bus(visibility_timeout=2.0)
    n = 100
    await bus.publish_many(topic, [Outgoing(b"%d" % i) for i in range(n)])
    if backend == "memory":
        # no process of its own: the consumer is abandoned mid-batch, never acking or closing
        doomed = bus.consumer(topic, "g", name="doomed")
        batch = await doomed.fetch(max_messages=30, wait=5)
        await doomed.ack(*batch[:10])
        fetched = [m.value.decode() for m in batch]
        del doomed
    else:
        fetched = await killed_consumer(backend, bus_connection, topic, "g", 30, 10)
    acked, unacked = set(fetched[:10]), set(fetched[10:])
    assert len(acked) == 10 and len(unacked) == 20
    values, seen = await consume_all(bus, topic, "g", n - 10)
    # count check: everything not acked by the dead consumer arrives, nothing is missing
    assert values | acked == {str(i) for i in range(n)}
    assert unacked <= values
    redelivered = [m for m in seen if m.value.decode() in unacked]
    assert redelivered
    if backend != "kafka":  # Kafka restarts counting at the partition's next owner
        assert all(m.attempt == 2 for m in redelivered)


async def test_broker_restart_while_publishing_loses_nothing_acked(
    make_bus, backend: str, request: pytest.FixtureRequest, topic: str
) -> None:
    if backend == "memory":
        pytest.skip("the embedded bus has no broker to restart")
    server = request.getfixturevalue("redis_server" if backend == "redis" else "kafka_broker")
    bus: Bus = await make_bus(publish_timeout=90.0)
    acked: list[int] = []
    failed: list[str] = []
    n = 400
    started = asyncio.Event()

    async def producer() -> None:
        for i in range(n):
            try:
                await bus.publish(topic, b"%d" % i, key=str(i % 7))
            except BusUnavailable as e:
                failed.append(str(e))
            else:
                acked.append(i)
            if len(acked) == 50:
                started.set()

    task = asyncio.create_task(producer())
    await asyncio.wait_for(started.wait(), 60)
    await asyncio.to_thread(server.restart)
    await asyncio.wait_for(task, 100)
    assert failed == []  # producers retried through the restart
    assert len(acked) == n
    values, _ = await consume_all(bus, topic, "after-restart", n, within=60)
    assert {int(v) for v in values} >= set(acked)


async def test_poison_message_reaches_dlq_with_error(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(max_deliveries=4)
    await bus.publish_many(
        topic, [Outgoing(b'{"n": %d}' % i) for i in range(20)] + [Outgoing(b"{not json")]
    )
    c = bus.consumer(topic, "workers")
    done: list[int] = []
    deadline = time.monotonic() + 30
    while len(done) < 20 and time.monotonic() < deadline:
        for m in await c.fetch(max_messages=10, wait=0.3):
            try:
                done.append(json.loads(m.value)["n"])
            except json.JSONDecodeError as e:
                await c.nack(m, f"{type(e).__name__}: {e}")
            else:
                await c.ack(m)
    # keep the group going until the poison message has used up its deliveries
    d = bus.consumer(dlq_topic(topic), "ops")
    dead: list[Message] = []
    while not dead and time.monotonic() < deadline:
        for m in await c.fetch(max_messages=10, wait=0.2):
            await c.nack(m, "JSONDecodeError: still not json")
        dead = await d.fetch(wait=0.2)
    assert sorted(done) == list(range(20))
    [m] = dead
    assert m.value == b"{not json"
    assert m.headers["x-attempts"] == "4"
    assert m.headers["x-error"].startswith("JSONDecodeError")
    await d.ack(m)


async def test_slow_consumer_backpressure_bounded_memory(
    make_bus, backend: str, topic: str
) -> None:
    size, backlog = 1024, 20_000
    if backend == "memory":
        # the publisher waits (then gives up) instead of buffering past max_len
        bus: Bus = await make_bus(max_len=100, publish_timeout=0.5)
        c = bus.consumer(topic, "slow")
        await bus.publish_many(topic, [Outgoing(b"x" * size) for _ in range(100)])
        with pytest.raises(BusUnavailable, match="full"):
            await bus.publish(topic, b"one too many")
        blocked = asyncio.create_task(bus.publish(topic, b"waits for room"))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        got = await c.fetch(max_messages=10, wait=1)
        await c.ack(*got)
        await asyncio.wait_for(blocked, 5)
        return
    bus = await make_bus(max_in_flight=50)
    for i in range(0, backlog, 1000):
        await bus.publish_many(
            topic, [Outgoing(b"%08d" % j + b"x" * size) for j in range(i, i + 1000)]
        )
    c = bus.consumer(topic, "slow")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        consumed = 0
        max_in_flight = 0
        while consumed < 2000:
            got = await c.fetch(max_messages=100, wait=2)
            max_in_flight = max(max_in_flight, c.in_flight())
            await asyncio.sleep(0.001 * len(got))  # slow work
            await c.ack(*got)
            consumed += len(got)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert max_in_flight <= 50
    # the 20 MB backlog stays in the broker: the client holds a bounded window of it
    assert peak < 8 * 2**20, f"consumer grew by {peak} bytes"
    await c.close()


async def test_groups_a_killed_consumer_left_are_named_for_deletion(
    make_bus, backend: str, bus_connection: dict[str, Any], topic: str
) -> None:
    bus: Bus = await make_bus(visibility_timeout=2.0)
    await bus.publish_many(topic, [Outgoing(b"%d" % i) for i in range(4)])
    if backend == "memory":
        # no process of its own: the consumer is abandoned, never closing
        doomed = bus.consumer(topic, "sweep-dead")
        await doomed.ack(*await doomed.fetch(max_messages=1, wait=5))
        del doomed
    else:
        await killed_consumer(backend, bus_connection, topic, "sweep-dead", 1, 1)
    live = bus.consumer(topic, "sweep-live")
    other = bus.consumer(topic, "other-dead")  # stops too, but is not called sweep-…
    assert await other.fetch(max_messages=1, wait=5)
    served = asyncio.Event()

    async def serve() -> None:
        while True:
            await live.ack(*await live.fetch(max_messages=1, wait=0.2))
            served.set()

    task = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(served.wait(), 30)
        # idle 3 s (above the 2 s visibility timeout, as Redis needs); Kafka: once the dead
        # member's 1 s session has timed out
        deadline = time.monotonic() + 30
        while "sweep-dead" not in (named := await bus.abandoned_groups(topic, "sweep-", 3.0)):
            assert "sweep-live" not in named
            assert time.monotonic() < deadline, f"the dead group was never named: {named}"
            await asyncio.sleep(0.2)
        assert named == ["sweep-dead"]
        await bus.delete_group(topic, "sweep-dead")
        assert await bus.abandoned_groups(topic, "sweep-", 3.0) == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await live.close()
        await other.close()
