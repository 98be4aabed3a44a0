"""Delivery of queued notifications: retries with exponential backoff, nothing lost or doubled.

Rows go pending → sent (or dead after `alerts.max_attempts`). A row is marked sent in its own
transaction right after the receiver accepted it, so a restart resends only a notification whose
send was cut off between the receiver's answer and that commit; such a resend carries the same
idempotency key (webhook `Idempotency-Key` header, mail `Message-ID`; Alertmanager deduplicates
by labels by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from agentgate.cancellation import raise_if_cancelled
from agentgate.observe.alerts.channels import ChannelConfig, DeliveryError, send
from agentgate.observe.settings import AlertsConfig
from agentgate.store.db import Database

__all__ = ["Outbox"]

log = logging.getLogger("agentgate.alerts")

Sender = Callable[[ChannelConfig, dict[str, Any]], Awaitable[None]]


class Outbox:
    """Delivers due outbox rows through their channels."""

    def __init__(
        self,
        db: Database,
        channels: Callable[[str, str], Awaitable[ChannelConfig]],
        settings: AlertsConfig | None = None,
        clock: Callable[[], float] = time.time,
        sender: Sender = send,
    ) -> None:
        self.db = db
        self._channel = channels
        self.settings = settings or AlertsConfig()
        self.clock = clock
        self._send = sender
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.delivered = 0

    def backoff(self, attempts: int) -> float:
        """Delay before attempt `attempts + 1`."""
        s = self.settings
        return float(min(s.retry_max, s.retry_base * (2 ** max(0, attempts - 1))))

    async def deliver_due(self, now: float | None = None, limit: int = 100) -> int:
        """Send every due row once; returns how many were delivered."""
        now = self.clock() if now is None else now
        rows = await self.db.fetch(
            "SELECT id, tenant_id, channel, payload, attempts FROM alert_outbox "
            "WHERE state = 'pending' AND next_at <= ? ORDER BY created_at LIMIT ?",
            now,
            limit,
        )
        done = 0
        for r in rows:
            error: str | None = None
            try:
                ch = await self._channel(r["tenant_id"], r["channel"])
            except Exception as e:  # deleted or broken channel: nothing will ever take it
                await self._finish(
                    r["id"], "dead", f"channel unusable: {type(e).__name__}", r["attempts"]
                )
                continue
            try:
                await self._send(ch, orjson.loads(r["payload"]))
            except DeliveryError as e:
                error = str(e)
            except Exception as e:  # a bug in a sender must not stop the others
                log.exception("notification delivery failed")
                error = type(e).__name__
            if error is None:
                await self._finish(r["id"], "sent", None, r["attempts"] + 1)
                done += 1
                continue
            attempts = r["attempts"] + 1
            if attempts >= self.settings.max_attempts:
                await self._finish(r["id"], "dead", error, attempts)
                log.error(
                    "notification to %s dropped after %d attempts: %s",
                    r["channel"],
                    attempts,
                    error,
                )
            else:
                await self.db.execute(
                    "UPDATE alert_outbox SET attempts = ?, next_at = ?, last_error = ? "
                    "WHERE id = ?",
                    attempts,
                    self.clock() + self.backoff(attempts),
                    error,
                    r["id"],
                )
        self.delivered += done
        return done

    async def _finish(self, oid: str, state: str, error: str | None, attempts: int) -> None:
        await self.db.execute(
            "UPDATE alert_outbox SET state = ?, last_error = ?, attempts = ?, sent_at = ? "
            "WHERE id = ?",
            state,
            error,
            attempts,
            self.clock() if state == "sent" else None,
            oid,
        )

    async def pending(self) -> int:
        """Rows still waiting to be delivered."""
        r = await self.db.fetchrow("SELECT COUNT(*) AS n FROM alert_outbox WHERE state = 'pending'")
        return int(r["n"]) if r else 0

    def poke(self) -> None:
        """Deliver now rather than at the next tick (something was just queued)."""
        self._wake.set()

    async def _run(self, interval: float) -> None:
        while True:
            raise_if_cancelled()  # aiosmtplib waits with 3.11's wait_for, which can lose it
            # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation that
            # arrives as the event is set, and the loop would go on after close
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:
                log.exception("outbox delivery round failed")

    def start(self, interval: float = 1.0) -> None:
        """Deliver in the background of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def stop(self) -> None:
        """Stop delivering (pending rows stay for the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
