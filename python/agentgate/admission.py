"""Priority admission: a concurrency limit with a bounded queue ordered by class.

The Rust core (`agentgate._core.PriorityAdmission`) decides; this module waits. A queued
request waits on an asyncio future keyed by its ticket; `release()` passes the freed slot
straight to the next ticket (critical first, FIFO within a class) and resolves its future.
Under pressure the lowest class is shed first. One controller belongs to one event loop.
Classes are `Priority` members or their names ("critical", "high", "normal", "low").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType

from agentgate._core import ManualClock, Priority, Refusal
from agentgate._core import PriorityAdmission as _CoreAdmission

__all__ = ["CLASSES", "AdmissionController", "AdmissionRejected", "Priority", "Refusal"]

CLASSES: tuple[Priority, ...] = (Priority.Critical, Priority.High, Priority.Normal, Priority.Low)
DEFAULT_MAX_WAIT: Mapping[Priority, float | None] = {
    Priority.Critical: 5.0,
    Priority.High: 2.0,
    Priority.Normal: 1.0,
    Priority.Low: 0.5,
}


def _priority(p: Priority | str) -> Priority:
    return p if isinstance(p, Priority) else Priority(p)


class AdmissionRejected(RuntimeError):
    """The request was not admitted; `reason` is Refusal.QueueFull, .Shed or .Timeout."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(f"admission rejected: {reason}")
        self.reason = reason


class _Slot:
    """`async with controller.slot(p):` holds one admission slot for the block."""

    __slots__ = ("_controller", "_priority")

    def __init__(self, controller: AdmissionController, priority: Priority | str) -> None:
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
        max_wait: Mapping[Priority, float | None] | Mapping[str, float | None] | None = None,
        clock: ManualClock | None = None,
    ) -> None:
        waits = dict(DEFAULT_MAX_WAIT)
        for name, limit in (max_wait or {}).items():
            try:
                waits[_priority(name)] = limit
            except ValueError as e:
                raise ValueError(f"max_wait: {e}") from None
        self._core = _CoreAdmission(max_concurrency, max_queue, waits, clock=clock)
        self._max_wait = waits
        # With a manual clock, time moves only when the test says so: expiry happens through
        # `expire()` rather than loop timers.
        self._timers = clock is None
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def slot(self, priority: Priority | str = Priority.Normal) -> _Slot:
        """Async context manager holding one slot: `async with controller.slot("high"): ...`."""
        return _Slot(self, priority)

    async def acquire(self, priority: Priority | str = Priority.Normal) -> None:
        """Waits for a slot; raises AdmissionRejected. The caller must `release()` afterwards."""
        p = _priority(priority)
        outcome = self._core.acquire(p)
        if outcome.shed:
            self._fail(outcome.shed, Refusal.Shed)
        ticket = outcome.ticket
        if ticket is None:
            if outcome.refusal is not None:
                raise AdmissionRejected(outcome.refusal)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters[ticket] = fut
        timer = None
        if self._timers:
            limit = self._max_wait.get(p)
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
        self._fail(expired, Refusal.Timeout)
        return len(expired)

    def _on_timeout(self, ticket: int) -> None:
        fut = self._waiters.get(ticket)
        if fut is None or fut.done():
            return
        if self._core.cancel(ticket):
            del self._waiters[ticket]
            fut.set_exception(AdmissionRejected(Refusal.Timeout))

    def _fail(self, tickets: list[int], reason: Refusal) -> None:
        for t in tickets:
            fut = self._waiters.pop(t, None)
            if fut is not None and not fut.done():
                fut.set_exception(AdmissionRejected(reason))

    def depths(self) -> dict[str, int]:
        """Waiting requests per class name, most important first."""
        d = self._core.depths()
        return {str(p): d[p] for p in CLASSES}

    @property
    def in_flight(self) -> int:
        """Slots currently held."""
        return self._core.in_flight
