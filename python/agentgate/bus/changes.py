"""Platform events on the bus: what the control plane changed, for every gateway to apply.

    feed = ChangeFeed(bus)
    await feed.publish(Change.of("key.revoke", tenant_id, "key:3f2a…"))   # control plane
    sub = await feed.subscribe(worker_id)                                 # each gateway worker
    async for change in sub:
        if change.kind == "key": ...

Kinds: `agent` (lifecycle), `template` (publish, tags, yank, deprecate, rollback), `key`,
`publisher_key`, `policy`, `tenant`, `secret` (names only), `trust_root`, `config` and `alert`
(state changes; published by their owners through the same `publish`). One topic,
`platform.changes`, partitioned by tenant so one tenant's changes keep their order.

`subscribe` gives every subscription its own consumer group starting after the newest change:
each worker sees every change from the moment it subscribed (it loads the current state from
the store first, then applies changes). `Subscription.close` deletes that group, so gateway
restarts leave no groups behind on a long-lived broker. A process killed before it closes
leaves its group: each new subscription deletes the change-feed groups no member has served
for `abandoned_after` seconds (10 minutes; `Bus.abandoned_groups`), so they last until the
next gateway starts. Delivery is at least once, so handlers must be idempotent (reloading a
key set is). Publishing is best effort on purpose: the store stays the source of truth and workers
still poll it as the fallback, so a bus outage delays changes by one poll instead of failing
the control-plane operation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentgate.bus import Bus, BusError, Consumer, Message

__all__ = ["CHANGES_TOPIC", "Change", "ChangeFeed", "Subscription"]

CHANGES_TOPIC = "platform.changes"
log = logging.getLogger("agentgate.bus.changes")
# seconds Subscription.close waits for its group's deletion (Kafka: until the coordinator has
# processed the member's LeaveGroup, normally well under a second)
DELETE_GROUP_WITHIN = 10.0
# seconds without a member before a change-feed group counts as left by a killed process: far
# above the visibility timeout a live member renews its membership within, and above any
# plausible stall of a live gateway's event loop
ABANDONED_AFTER = 600.0
# every subscription's group is called this, then the subscriber's name
GROUP_PREFIX = "changes-"


@dataclass(frozen=True, slots=True)
class Change:
    """One control-plane change: `action` is `<kind>.<verb>` (e.g. `key.revoke`)."""

    action: str
    tenant_id: str | None
    target: str
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0
    id: str = ""

    @property
    def kind(self) -> str:
        """What changed: the part of `action` before the dot."""
        return self.action.split(".", 1)[0]

    @classmethod
    def of(
        cls,
        action: str,
        tenant_id: str | None,
        target: str,
        data: Mapping[str, Any] | None = None,
    ) -> Change:
        """A new change stamped with the time and a fresh id."""
        return cls(action, tenant_id, target, dict(data or {}), time.time(), uuid.uuid4().hex)

    def encode(self) -> bytes:
        """Wire form (JSON)."""
        return orjson.dumps(
            {
                "id": self.id,
                "action": self.action,
                "tenant_id": self.tenant_id,
                "target": self.target,
                "data": dict(self.data),
                "at": self.at,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Change:
        """Parse the wire form; ValueError when it is not a change."""
        try:
            d = orjson.loads(raw)
            return cls(
                str(d["action"]),
                d.get("tenant_id"),
                str(d["target"]),
                dict(d.get("data") or {}),
                float(d.get("at", 0.0)),
                str(d.get("id", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a platform change: {e}") from None


class ChangeFeed:
    """Publish and subscribe to platform changes on one bus (see the module docstring)."""

    def __init__(
        self, bus: Bus, topic: str = CHANGES_TOPIC, *, abandoned_after: float = ABANDONED_AFTER
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.abandoned_after = abandoned_after

    async def publish(self, change: Change) -> bool:
        """Publish; False (logged) when the bus failed: the store-polling fallback covers it."""
        try:
            await self.bus.publish(
                self.topic, change.encode(), key=change.tenant_id or "-", dedupe_key=change.id
            )
        except (BusError, OSError) as e:
            log.warning("change %s not published on the bus: %s", change.action, e)
            return False
        return True

    def alert_hook(self) -> Callable[[str, str, str, str], Awaitable[bool]]:
        """For `AlertManager.on_change`: each alert state change as `alert.<state>`."""

        async def publish(tenant_id: str, alert_id: str, state: str, detail: str) -> bool:
            return await self.publish(
                Change.of(f"alert.{state}", tenant_id, f"alert:{alert_id}", {"detail": detail})
            )

        return publish

    async def subscribe(
        self, subscriber: str | None = None, *, kinds: Collection[str] | None = None
    ) -> Subscription:
        """A subscription to every change published after this returns (see module doc)."""
        # random even with a subscriber name: close deletes the group, which must not take
        # down another subscription that was given the same name (two hosts' `host:pid`)
        suffix = uuid.uuid4().hex[:12]
        group = f"{GROUP_PREFIX}{subscriber}-{suffix}" if subscriber else f"{GROUP_PREFIX}{suffix}"
        consumer = self.bus.consumer(self.topic, group, start="latest")
        try:
            await consumer.join()
        except Exception:
            # join may have created the group on some partitions before it failed
            await Subscription(self.bus, consumer, kinds).close()
            raise
        await self.delete_abandoned()
        return Subscription(self.bus, consumer, kinds)

    async def delete_abandoned(self) -> list[str]:
        """Delete the change-feed groups of killed processes (see the module docstring); the
        names deleted. Never raises: a leftover group costs little, a failed start more."""
        deleted: list[str] = []
        try:
            async with asyncio.timeout(DELETE_GROUP_WITHIN):
                for g in await self.bus.abandoned_groups(
                    self.topic, GROUP_PREFIX, self.abandoned_after
                ):
                    await self.bus.delete_group(self.topic, g)
                    deleted.append(g)
        except Exception as e:
            # the exception's type and text name the broker error, never a URL or credential
            log.warning(
                "abandoned change feed groups on %s not deleted: %s: %s",
                self.topic,
                type(e).__name__,
                e,
            )
        if deleted:
            log.info("deleted %d abandoned change feed groups: %s", len(deleted), deleted)
        return deleted


class Subscription:
    """An async iterator of changes; each is acked when the caller asks for the next one (so
    a change whose handler raised comes again after the visibility timeout)."""

    def __init__(self, bus: Bus, consumer: Consumer, kinds: Collection[str] | None) -> None:
        self.bus = bus
        self.consumer = consumer
        self.kinds = None if kinds is None else frozenset(kinds)
        self._batch: list[Message] = []
        self._last: Message | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Change:
        c = self.consumer
        while True:
            if self._last is not None:
                await c.ack(self._last)
                self._last = None
            while not self._batch:
                self._batch = await c.fetch(max_messages=100, wait=1.0)
            m = self._batch.pop(0)
            try:
                change = Change.decode(m.value)
            except ValueError as e:
                await c.nack(m, str(e))
                continue
            self._last = m
            if self.kinds is None or change.kind in self.kinds:
                return change

    async def close(self) -> None:
        """Leave the group and delete it (it is this subscription's own); never raises."""
        c = self.consumer
        try:
            await c.close()
        except Exception as e:  # still try the deletion: the group is ours either way
            log.warning("change feed consumer %s not closed: %s: %s", c.group, type(e).__name__, e)
        try:
            # bounded: a backend retries an unreachable broker for up to its publish timeout,
            # and a gateway shutting down while the bus is down should not wait that long
            async with asyncio.timeout(DELETE_GROUP_WITHIN):
                await self.bus.delete_group(c.topic, c.group)
        except Exception as e:  # a leftover group costs little; a failing close would cost more
            # the exception's type and text name the broker error, never a URL or credential
            log.warning(
                "change feed group %s on %s not deleted: %s: %s",
                c.group,
                c.topic,
                type(e).__name__,
                e,
            )
