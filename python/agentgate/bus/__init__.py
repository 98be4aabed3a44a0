"""The message bus: one small protocol, three backends side by side.

    bus = open_bus(BusSettings(), backend="memory")          # or "redis" / "kafka"
    await bus.start()
    await bus.publish("jobs", b"payload", key="agent-7")
    consumer = bus.consumer("jobs", "workers")
    for msg in await consumer.fetch(max_messages=100, wait=1.0):
        try:
            handle(msg)
        except Exception as e:
            await consumer.nack(msg, str(e))               # retried with backoff, then DLQ
        else:
            await consumer.ack(msg)
    await bus.close()

Semantics every backend keeps (the conformance suite in tests/bus/ checks them on all three):

- **Topics** with a fixed number of partitions (`partitions`, default 1); a message goes to the
  partition of its key (no key: round robin), so **messages of one key keep publish order**.
- **Consumer groups**: every group sees every message of the topic once (from the oldest
  retained one when the group is new); within a group a partition is served to one consumer at
  a time, so order per key holds across the group for first deliveries. A redelivered or
  retried message comes after later messages of its partition (that is what at-least-once
  with retries means everywhere).
- **At-least-once with explicit ack**: a fetched message is in flight until `ack`. One not
  acked within `visibility_timeout` is delivered again (Redis: pending entries list +
  XCLAIM, checked at least every third of the timeout; Kafka: uncommitted offsets go to the
  next owner of the partition, and an in-flight message older than the timeout is re-queued
  through the group's retry topic).
- **Retries with exponential backoff**: `nack(msg, error)` redelivers after
  `retry_base * 2**(attempt-1)` seconds, capped at `retry_max` (which may not exceed the
  visibility timeout).
- **Dead letters**: a message delivered `max_deliveries` times without an ack goes to the topic
  `<topic>.dlq` with headers `x-error`, `x-attempts`, `x-group`, `x-original-topic`,
  `x-original-id`; `Message.attempt` counts deliveries (1 on the first).
- **Idempotent publish**: two publishes with the same `dedupe_key` within `dedupe_window`
  deliver one message (Redis: atomic SET NX with the XADD; memory: a keyed window; Kafka: the
  idempotent producer covers its own retries, and the consumer drops a repeated key within the
  window, so the guarantee holds per consumer process).
- **Bounded buffers with backpressure**: at most `max_in_flight` unacked messages per consumer
  (fetch returns fewer until acks free room); the memory backend's publish waits while a topic
  holds `max_len` messages some group has not yet acked, instead of growing or dropping them;
  client-side publish buffers are bounded (`publish_buffer`).
- **Groups are kept until deleted**: `delete_group(topic, group)` forgets a group, its
  position and its per-group state (Redis: XGROUP DESTROY on each partition stream, leases,
  errors; Kafka: the consumer group with its offsets, and its retry topic); deleting a group
  that does not exist is a no-op. Close the group's consumers first.
  `abandoned_groups(topic, prefix, idle)` names the groups (among those called `prefix…`) that
  no consumer has fetched from for `idle` seconds, so a process can delete what a killed one
  left behind (Redis: no member renewed its membership, which a fetching member does within a
  third of the visibility timeout; memory: the last fetch; Kafka: groups left Empty, since the
  broker drops a dead member when its session times out, with no committed offsets on another
  topic). A group nobody fetched from yet is never named: it may belong to a consumer that is
  just starting.
- **Trimming and retention per topic**: messages older than `retention` or beyond `max_len` are
  removed (Redis: XADD MINID/MAXLEN; Kafka: the topic's retention.ms / retention.bytes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

__all__ = [
    "Bus",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "Consumer",
    "Message",
    "Outgoing",
    "PublishOne",
    "Start",
    "TopicSettings",
    "backoff",
    "dlq_topic",
    "open_bus",
    "partition_of",
    "settings_from_config",
]

Backend = Literal["memory", "redis", "kafka"]
Start = Literal["earliest", "latest"]


class BusError(Exception):
    """A bus operation that cannot be done (bad topic name, closed bus, …)."""


class BusUnavailable(BusError):
    """The broker did not answer within the operation's deadline."""


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """Per-topic behaviour (see the module docstring for what each one means)."""

    partitions: int = 1
    visibility_timeout: float = 30.0
    max_deliveries: int = 5
    retry_base: float = 0.1
    retry_max: float = 5.0
    retention: float = 7 * 86400.0
    max_len: int = 1_000_000
    dedupe_window: float = 3600.0

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be positive")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if not 0 <= self.retry_base <= self.retry_max <= self.visibility_timeout:
            raise ValueError("need 0 <= retry_base <= retry_max <= visibility_timeout")
        if self.max_len < 1 or self.retention <= 0:
            raise ValueError("max_len and retention must be positive")


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Defaults for every topic, overrides per topic name, and client-side bounds."""

    defaults: TopicSettings = TopicSettings()
    topics: Mapping[str, TopicSettings] = field(default_factory=dict)
    max_in_flight: int = 1000
    publish_buffer: int = 10_000
    publish_timeout: float = 30.0
    redis_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_session_timeout: float = 10.0
    kafka_replication_factor: int = 1
    prefix: str = "ag"

    def topic(self, name: str) -> TopicSettings:
        """The settings of `name` (its DLQ inherits the parent topic's)."""
        t = self.topics.get(name)
        if t is None and name.endswith(".dlq"):
            t = self.topics.get(name.removesuffix(".dlq"))
        return t or self.defaults

    def with_topic(self, name: str, **changes: object) -> BusSettings:
        """A copy with `name`'s settings changed."""
        t = replace(self.topic(name), **changes)  # type: ignore[arg-type]
        return replace(self, topics={**self.topics, name: t})


class Outgoing(NamedTuple):
    """A message to publish."""

    # A named tuple for the reason Message is one: callers build one per message published.

    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = MappingProxyType({})  # shared, read-only
    dedupe_key: str | None = None


class Message(NamedTuple):
    """A delivered message; `id` is opaque to callers and names it for ack/nack."""

    # A named tuple, not a frozen dataclass: backends build one per delivered message, and a
    # frozen dataclass's __init__ (object.__setattr__ per field) took 0.9-1.2 µs of the
    # ~9 µs a message costs raw redis-py to consume, against 0.2 µs for tuple.__new__.

    topic: str
    id: str
    value: bytes
    key: str | None
    headers: Mapping[str, str]
    timestamp: float
    partition: int
    attempt: int = 1


class Consumer(Protocol):
    """One member of a consumer group on one topic."""

    topic: str
    group: str
    name: str

    async def fetch(self, max_messages: int = 100, wait: float = 1.0) -> list[Message]:
        """Up to `max_messages` messages, waiting at most `wait` s for the first one."""
        ...

    async def ack(self, *messages: Message) -> None:
        """Mark messages done: they are never delivered to this group again."""
        ...

    async def nack(self, message: Message, error: str) -> None:
        """Give a message back: redelivered after backoff, or dead-lettered after the last try."""
        ...

    def in_flight(self) -> int:
        """Messages fetched and not yet acked or nacked."""
        ...

    async def join(self) -> None:
        """Join the group now (otherwise the first fetch does): a new group's start position
        is fixed here, so nothing published after `join` returns is missed."""
        ...

    async def close(self) -> None:
        """Leave the group; unacked messages go to another member after the timeout."""
        ...


class Bus(Protocol):
    """A connected bus backend."""

    @property
    def backend(self) -> Backend:
        """`memory`, `redis` or `kafka`."""
        ...

    settings: BusSettings

    async def start(self) -> None:
        """Connect (idempotent)."""
        ...

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        dedupe_key: str | None = None,
    ) -> str:
        """Append one message durably (acknowledged by the broker); returns its id."""
        ...

    async def publish_many(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        """Append a batch in one round trip where the backend allows; ids in order."""
        ...

    def consumer(
        self, topic: str, group: str, *, name: str | None = None, start: Start = "earliest"
    ) -> Consumer:
        """A new member of `group` on `topic`; a group that does not exist yet starts at the
        oldest retained message (`earliest`) or after the newest one (`latest`)."""
        ...

    async def delete_group(self, topic: str, group: str) -> None:
        """Forget a consumer group and its position; idempotent."""
        ...

    async def abandoned_groups(self, topic: str, prefix: str, idle: float) -> list[str]:
        """Groups of `topic` called `prefix…` that no consumer served for `idle` s (see the
        module docstring): left by consumers that died without closing."""
        ...

    async def close(self) -> None:
        """Flush and disconnect."""
        ...


class PublishOne:
    """`publish` for backends that implement `publish_many` (one message is a batch of one)."""

    async def publish_many(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        """Append a batch; ids in order."""
        raise NotImplementedError

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        dedupe_key: str | None = None,
    ) -> str:
        """Append one message durably; returns its id."""
        ids = await self.publish_many(
            topic, [Outgoing(value, key, dict(headers or {}), dedupe_key)]
        )
        return ids[0]


def backoff(settings: TopicSettings, attempt: int) -> float:
    """Delay before delivery `attempt + 1` after a nack of delivery `attempt`."""
    return float(min(settings.retry_max, settings.retry_base * 2 ** max(0, attempt - 1)))


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


def partition_of(key: str | None, partitions: int, counter: int) -> int:
    """Partition of a key (stable across processes: murmur2 like Kafka's default partitioner),
    or round robin by `counter` without a key."""
    if partitions == 1:
        return 0
    if key is None:
        return counter % partitions
    return (_murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _murmur2(data: bytes) -> int:
    # Kafka's partitioner hash, so one key maps to one partition on every backend.
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_topic(topic: str) -> str:
    """`topic` if it is a valid name (1-200 of letters, digits, `.`, `_`, `-`)."""
    if not 0 < len(topic) <= 200 or not set(topic) <= _TOPIC_CHARS:
        raise BusError(f"topic must be 1-200 of letters, digits, '.', '_', '-', got {topic!r}")
    return topic


def now() -> float:
    """Wall-clock seconds (message timestamps, retention)."""
    return time.time()


def settings_from_config(cfg: Any) -> tuple[BusSettings, Backend]:
    """BusSettings and backend from a `GatewayConfig` (`bus:` and `redis:` sections)."""
    bus = cfg.bus
    if bus is None:
        return BusSettings(redis_url=cfg.redis.url if cfg.redis else None), "memory"

    def topic(t: Any) -> TopicSettings:
        return TopicSettings(
            partitions=t.partitions,
            visibility_timeout=t.visibility_timeout,
            max_deliveries=t.max_deliveries,
            retry_base=t.retry_base,
            retry_max=t.retry_max,
            retention=t.retention,
            max_len=t.max_len,
            dedupe_window=t.dedupe_window,
        )

    kafka = bus.kafka
    settings = BusSettings(
        defaults=topic(bus.defaults),
        topics={name: topic(t) for name, t in bus.topics.items()},
        max_in_flight=bus.max_in_flight,
        publish_buffer=bus.publish_buffer,
        publish_timeout=bus.publish_timeout,
        redis_url=cfg.redis.url if cfg.redis else None,
        kafka_bootstrap=kafka.bootstrap_servers if kafka else None,
        kafka_session_timeout=kafka.session_timeout if kafka else 10.0,
        kafka_replication_factor=kafka.replication_factor if kafka else 1,
    )
    return settings, bus.backend


def open_bus(settings: BusSettings, backend: Backend = "memory") -> Bus:
    """A bus of the given backend (call `await bus.start()` before use)."""
    if backend == "memory":
        from agentgate.bus.memory import MemoryBus

        return MemoryBus(settings)
    if backend == "redis":
        from agentgate.bus.redis_streams import RedisStreamsBus

        if not settings.redis_url:
            raise BusError("the redis bus needs redis: {url: …} in the config")
        return RedisStreamsBus(settings)
    if backend == "kafka":
        from agentgate.bus.kafka import KafkaBus

        if not settings.kafka_bootstrap:
            raise BusError("the kafka bus needs bus.kafka.bootstrap_servers in the config")
        return KafkaBus(settings)
    raise BusError(f"unknown bus backend {backend!r}")
