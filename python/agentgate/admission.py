"""Priority admission: a concurrency limit with a bounded queue ordered by class.

The Rust core (`agentgate._core.PriorityAdmission`) decides; this module waits. A queued
request waits on an asyncio future keyed by its ticket; `release()` passes the freed slot
straight to the next ticket (critical first, FIFO within a class) and resolves its future.
Under pressure the lowest class is shed first. One controller belongs to one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Literal

from agentgate._core import ManualClock
from agentgate._core import PriorityAdmission as _CoreAdmission

__all__ = ["CLASSES", "AdmissionController", "AdmissionRejected", "Priority"]

Priority = Literal["critical", "high", "normal", "low"]
CLASSES: tuple[Priority, ...] = ("critical", "high", "normal", "low")
DEFAULT_MAX_WAIT: Mapping[str, float | None] = {
    "critical": 5.0,
    "high": 2.0,
    "normal": 1.0,
    "low": 0.5,
}
_REJECT = {2: "queue_full", 3: "shed"}


class AdmissionRejected(RuntimeError):
    """The request was not admitted; `reason` is "queue_full", "shed" or "timeout"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"admission rejected: {reason}")
        self.reason = reason


class _Slot:
    """`async with controller.slot(p):` holds one admission slot for the block."""

    __slots__ = ("_controller", "_priority")

    def __init__(self, controller: AdmissionController, priority: str) -> None:
        self._controller = controller
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._controller.acquire(self._priority)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.release()


class AdmissionController:
    """Admits up to `max_concurrency` requests; queues up to `max_queue` more by priority."""

    __slots__ = ("_core", "_max_wait", "_timers", "_waiters")

    def __init__(
        self,
        max_concurrency: int,
        max_queue: int = 1024,
        max_wait: Mapping[str, float | None] | None = None,
        clock: ManualClock | None = None,
    ) -> None:
        waits = dict(DEFAULT_MAX_WAIT)
        if max_wait is not None:
            unknown = set(max_wait) - set(CLASSES)
            if unknown:
                raise ValueError(f"max_wait: unknown classes {sorted(unknown)}; use {CLASSES}")
            waits.update(max_wait)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        w = tuple(waits[c] for c in CLASSES)
        self._core = _CoreAdmission(
            max_concurrency, max_queue, (w[0], w[1], w[2], w[3]), clock=clock
        )
        self._max_wait = waits
        # With a manual clock, time moves only when the test says so: expiry happens through
        # `expire()` rather than loop timers.
        self._timers = clock is None
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def slot(self, priority: str = "normal") -> _Slot:
        """Async context manager holding one slot: `async with controller.slot("high"): ...`."""
        return _Slot(self, priority)

    async def acquire(self, priority: str = "normal") -> None:
        """Waits for a slot; raises AdmissionRejected. The caller must `release()` afterwards."""
        code, ticket, shed = self._core.acquire(priority)
        if shed:
            self._fail(shed, "shed")
        if code == 0:
            return
        if code != 1:
            raise AdmissionRejected(_REJECT[code])
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters[ticket] = fut
        timer = None
        if self._timers:
            limit = self._max_wait.get(priority.lower())
            if limit is not None:
                timer = loop.call_later(limit, self._on_timeout, ticket)
        try:
            await fut
        except asyncio.CancelledError:
            if self._core.cancel(ticket):
                self._waiters.pop(ticket, None)
            elif fut.done() and not fut.cancelled() and fut.exception() is None:
                # The slot was granted just before the cancellation: give it back.
                self.release()
            # Otherwise the releaser found our future cancelled and passed the slot on.
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self) -> None:
        """Frees a slot, handing it to the next waiter if any."""
        core = self._core
        while (ticket := core.release()) is not None:
            fut = self._waiters.pop(ticket, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
                return
            # That waiter is gone (cancelled): the slot it was handed goes to the next one.

    def expire(self) -> int:
        """Fails waiters whose class max wait has passed (by the core's clock); returns count."""
        expired = self._core.expire()
        self._fail(expired, "timeout")
        return len(expired)

    def _on_timeout(self, ticket: int) -> None:
        fut = self._waiters.get(ticket)
        if fut is None or fut.done():
            return
        if self._core.cancel(ticket):
            del self._waiters[ticket]
            fut.set_exception(AdmissionRejected("timeout"))

    def _fail(self, tickets: list[int], reason: str) -> None:
        for t in tickets:
            fut = self._waiters.pop(t, None)
            if fut is not None and not fut.done():
                fut.set_exception(AdmissionRejected(reason))

    def depths(self) -> dict[str, int]:
        """Waiting requests per class."""
        return dict(zip(CLASSES, self._core.depths(), strict=True))

    @property
    def in_flight(self) -> int:
        """Slots currently held."""
        return self._core.in_flight
