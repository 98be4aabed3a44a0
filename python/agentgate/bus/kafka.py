"""The bus on Apache Kafka (aiokafka): throughput and retention across hosts.

- The producer is idempotent, which makes it `acks=all` (aiokafka's defaults are `acks=1`
  and no idempotence): a publish returns once every in-sync replica has it, and the broker
  drops the producer's own retries, so a broker restart mid-publish loses and doubles nothing.
  `publish_many` fills its own record batch per partition (`create_batch` / `send_batch`):
  the producer stamps it with its id, epoch and sequence like the batches `send` fills.
- Topics are created on first use with the topic's partition count, `retention.ms` from
  `retention`, and `kafka_replication_factor` (1 by default: set 3 on a real cluster). Kafka
  counts retention in time and bytes, not messages: `max_len` does not apply here.
- Consumer groups are Kafka groups. Offsets are committed only up to the first message not yet
  acked, so a member that dies hands everything unacked to the partition's next owner.
- Retries go through the group's retry topic `<topic>.retry.<group>` (one partition): a nack,
  or a message in flight for longer than the visibility timeout, is re-published there with
  `x-attempt` and `x-due`, and its original offset counts as done. A retry message that is
  not due yet pauses the retry partition until it is (retries wait at most `retry_max` past
  their due time behind an earlier one).
- Delivery counts live in the retry messages; a member killed before it acks hands its
  messages over with the count they had (1 for first deliveries).
- Dedupe keys travel in the `x-dedupe` header: the producer skips a key it published within
  the window and the consumer drops a repeat within the window (per process).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupIdNotFound,
    KafkaError,
    NonEmptyGroup,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata

from agentgate.bus import (
    BusError,
    BusSettings,
    BusUnavailable,
    Message,
    Outgoing,
    PublishOne,
    Start,
    TopicSettings,
    backoff,
    check_topic,
    dlq_topic,
    partition_of,
)

__all__ = ["KafkaBus", "KafkaConsumer", "retry_topic"]

log = logging.getLogger("agentgate.bus.kafka")

_INTERNAL = ("x-attempt", "x-due", "x-dedupe")


def retry_topic(topic: str, group: str) -> str:
    """The retry topic of one group on one topic."""
    return f"{topic}.retry.{group}"


class _Window:
    """Keys seen within a time window (bounded: oldest first out)."""

    def __init__(self, seconds: float, cap: int = 100_000) -> None:
        self.seconds = seconds
        self.cap = cap
        self._d: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str) -> str | None:
        t = time.monotonic()
        while self._d:
            k, (_, exp) = next(iter(self._d.items()))
            if exp > t and len(self._d) <= self.cap:
                break
            del self._d[k]
        hit = self._d.get(key)
        return None if hit is None else hit[0]

    def put(self, key: str, value: str) -> None:
        self._d[key] = (value, time.monotonic() + self.seconds)


OWN_BATCH_MIN = 64
"""Records in one publish from which it fills record batches of its own; fewer share the
producer's batches with concurrent publishes (see `KafkaBus._publish_batches`)."""


