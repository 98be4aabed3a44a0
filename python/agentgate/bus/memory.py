"""The embedded bus: topics, groups and pending lists in this process (the default, one machine).

It follows the Redis Streams model (append-only partitions, a pending list per group, leases
per partition) so the three backends share one set of semantics; nothing survives a restart.
Publish applies backpressure: it waits while a partition holds `max_len` messages that some
group has not acked yet, so memory stays bounded even with a stalled consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

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
    now,
    partition_of,
)

__all__ = ["MemoryBus", "MemoryConsumer"]


@dataclass(slots=True)
class _Pending:
    msg: Message
    seq: int
    consumer: str
    deadline: float
    count: int
    error: str | None = None


@dataclass(slots=True)
class _GroupPartition:
    next_seq: int
    pending: OrderedDict[int, _Pending] = field(default_factory=OrderedDict)
    owner: str | None = None
    lease_until: float = 0.0

    def low(self) -> int:
        """The oldest sequence number this group still needs."""
        return min(self.next_seq, next(iter(self.pending), self.next_seq))


@dataclass(slots=True)
class _Partition:
    base: int = 0  # sequence number of entries[0]
    entries: deque[Message] = field(default_factory=deque)

    @property
    def end(self) -> int:
        return self.base + len(self.entries)


class _Topic:
    def __init__(self, name: str, settings: TopicSettings) -> None:
        self.name = name
        self.settings = settings
        self.partitions = [_Partition() for _ in range(settings.partitions)]
        self.groups: dict[str, list[_GroupPartition]] = {}
        self.fetched: dict[str, float] = {}  # group -> monotonic time of its last fetch
        self.dedupe: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.changed = asyncio.Condition()
        self.counter = itertools.count()

    def group(self, name: str, start: Start = "earliest") -> list[_GroupPartition]:
        g = self.groups.get(name)
        if g is None:
            at = [p.base if start == "earliest" else p.end for p in self.partitions]
            g = self.groups[name] = [_GroupPartition(n) for n in at]
        return g

    def backlog(self, p: int) -> int:
        part = self.partitions[p]
        if not self.groups:
            return 0
        return part.end - min(g[p].low() for g in self.groups.values())

    def trim(self, p: int) -> None:
        part = self.partitions[p]
        s = self.settings
        horizon = now() - s.retention
        keep_from = part.end - s.max_len
        if self.groups:
            keep_from = min(keep_from, min(g[p].low() for g in self.groups.values()))
        while part.entries and (part.base < keep_from or part.entries[0].timestamp < horizon):
            part.entries.popleft()
            part.base += 1
        for g in self.groups.values():
            gp = g[p]
            if gp.next_seq < part.base:
                gp.next_seq = part.base


class MemoryBus(PublishOne):
    """In-process bus (see the module docstring)."""

    backend: Literal["memory"] = "memory"

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._topics: dict[str, _Topic] = {}
        self._closed = False

    def _topic(self, name: str) -> _Topic:
        t = self._topics.get(name)
        if t is None:
            check_topic(name)
            t = self._topics[name] = _Topic(name, self.settings.topic(name))
        return t

    async def start(self) -> None:
        """Nothing to connect."""
        self._closed = False

    async def publish_many(self, topic: str, messages: Sequence[Outgoing]) -> list[str]:
        """Append messages in order."""
        if self._closed:
            raise BusError("bus is closed")
        t = self._topic(topic)
        out: list[str] = []
        deadline = time.monotonic() + self.settings.publish_timeout
        async with t.changed:
            for m in messages:
                if m.dedupe_key is not None:
                    seen = self._seen(t, m.dedupe_key)
                    if seen is not None:
                        out.append(seen)
                        continue
                p = partition_of(m.key, t.settings.partitions, next(t.counter))
                while t.backlog(p) >= t.settings.max_len:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BusUnavailable(
                            f"topic {topic!r} partition {p} is full ({t.settings.max_len}"
                            " unacked messages): consumers are not keeping up"
                        )
                    try:
                        async with asyncio.timeout(left):
                            await t.changed.wait()
                    except TimeoutError:
                        continue
                part = t.partitions[p]
                mid = f"{p}:{part.end}"
                part.entries.append(
                    Message(topic, mid, bytes(m.value), m.key, dict(m.headers), now(), p)
                )
                if m.dedupe_key is not None:
                    t.dedupe[m.dedupe_key] = (mid, time.monotonic() + t.settings.dedupe_window)
                t.trim(p)
                out.append(mid)
            t.changed.notify_all()
        return out

    def _seen(self, t: _Topic, key: str) -> str | None:
        mono = time.monotonic()
        while t.dedupe:
            k, (_, exp) = next(iter(t.dedupe.items()))
            if exp > mono:
                break
            del t.dedupe[k]
        hit = t.dedupe.get(key)
        return hit[0] if hit is not None else None

    def consumer(
        self, topic: str, group: str, *, name: str | None = None, start: Start = "earliest"
    ) -> MemoryConsumer:
        """A new member of `group` on `topic` (a new group starts at `start`)."""
        if self._closed:
            raise BusError("bus is closed")
        t = self._topic(topic)
        t.group(group, start)
        return MemoryConsumer(self, t, group, name or uuid.uuid4().hex[:12])

    async def delete_group(self, topic: str, group: str) -> None:
        """Forget `group` on `topic` (its position and pending messages); idempotent."""
        t = self._topics.get(topic)
        if t is None:
            return
        async with t.changed:
            t.fetched.pop(group, None)
            if t.groups.pop(group, None) is None:
                return
            # the group may have been what held messages back: trim, and wake blocked publishes
            for p in range(len(t.partitions)):
                t.trim(p)
            t.changed.notify_all()

    async def abandoned_groups(self, topic: str, prefix: str, idle: float) -> list[str]:
        """Groups called `prefix…` whose last fetch was `idle` s ago or more."""
        t = self._topics.get(topic)
        if t is None:
            return []
        since = time.monotonic() - idle
        return sorted(g for g, at in t.fetched.items() if g.startswith(prefix) and at <= since)

    async def _dead_letter(self, t: _Topic, group: str, pe: _Pending, error: str) -> None:
        headers = {
            **pe.msg.headers,
            "x-error": error[:2000],
            "x-attempts": str(pe.count),
            "x-group": group,
            "x-original-topic": t.name,
            "x-original-id": pe.msg.id,
        }
        await self.publish_many(dlq_topic(t.name), [Outgoing(pe.msg.value, pe.msg.key, headers)])

    async def close(self) -> None:
        """Drop everything (the embedded bus keeps nothing)."""
        self._closed = True
        self._topics.clear()


class MemoryConsumer:
    """A member of one group on one topic of a `MemoryBus`."""

    def __init__(self, bus: MemoryBus, topic: _Topic, group: str, name: str) -> None:
        self._bus = bus
        self._t = topic
        self.topic = topic.name
        self.group = group
        self.name = name
        self._mine: dict[str, _Pending] = {}
        self._closed = False
        topic.group(group)

    def in_flight(self) -> int:
        """Messages fetched and not yet acked or nacked."""
        return len(self._mine)

    async def join(self) -> None:
        """The group exists since `consumer()`: nothing to do."""

    def _take(self, max_messages: int) -> tuple[list[Message], list[_Pending]]:
        t = self._t
        s = t.settings
        mono = time.monotonic()
        g = t.group(self.group)
        t.fetched[self.group] = mono
        out: list[Message] = []
        dead: list[_Pending] = []
        room = min(max_messages, self._bus.settings.max_in_flight - len(self._mine))
        for p, gp in enumerate(g):
            if room <= 0:
                break
            if gp.owner not in (None, self.name) and gp.lease_until > mono:
                continue
            got = 0
            # redeliveries first: timed out or nacked messages whose backoff is over
            for seq, pe in list(gp.pending.items()):
                if room <= 0:
                    break
                if pe.deadline > mono:
                    continue
                if pe.count >= s.max_deliveries:
                    del gp.pending[seq]
                    self._mine.pop(pe.msg.id, None)
                    dead.append(pe)
                    continue
                pe.count += 1
                pe.consumer = self.name
                pe.deadline = mono + s.visibility_timeout
                gp.pending.move_to_end(seq)
                msg = _with_attempt(pe.msg, pe.count)
                pe.msg = msg
                self._mine[msg.id] = pe
                out.append(msg)
                room -= 1
                got += 1
            part = t.partitions[p]
            gp.next_seq = max(gp.next_seq, part.base)
            while room > 0 and gp.next_seq < part.end:
                msg = part.entries[gp.next_seq - part.base]
                pe = _Pending(msg, gp.next_seq, self.name, mono + s.visibility_timeout, 1)
                gp.pending[gp.next_seq] = pe
                self._mine[msg.id] = pe
                gp.next_seq += 1
                out.append(msg)
                room -= 1
                got += 1
            mine_here = got or any(pe.consumer == self.name for pe in gp.pending.values())
            if mine_here:
                gp.owner, gp.lease_until = self.name, mono + s.visibility_timeout
            elif gp.owner == self.name:
                gp.owner = None
        return out, dead

    def _next_due(self) -> float | None:
        due = [pe.deadline for gp in self._t.group(self.group) for pe in gp.pending.values()]
        leases = [gp.lease_until for gp in self._t.group(self.group) if gp.owner]
        soonest = min(due + leases, default=None)
        return soonest

    async def fetch(self, max_messages: int = 100, wait: float = 1.0) -> list[Message]:
        """Up to `max_messages` messages, waiting at most `wait` s for the first one."""
        if self._closed:
            raise BusError("consumer is closed")
        deadline = time.monotonic() + wait
        t = self._t
        while True:
            async with t.changed:
                out, dead = self._take(max_messages)
                if out or dead:
                    t.changed.notify_all()
                if not out and not dead:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return []
                    due = self._next_due()
                    if due is not None:
                        left = min(left, max(0.0, due - time.monotonic()) + 0.001)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(left):
                            await t.changed.wait()
                    continue
            for pe in dead:
                await self._bus._dead_letter(
                    t, self.group, pe, pe.error or "visibility timeout expired"
                )
            if out:
                return out

    def _release(self, msg: Message) -> _Pending | None:
        pe = self._mine.pop(msg.id, None)
        if pe is None:
            # acked after the timeout handed it to another member: still done for the group
            gp = self._t.group(self.group)[msg.partition]
            return gp.pending.get(int(msg.id.split(":", 1)[1]))
        return pe

    async def ack(self, *messages: Message) -> None:
        """Mark messages done for this group."""
        t = self._t
        async with t.changed:
            g = t.group(self.group)
            for m in messages:
                pe = self._release(m)
                if pe is not None:
                    g[m.partition].pending.pop(pe.seq, None)
                    t.trim(m.partition)
            t.changed.notify_all()

    async def nack(self, message: Message, error: str) -> None:
        """Redeliver after backoff, or dead-letter after the last delivery."""
        t = self._t
        async with t.changed:
            pe = self._release(message)
            if pe is None:
                return
            gp = t.group(self.group)[message.partition]
            if pe.count >= t.settings.max_deliveries:
                gp.pending.pop(pe.seq, None)
                dead = True
            else:
                pe.error = error
                pe.deadline = time.monotonic() + backoff(t.settings, pe.count)
                dead = False
            t.changed.notify_all()
        if dead:
            await self._bus._dead_letter(t, self.group, pe, error)
            async with t.changed:
                t.trim(message.partition)
                t.changed.notify_all()

    async def close(self) -> None:
        """Leave the group: leases go, unacked messages come back after their timeout."""
        self._closed = True
        for gp in self._t.group(self.group):
            if gp.owner == self.name:
                gp.owner = None
        self._mine.clear()


def _with_attempt(m: Message, attempt: int) -> Message:
    return Message(m.topic, m.id, m.value, m.key, m.headers, m.timestamp, m.partition, attempt)
