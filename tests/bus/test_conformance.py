"""The bus semantics of `agentgate.bus`, run unchanged against memory, Redis Streams and Kafka."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentgate.bus import Bus, BusError, Consumer, Message, Outgoing, dlq_topic

pytestmark = pytest.mark.timeout(60)


async def drain(c: Consumer, n: int, *, ack: bool = True, within: float = 20.0) -> list[Message]:
    """Fetch until `n` messages came (or `within` s pass), acking them."""
    out: list[Message] = []
    deadline = time.monotonic() + within
    while len(out) < n and time.monotonic() < deadline:
        got = await c.fetch(max_messages=n - len(out), wait=0.5)
        if ack and got:
            await c.ack(*got)
        out += got
    return out


async def test_publish_consume_roundtrip(make_bus, topic: str) -> None:
    bus: Bus = await make_bus()
    t0 = time.time()
    mid = await bus.publish(topic, b"\x00hello\xff", key="k1", headers={"a": "b"})
    assert isinstance(mid, str) and mid
    c = bus.consumer(topic, "g")
    [m] = await drain(c, 1)
    assert (m.topic, m.value, m.key, dict(m.headers), m.attempt) == (
        topic,
        b"\x00hello\xff",
        "k1",
        {"a": "b"},
        1,
    )
    assert t0 - 5 <= m.timestamp <= time.time() + 5
    assert await c.fetch(wait=0.2) == []
    await c.close()


async def test_publish_many_keeps_order_and_ids(make_bus, topic: str) -> None:
    bus: Bus = await make_bus()
    ids = await bus.publish_many(topic, [Outgoing(str(i).encode()) for i in range(200)])
    assert len(ids) == len(set(ids)) == 200
    c = bus.consumer(topic, "g")
    got = await drain(c, 200)
    assert [m.value for m in got] == [str(i).encode() for i in range(200)]
    await c.close()


async def test_publish_many_larger_than_one_batch(make_bus, topic: str) -> None:
    # 1,500 × 400 B: more than one Kafka record batch (max_batch_size 256 KiB) per partition
    bus: Bus = await make_bus(partitions=2)
    keys = ["k0", "k3", "k1"]  # partitions 1, 0, 1: ~420 KB on partition 1, ~210 KB on 0
    out = [
        Outgoing(b"%s-%05d-" % (keys[i % 3].encode(), i) + b"x" * 380, key=keys[i % 3])
        for i in range(1500)
    ]
    out[7] = out[7]._replace(headers={"h": "7"}, dedupe_key="only-once")
    ids = await bus.publish_many(topic, out)
    assert len(ids) == len(set(ids)) == 1500
    c = bus.consumer(topic, "g")
    got = await drain(c, 1500, within=40.0)
    # every id names the message it was returned for; order per key kept
    assert {m.id: m.value for m in got} == {i: o.value for i, o in zip(ids, out, strict=True)}
    assert dict(next(m for m in got if m.id == ids[7]).headers) == {"h": "7"}
    for k in keys:
        assert [m.value for m in got if m.key == k] == [o.value for o in out if o.key == k]
    await c.close()


async def test_order_per_key_across_a_group(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(partitions=4)
    keys = [f"key-{i}" for i in range(6)]
    log: list[tuple[str, int]] = []
    total = 6 * 30

    async def member(name: str) -> None:
        c = bus.consumer(topic, "g", name=name)
        deadline = time.monotonic() + 30
        while len({(k, s) for k, s in log}) < total and time.monotonic() < deadline:
            batch = await c.fetch(max_messages=7, wait=0.3)
            for m in batch:
                log.append((m.key or "", int(m.value)))
                await asyncio.sleep(0)  # let the other member interleave
            if batch:
                await c.ack(*batch)
        await c.close()

    members = [asyncio.create_task(member(n)) for n in ("a", "b")]
    await bus.publish_many(
        topic, [Outgoing(str(seq).encode(), key=k) for seq in range(30) for k in keys]
    )
    await asyncio.gather(*members)
    # every message at least once; first deliveries of one key in publish order
    assert {(k, s) for k, s in log} == {(k, s) for k in keys for s in range(30)}
    first: dict[str, list[int]] = {}
    seen: set[tuple[str, int]] = set()
    for k, s in log:
        if (k, s) not in seen:
            seen.add((k, s))
            first.setdefault(k, []).append(s)
    for k in keys:
        assert first[k] == list(range(30)), k


async def test_every_group_sees_everything_members_share(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(partitions=2)
    await bus.publish_many(topic, [Outgoing(str(i).encode(), key=str(i)) for i in range(40)])
    a = bus.consumer(topic, "one")
    b1, b2 = bus.consumer(topic, "two", name="b1"), bus.consumer(topic, "two", name="b2")
    got_a = await drain(a, 40)
    assert sorted(int(m.value) for m in got_a) == list(range(40))
    got_b: list[Message] = []
    deadline = time.monotonic() + 20
    while len({m.value for m in got_b}) < 40 and time.monotonic() < deadline:
        for c in (b1, b2):
            batch = await c.fetch(max_messages=10, wait=0.2)
            await c.ack(*batch)
            got_b += batch
    assert {int(m.value) for m in got_b} == set(range(40))
    for c in (a, b1, b2):
        await c.close()


async def test_unacked_is_redelivered_after_visibility_timeout(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(visibility_timeout=1.0, retry_max=0.5)
    await bus.publish(topic, b"x")
    c = bus.consumer(topic, "g")
    [m] = await drain(c, 1, ack=False)
    assert m.attempt == 1 and c.in_flight() == 1
    # not before the timeout …
    assert await c.fetch(wait=0.3) == []
    # … but after it, with the delivery counted
    [again] = await drain(c, 1, ack=False)
    assert again.value == b"x" and again.attempt == 2
    await c.ack(again)
    assert await c.fetch(wait=1.5) == []
    await c.close()


async def test_nack_retries_with_backoff(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(retry_base=1.0, retry_max=1.0, visibility_timeout=5.0)
    await bus.publish(topic, b"job", headers={"h": "1"})
    c = bus.consumer(topic, "g")
    [m] = await drain(c, 1, ack=False)
    await c.nack(m, "boom")
    assert c.in_flight() == 0
    assert await c.fetch(wait=0.3) == []  # still backing off
    [again] = await drain(c, 1, ack=False)
    assert (again.value, again.attempt, again.headers.get("h")) == (b"job", 2, "1")
    await c.ack(again)
    await c.close()


async def test_dead_letter_after_max_deliveries(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(max_deliveries=3)
    await bus.publish(topic, b"poison", key="p")
    await bus.publish(topic, b"fine", key="f")
    c = bus.consumer(topic, "g")
    attempts = []
    ok = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(attempts) < 3 or not ok):
        for m in await c.fetch(wait=0.3):
            if m.value == b"poison":
                attempts.append(m.attempt)
                await c.nack(m, f"ValueError: cannot parse (try {m.attempt})")
            else:
                ok.append(m)
                await c.ack(m)
    assert attempts == [1, 2, 3]
    assert [m.value for m in ok] == [b"fine"]
    d = bus.consumer(dlq_topic(topic), "ops")
    [dead] = await drain(d, 1)
    assert dead.value == b"poison" and dead.key == "p"
    assert dead.headers["x-error"] == "ValueError: cannot parse (try 3)"
    assert dead.headers["x-attempts"] == "3"
    assert dead.headers["x-original-topic"] == topic
    assert dead.headers["x-group"] == "g"
    assert await c.fetch(wait=0.5) == []
    await c.close()
    await d.close()


async def test_timeouts_count_towards_dead_letter(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(max_deliveries=2, visibility_timeout=0.5, retry_max=0.5)
    await bus.publish(topic, b"slow")
    c = bus.consumer(topic, "g")
    seen = await drain(c, 2, ack=False, within=20)
    assert [m.attempt for m in seen] == [1, 2]
    # the group's next fetch after the second timeout moves it to the DLQ instead
    assert await c.fetch(wait=1.5) == []
    d = bus.consumer(dlq_topic(topic), "ops")
    [dead] = await drain(d, 1)
    assert dead.value == b"slow" and "visibility timeout" in dead.headers["x-error"]
    await c.close()
    await d.close()


async def test_dedupe_key_publishes_once(make_bus, topic: str) -> None:
    bus: Bus = await make_bus()
    a = await bus.publish(topic, b"1", dedupe_key="order-42")
    b = await bus.publish(topic, b"1 again", dedupe_key="order-42")
    [c_id, d_id] = await bus.publish_many(
        topic, [Outgoing(b"2", dedupe_key="order-43"), Outgoing(b"2", dedupe_key="order-43")]
    )
    assert a == b and c_id == d_id
    c = bus.consumer(topic, "g")
    got = await drain(c, 2)
    assert sorted(m.value for m in got) == [b"1", b"2"]
    assert await c.fetch(wait=0.3) == []
    await c.close()


async def test_in_flight_is_bounded(make_bus, topic: str) -> None:
    bus: Bus = await make_bus(max_in_flight=5, visibility_timeout=30.0)
    await bus.publish_many(topic, [Outgoing(b"%d" % i) for i in range(20)])
    c = bus.consumer(topic, "g")
    first = await drain(c, 5, ack=False)
    assert len(first) == 5 and c.in_flight() == 5
    assert await c.fetch(wait=0.2) == []
    await c.ack(*first[:2])
    more = await drain(c, 2, ack=False, within=10)
    assert len(more) == 2 and c.in_flight() == 5
    await c.close()


async def test_trimmed_to_max_len(make_bus, backend: str, topic: str) -> None:
    if backend == "kafka":
        pytest.skip("Kafka retains by time and bytes (retention.ms), not by message count")
    bus: Bus = await make_bus(max_len=100)
    for i in range(0, 1000, 100):
        await bus.publish_many(topic, [Outgoing(b"%d" % j) for j in range(i, i + 100)])
    c = bus.consumer(topic, "late")
    got = await drain(c, 1000, within=2)
    values = [int(m.value) for m in got]
    # Redis trims approximately (whole stream nodes): at least max_len stay, not much more
    assert 100 <= len(values) <= 300
    assert values == list(range(1000 - len(values), 1000))
    await c.close()


async def test_bad_topic_name_is_refused(make_bus) -> None:
    bus: Bus = await make_bus()
    with pytest.raises(BusError, match="topic must be"):
        await bus.publish("no spaces", b"x")
    with pytest.raises(BusError, match="topic must be"):
        bus.consumer("a/b", "g")


async def test_deleted_group_is_gone(make_bus, group_exists, topic: str) -> None:
    bus: Bus = await make_bus(partitions=2)
    await bus.publish_many(topic, [Outgoing(b"%d" % i) for i in range(4)])
    c = bus.consumer(topic, "g")
    assert len(await drain(c, 4)) == 4
    await c.close()
    # published past the group's position: a group that survived would deliver these
    await bus.publish_many(topic, [Outgoing(b"old-%d" % i) for i in range(4)])
    assert await group_exists(bus, topic, "g")
    await bus.delete_group(topic, "g")
    assert not await group_exists(bus, topic, "g")
    # the same name again is a new group: `latest` starts after the newest message
    again = bus.consumer(topic, "g", start="latest")
    await again.join()
    await bus.publish_many(topic, [Outgoing(b"new-%d" % i) for i in range(4)])
    got = await drain(again, 4)
    assert sorted(m.value for m in got) == [b"new-%d" % i for i in range(4)]
    assert await again.fetch(wait=0.3) == []
    await again.close()


async def test_delete_group_is_idempotent_and_spares_other_groups(
    make_bus, group_exists, topic: str
) -> None:
    bus: Bus = await make_bus(partitions=2)
    await bus.delete_group(topic, "never")  # neither the topic nor the group exist
    await bus.publish(topic, b"1")
    await bus.delete_group(topic, "never")  # the topic exists, the group does not
    gone, kept = bus.consumer(topic, "gone"), bus.consumer(topic, "kept")
    for c in (gone, kept):
        assert [m.value for m in await drain(c, 1)] == [b"1"]
        await c.close()
    await bus.delete_group(topic, "gone")
    await bus.delete_group(topic, "gone")
    assert not await group_exists(bus, topic, "gone")
    assert await group_exists(bus, topic, "kept")
    # the other group keeps its position: the next message only
    await bus.publish(topic, b"2")
    c = bus.consumer(topic, "kept")
    assert [m.value for m in await drain(c, 1)] == [b"2"]
    assert await c.fetch(wait=0.3) == []
    await c.close()


async def test_a_fetching_task_ends_when_cancelled_at_any_moment(make_bus, topic: str) -> None:
    # Each round cancels a task that fetches in a loop after k more turns of the event loop,
    # k sweeping every await point of a few fetches. redis-py lost the cancellation when it
    # came as a command was being sent, and the task fetched on for ever
    # (agentgate.cancellation).
    bus: Bus = await make_bus()
    await bus.publish(topic, b"x")
    c = bus.consumer(topic, "g")
    await c.fetch(wait=5.0)  # the group joined before the sweep starts

    async def fetching() -> None:
        while True:
            await c.fetch(max_messages=10, wait=0.002)

    for k in range(120):
        task = asyncio.create_task(fetching())
        for _ in range(k):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5.0)
        if not done:
            for _ in range(20):  # stop it (each cancel may be lost the same way) and fail
                task.cancel()
                if (await asyncio.wait({task}, timeout=0.5))[0]:
                    break
            pytest.fail(f"a cancellation {k} loop turns into fetching was lost")
        assert task.cancelled(), task
    await c.close()