class KafkaBus(PublishOne):
    """Bus on Kafka (see the module docstring)."""

    backend: Literal["kafka"] = "kafka"

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._bootstrap = settings.kafka_bootstrap or ""
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._topic_lock = asyncio.Lock()
        self._counter = itertools.count()
        self._dedupe: dict[str, _Window] = {}
        self._buffer = asyncio.Semaphore(max(1, settings.publish_buffer))
        self._consumers: list[KafkaConsumer] = []

    async def start(self) -> None:
        """Connect the producer and the admin client."""
        if self._producer is not None:
            return
        timeout_ms = int(self.settings.publish_timeout * 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=1,
            max_batch_size=256 * 1024,
            request_timeout_ms=min(timeout_ms, 30_000),
            # a publish may take this long in all, broker restarts included
            metadata_max_age_ms=30_000,
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        try:
            await producer.start()
            await admin.start()
        except KafkaError as e:
            await producer.stop()
            await admin.close()
            raise BusUnavailable(f"kafka: cannot connect to {self._bootstrap}: {e}") from None
        self._producer, self._admin = producer, admin

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer."""
        if self._producer is None:
            raise BusError("bus not started")
        return self._producer

    async def ensure_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create `topic` with its settings unless it exists."""
        if topic in self._topics:
            return
        async with self._topic_lock:
            if topic in self._topics or self._admin is None:
                return
            s = self.settings.topic(topic)
            new = NewTopic(
                topic,
                num_partitions=partitions or s.partitions,
                replication_factor=self.settings.kafka_replication_factor,
                topic_configs={"retention.ms": str(int(s.retention * 1000))},
            )
            try:
                res = await self._admin.create_topics([new])
            except TopicAlreadyExistsError:
                pass
            else:
                for _, code, *_rest in getattr(res, "topic_errors", []):
                    if code not in (0, TopicAlreadyExistsError.errno):
                        raise BusError(f"kafka: cannot create topic {topic!r}: error {code}")
            self._topics.add(topic)

    def _window(self, topic: str) -> _Window:
        w = self._dedupe.get(topic)
        if w is None:
            w = self._dedupe[topic] = _Window(self.settings.topic(topic).dedupe_window)
        return w

    async def publish_many(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        """Append a batch (one record batch per partition, acked as a whole); ids in order."""
        check_topic(topic)
        await self.ensure_topic(topic)
        s = self.settings.topic(topic)
        window = self._window(topic)
        out: list[str | None] = [None] * len(messages)
        same: dict[int, int] = {}  # index -> earlier index with the same dedupe key
        batch_keys: dict[str, int] = {}
        # (index, partition, key, value, headers) of each record to send
        records: list[tuple[int, int, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        try:
            async with self._buffer:
                for i, m in enumerate(messages):
                    if m.dedupe_key is None:
                        headers = [(k, v.encode()) for k, v in m.headers.items()]
                    else:
                        seen = window.get(m.dedupe_key)
                        if seen is not None:
                            out[i] = seen
                            continue
                        if m.dedupe_key in batch_keys:
                            same[i] = batch_keys[m.dedupe_key]
                            continue
                        batch_keys[m.dedupe_key] = i
                        h = {**m.headers, "x-dedupe": m.dedupe_key}
                        headers = [(k, v.encode()) for k, v in h.items()]
                    p = partition_of(m.key, s.partitions, next(self._counter))
                    key = m.key.encode() if m.key is not None else None
                    records.append((i, p, key, m.value, headers))
                if len(records) >= OWN_BATCH_MIN:
                    await self._publish_batches(topic, records, out, window, messages)
                else:
                    await self._publish_records(topic, records, out, window, messages)
        except (KafkaError, TimeoutError) as e:
            raise BusUnavailable(f"kafka: publish to {topic!r} failed: {e!r}") from None
        for i, j in same.items():
            out[i] = out[j]
        return [x or "" for x in out]

    async def _publish_records(
        self,
        topic: str,
        records: Sequence[tuple[int, int, bytes | None, bytes, list[tuple[str, bytes]]]],
        out: list[str | None],
        window: _Window,
        messages: Sequence[Outgoing],
    ) -> None:
        """One `send` per record: they join the producer's open batches, shared with every
        concurrent publish (a batch of our own would wait for the partition's last one)."""
        futs = []
        for _, p, key, value, headers in records:
            futs.append(
                await self.producer.send(topic, value, key=key, partition=p, headers=headers)
            )
        async with asyncio.timeout(self.settings.publish_timeout):
            done = await asyncio.gather(*futs)
        for (i, *_), md in zip(records, done, strict=True):
            self._record_id(out, window, messages, i, f"{md.partition}:{md.offset}")

    async def _publish_batches(
        self,
        topic: str,
        records: Sequence[tuple[int, int, bytes | None, bytes, list[tuple[str, bytes]]]],
        out: list[str | None],
        window: _Window,
        messages: Sequence[Outgoing],
    ) -> None:
        """Our own record batch per partition (create_batch / send_batch).

        One `send` per record made a coroutine, a future and a gather slot per message, 35 % of
        the time of a 1,000-message publish. The batch gets the idempotent producer's id, epoch
        and sequence when the sender drains it, like the batches `send` fills, and aiokafka sends
        one batch per partition at a time, so order and dedupe hold. But aiokafka queues a new
        batch only once the partition's previous one has drained, so concurrent small publishes
        on this path would go one per round trip (the 1k/s latency run of bench-bus timed out):
        they take `_publish_records` instead (`OWN_BATCH_MIN`)."""
        producer = self.producer
        batches: dict[int, tuple[Any, list[int]]] = {}  # partition -> (open batch, indexes)
        sent: list[tuple[Any, int, list[int]]] = []  # (future, partition, indexes)
        for i, p, key, value, headers in records:
            open_ = batches.get(p)
            if open_ is None:
                open_ = batches[p] = (producer.create_batch(), [])
            if open_[0].append(key=key, value=value, timestamp=None, headers=headers):
                open_[1].append(i)
                continue
            # full (max_batch_size): send it, start the next one
            sent.append((await self._send(open_[0], topic, p), p, open_[1]))
            open_ = batches[p] = (producer.create_batch(), [i])
            # the first record of a batch always fits
            open_[0].append(key=key, value=value, timestamp=None, headers=headers)
        for p, (batch, idx) in batches.items():
            if idx:
                sent.append((await self._send(batch, topic, p), p, idx))
        async with asyncio.timeout(self.settings.publish_timeout):
            done = await asyncio.gather(*(f for f, _, _ in sent))
        for (_, p, idx), md in zip(sent, done, strict=True):
            # records of a batch take consecutive offsets from the batch's base offset
            for j, i in enumerate(idx):
                self._record_id(out, window, messages, i, f"{p}:{md.offset + j}")

    @staticmethod
    def _record_id(
        out: list[str | None], window: _Window, messages: Sequence[Outgoing], i: int, mid: str
    ) -> None:
        out[i] = mid
        dk = messages[i].dedupe_key
        if dk is not None:
            window.put(dk, mid)

    async def _send(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        # closed first: sent without waiting for linger_ms, and no `send` elsewhere in the
        # process can append its record to it
        batch.close()
        fut: asyncio.Future[Any] = await self.producer.send_batch(batch, topic, partition=partition)
        return fut

    def consumer(
        self, topic: str, group: str, *, name: str | None = None, start: Start = "earliest"
    ) -> KafkaConsumer:
        """A new member of `group` on `topic` (a new group starts at `start`)."""
        check_topic(topic)
        c = KafkaConsumer(self, topic, group, name or uuid.uuid4().hex[:12], start)
        self._consumers.append(c)
        return c

    async def delete_group(self, topic: str, group: str) -> None:
        """Delete the consumer group `group` (its committed offsets) and its retry topic of
        `topic`; an unknown group or topic is not an error."""
        check_topic(topic)
        admin = self._admin
        if admin is None:
            raise BusError("bus not started")
        # A member that just left may still count until the coordinator has processed its
        # LeaveGroup, one that died until its session times out: NON_EMPTY_GROUP until then.
        deadline = time.monotonic() + self.settings.kafka_session_timeout + 5.0
        delay = 0.05
        while True:
            try:
                code = await self._delete_group_once(admin, group)
            except KafkaError as e:
                if not e.retriable:
                    raise BusUnavailable(f"kafka: cannot delete group {group!r}: {e!r}") from None
                code = -1
            if code in (0, GroupIdNotFound.errno):
                break
            if code != -1 and code != NonEmptyGroup.errno and not for_code(code).retriable:
                raise BusError(f"kafka: cannot delete group {group!r}: {for_code(code).__name__}")
            if time.monotonic() + delay > deadline:
                raise BusUnavailable(
                    f"kafka: cannot delete group {group!r}: {for_code(code).__name__}"
                    if code != -1
                    else f"kafka: cannot delete group {group!r}: coordinator unavailable"
                )
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)
        # the retry topic belongs to this group alone
        retry = retry_topic(topic, group)
        try:
            res = await admin.delete_topics([retry])
        except KafkaError as e:
            raise BusUnavailable(f"kafka: cannot delete topic {retry!r}: {e!r}") from None
        for _, err in getattr(res, "topic_error_codes", []):
            if err not in (0, UnknownTopicOrPartitionError.errno):
                raise BusError(f"kafka: cannot delete topic {retry!r}: {for_code(err).__name__}")
        self._topics.discard(retry)
        self._dedupe.pop(retry, None)

    async def abandoned_groups(self, topic: str, prefix: str, idle: float) -> list[str]:
        """Groups called `prefix…` in state Empty (every member left or was dropped when its
        session timed out; Kafka keeps no time of that, so `idle` is the session timeout)
        with no committed offsets on topics other than `topic` and their retry topic."""
        check_topic(topic)
        admin = self._admin
        if admin is None:
            raise BusError("bus not started")
        try:
            names = sorted({str(g[0]) for g in await admin.list_consumer_groups()})
            names = [g for g in names if g.startswith(prefix)]
            if not names:
                return []
            out = []
            for name in names:
                # one group per request: aiokafka 0.14 fails to decode Kafka 4.1's answer about
                # two groups at once (a member of one, none of the other), then drops the link
                [resp] = await admin.describe_consumer_groups([name])
                [g] = resp.to_object()["groups"]
                if g["error_code"] != 0 or g["state"] != "Empty":
                    continue
                offsets = await admin.list_consumer_group_offsets(name)
                if {tp.topic for tp in offsets} <= {topic, retry_topic(topic, name)}:
                    out.append(name)
        except KafkaError as e:
            raise BusUnavailable(f"kafka: cannot list groups: {e!r}") from None
        return out

    @staticmethod
    async def _delete_group_once(admin: AIOKafkaAdminClient, group: str) -> int:
        # aiokafka 0.14 has no delete_consumer_groups: DeleteGroups sent to the coordinator
        node = await admin.find_coordinator(group)
        res = await admin._send_request(DeleteGroupsRequest([group]), node)
        for gid, code in res.results:
            if gid == group:
                return int(code)
        return 0

    async def close(self) -> None:
        """Close consumers, flush and stop the producer."""
        for c in list(self._consumers):
            await c.close()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


@dataclass(slots=True)
class _Part:
    """What this member delivered from one topic-partition and what is done."""

    pending: dict[int, float] = field(default_factory=dict)  # offset -> deadline
    next: int = -1  # offset after the last delivered
    committed: int = -1


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class KafkaConsumer:
    """A member of a Kafka consumer group (see the module docstring)."""

    def __init__(self, bus: KafkaBus, topic: str, group: str, name: str, start: Start) -> None:
        self._bus = bus
        self._from: Start = start
        self.topic = topic
        self.group = group
        self.name = name
        self._s: TopicSettings = bus.settings.topic(topic)
        self._retry = retry_topic(topic, group)
        self._c: AIOKafkaConsumer | None = None
        self._parts: dict[TopicPartition, _Part] = {}
        self._msgs: dict[str, tuple[TopicPartition, int, Message]] = {}
        self._paused: dict[TopicPartition, float] = {}
        self._seen = _Window(self._s.dedupe_window)
        self._dirty: set[TopicPartition] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False
        self.session_timeout_ms = int(bus.settings.kafka_session_timeout * 1000)

    def in_flight(self) -> int:
        """Messages fetched and not yet acked or nacked."""
        return len(self._msgs)

    async def _start(self) -> AIOKafkaConsumer:
        if self._c is not None:
            return self._c
        await self._bus.ensure_topic(self.topic)
        await self._bus.ensure_topic(self._retry, partitions=1)
        await self._bus.ensure_topic(dlq_topic(self.topic))
        c = AIOKafkaConsumer(
            bootstrap_servers=self._bus._bootstrap,
            group_id=self.group,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset=self._from,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 5),
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
            # the retry partition is usually empty: a long broker-side wait on it would hold
            # back the main partition's next batch (3x slower consume measured at 500 ms)
            fetch_max_wait_ms=20,
        )
        c.subscribe([self.topic, self._retry], listener=_Revoked(self))
        try:
            await c.start()
        except KafkaError as e:
            await c.stop()
            raise BusUnavailable(f"kafka: consumer cannot start: {e}") from None
        self._c = c
        return c

    async def join(self, within: float = 30.0) -> None:
        """Start, wait for a partition assignment and fix the positions."""
        c = await self._start()
        deadline = time.monotonic() + within
        while not c.assignment():
            if time.monotonic() > deadline:
                raise BusUnavailable(f"kafka: no partitions assigned to {self.name} in time")
            await asyncio.sleep(0.02)
        for tp in c.assignment():
            await c.position(tp)

    async def _revoked(self, tps: list[TopicPartition]) -> None:
        # commit what is done, then forget: the next owner starts at the committed offset
        await self._commit(tps)
        for tp in tps:
            self._parts.pop(tp, None)
            self._paused.pop(tp, None)
        gone = set(tps)
        for mid in [m for m, (tp, _, _) in self._msgs.items() if tp in gone]:
            del self._msgs[mid]

    def _message(self, rec: Any) -> Message | None:
        h = {k: bytes(v).decode(errors="replace") for k, v in (rec.headers or ())}
        retry = rec.topic == self._retry
        attempt = int(h.get("x-attempt", "1")) if retry else 1
        dk = h.get("x-dedupe")
        if dk is not None and not retry:
            if self._seen.get(dk) is not None:
                return None
            self._seen.put(dk, "1")
        prefix = "r" if retry else ""
        msg = Message(
            topic=self.topic,
            id=f"{prefix}{rec.partition}:{rec.offset}",
            value=bytes(rec.value or b""),
            key=rec.key.decode() if rec.key is not None else None,
            headers={k: v for k, v in h.items() if k not in _INTERNAL},
            timestamp=rec.timestamp / 1000,
            partition=rec.partition,
            attempt=attempt,
        )
        return msg

    async def fetch(self, max_messages: int = 100, wait: float = 1.0) -> list[Message]:
        """Up to `max_messages` messages, waiting at most `wait` s for the first one."""
        if self._closed:
            raise BusError("consumer is closed")
        c = await self._start()
        deadline = time.monotonic() + wait
        while True:
            await self._expire()
            self._resume_due()
            room = min(max_messages, self._bus.settings.max_in_flight - len(self._msgs))
            if room <= 0:
                return []
            left = max(0.0, deadline - time.monotonic())
            wake = [*self._paused.values(), *self._deadlines()]
            if wake:
                left = min(left, max(0.0, min(wake) - time.monotonic()))
            try:
                batches = await c.getmany(timeout_ms=int(left * 1000), max_records=room)
            except KafkaError as e:
                raise BusUnavailable(f"kafka: fetch failed: {e}") from None
            out: list[Message] = []
            now_wall = time.time()
            mono = time.monotonic()
            auto_done: list[tuple[TopicPartition, int]] = []
            for tp, recs in batches.items():
                part = self._parts.setdefault(tp, _Part())
                for rec in recs:
                    if tp.topic == self._retry:
                        due = _due(rec)
                        if due > now_wall:
                            c.pause(tp)
                            c.seek(tp, rec.offset)
                            self._paused[tp] = mono + (due - now_wall)
                            break
                    part.next = rec.offset + 1
                    msg = self._message(rec)
                    if msg is None:
                        part.pending[rec.offset] = 0.0
                        auto_done.append((tp, rec.offset))
                        continue
                    part.pending[rec.offset] = mono + self._s.visibility_timeout
                    self._msgs[msg.id] = (tp, rec.offset, msg)
                    out.append(msg)
            if auto_done:
                await self._done(auto_done)
            if out or time.monotonic() >= deadline:
                return out

    def _deadlines(self) -> list[float]:
        return [d for part in self._parts.values() for d in part.pending.values() if d > 0]

    def _resume_due(self) -> None:
        mono = time.monotonic()
        for tp, at in list(self._paused.items()):
            if at <= mono and self._c is not None:
                self._c.resume(tp)
                del self._paused[tp]

    async def _expire(self) -> None:
        """Re-queue messages in flight past the visibility timeout."""
        mono = time.monotonic()
        late = []
        for tp, off, msg in self._msgs.values():
            part = self._parts.get(tp)
            if part is not None and part.pending.get(off, mono + 1) <= mono:
                late.append(msg)
        for msg in late:
            await self.nack(msg, "visibility timeout expired", delay=0.0)

    async def _done(self, items: list[tuple[TopicPartition, int]]) -> None:
        for tp, off in items:
            part = self._parts.get(tp)
            if part is not None:
                part.pending.pop(off, None)
                self._dirty.add(tp)
        # commits go out in the background, coalesced: an ack does not wait for the broker
        # (a crash before the commit only redelivers, which at-least-once allows)
        if self._dirty and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._dirty:
            tps = list(self._dirty)
            self._dirty.clear()
            try:
                await self._commit(tps)
            except Exception:
                log.exception("kafka: committing offsets of %s failed", self.group)

    async def _commit(self, tps: list[TopicPartition]) -> None:
        if self._c is None:
            return
        offsets = {}
        for tp in tps:
            part = self._parts.get(tp)
            if part is None or part.next < 0:
                continue
            upto = min(part.pending, default=part.next)
            if upto > part.committed:
                offsets[tp] = OffsetAndMetadata(upto, "")
                part.committed = upto
        if offsets:
            try:
                await self._c.commit(offsets)
            except KafkaError:
                # lost the partition meanwhile: its next owner redelivers from the last commit
                for tp in offsets:
                    self._parts.pop(tp, None)

    async def ack(self, *messages: Message) -> None:
        """Mark messages done; commits offsets up to the first one still in flight."""
        items = []
        for m in messages:
            rec = self._msgs.pop(m.id, None)
            if rec is not None:
                items.append((rec[0], rec[1]))
        if items:
            await self._done(items)

    async def nack(self, message: Message, error: str, *, delay: float | None = None) -> None:
        """Re-publish to the retry topic after backoff, or to the DLQ after the last try."""
        rec = self._msgs.get(message.id)
        if rec is None:
            return
        s = self._s
        headers = dict(message.headers)
        if message.attempt >= s.max_deliveries:
            target = dlq_topic(self.topic)
            headers |= {
                "x-error": error[:2000],
                "x-attempts": str(message.attempt),
                "x-group": self.group,
                "x-original-topic": self.topic,
                "x-original-id": message.id,
            }
        else:
            target = self._retry
            wait = backoff(s, message.attempt) if delay is None else delay
            headers |= {
                "x-attempt": str(message.attempt + 1),
                "x-due": repr(time.time() + wait),
                "x-error": error[:2000],
            }
        await self._bus.publish_many(target, [Outgoing(message.value, message.key, headers)])
        self._msgs.pop(message.id, None)
        await self._done([(rec[0], rec[1])])

    async def close(self) -> None:
        """Commit what is done and leave the group."""
        if self._closed:
            return
        self._closed = True
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if self._c is not None:
            await self._commit(list(self._parts))
            try:
                await self._c.stop()
            finally:
                self._c = None
        if self in self._bus._consumers:
            self._bus._consumers.remove(self)


def _due(rec: Any) -> float:
    for k, v in rec.headers or ():
        if k == "x-due":
            try:
                return float(bytes(v).decode())
            except ValueError:
                return 0.0
    return 0.0
