"""Interim pure-Python policies behind the Engine seam (rate limit, breaker, budget, admission).

These hold the gateway's semantics until `Engine.admit` moves into one Rust core call; they are
deliberately small and allocation-free on the common path. Time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class Gcra:
    """GCRA limiter per key: `rate` per second sustained, `burst` requests at once."""

    __slots__ = ("_burst", "_clock", "_interval", "_max_keys", "_tat", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: Clock, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst or math.ceil(rate))
        self._interval = 1.0 / rate
        self._burst = self.burst * self._interval
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    def check(self, key: str) -> tuple[bool, int, float]:
        """Take one token for `key`: (allowed, remaining, seconds until retry/reset)."""
        now = self._clock()
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        new_tat = tat + self._interval
        allow_at = new_tat - self._burst
        if allow_at - now > 1e-9:  # float slack so exactly `burst` requests pass
            return False, 0, allow_at - now
        if len(self._tat) >= self._max_keys and key not in self._tat:
            self._evict(now)
        self._tat[key] = new_tat
        remaining = int((now - allow_at) / self._interval + 1e-9)
        return True, remaining, new_tat - now

    def _evict(self, now: float) -> None:
        # keys whose TAT is in the past hold no state worth keeping
        stale = [k for k, t in self._tat.items() if t <= now]
        for k in stale:
            del self._tat[k]
        if len(self._tat) >= self._max_keys:
            self._tat.clear()


class Breaker:
    """Per-endpoint breaker: consecutive failures or error rate over a window open it."""

    __slots__ = (
        "_clock",
        "_consecutive",
        "_error_rate",
        "_min_requests",
        "_open_for",
        "_window",
        "failures",
        "opened_at",
        "probing",
        "state",
    )

    CLOSED, OPEN, HALF_OPEN = 0, 1, 2

    def __init__(
        self,
        consecutive: int,
        error_rate: float,
        min_requests: int,
        open_for: float,
        clock: Clock,
    ) -> None:
        self._consecutive = consecutive
        self._error_rate = error_rate
        self._min_requests = min_requests
        self._open_for = open_for
        self._clock = clock
        self._window: deque[bool] = deque(maxlen=max(min_requests, 1) * 5)
        self.failures = 0
        self.state = self.CLOSED
        self.opened_at = 0.0
        self.probing = False

    def allow(self) -> bool:
        """Whether a request may go to this endpoint now (half-open lets one probe through)."""
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN:
            if self._clock() - self.opened_at < self._open_for:
                return False
            self.state = self.HALF_OPEN
            self.probing = False
        if self.probing:
            return False
        self.probing = True
        return True

    def peek(self) -> bool:
        """Like allow() but without taking the half-open probe slot."""
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN:
            return self._clock() - self.opened_at >= self._open_for
        return not self.probing

    def record(self, ok: bool) -> None:
        """Record one outcome."""
        if self.state == self.HALF_OPEN:
            self.probing = False
            if ok:
                self._close()
            else:
                self._open()
            return
        self._window.append(ok)
        if ok:
            self.failures = 0
            return
        self.failures += 1
        if self.failures >= self._consecutive:
            self._open()
            return
        n = len(self._window)
        if n >= self._min_requests and self._window.count(False) / n >= self._error_rate:
            self._open()

    def _open(self) -> None:
        self.state = self.OPEN
        self.opened_at = self._clock()
        self._window.clear()

    def _close(self) -> None:
        self.state = self.CLOSED
        self.failures = 0
        self._window.clear()


class RetryBudget:
    """Token budget: each request deposits `ratio`, each retry spends 1 (plus a small floor)."""

    __slots__ = ("_cap", "_ratio", "tokens")

    def __init__(self, ratio: float, floor: float = 10.0) -> None:
        self._ratio = ratio
        self._cap = max(floor, 100.0)
        self.tokens = floor

    def deposit(self) -> None:
        """Called once per original request."""
        t = self.tokens + self._ratio
        self.tokens = t if t < self._cap else self._cap

    def withdraw(self) -> bool:
        """Take one retry from the budget if there is one."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Shed(Exception):
    """A queued request was dropped for a higher-priority one or the queue was full."""


class AdmissionPool:
    """Concurrency limit per pool with a priority queue; sheds the lowest class when full."""

    __slots__ = ("_counter", "_heap", "_loop_time", "in_flight", "max_concurrency", "max_queue")

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.in_flight = 0
        # entries: (-priority, seq, future); lowest priority is the max of the heap order
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._heap)

    def try_acquire(self) -> bool:
        """Take a slot without waiting."""
        if self.in_flight < self.max_concurrency and not self._heap:
            self.in_flight += 1
            return True
        return False

    async def acquire(self, priority: int, wait_for: float) -> None:
        """Wait for a slot; raise Shed or TimeoutError."""
        if self.try_acquire():
            return
        if len(self._heap) >= self.max_queue:
            if not self._heap:
                raise Shed
            # shed the lowest-priority, newest waiter if the newcomer outranks it
            worst = max(self._heap, key=lambda e: (e[0], e[1]))
            if -worst[0] >= priority:
                raise Shed
            self._heap.remove(worst)
            heapq.heapify(self._heap)
            if not worst[2].done():
                worst[2].set_exception(Shed())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (-priority, next(self._counter), fut)
        heapq.heappush(self._heap, entry)
        try:
            if wait_for > 0:
                async with asyncio.timeout(wait_for):
                    await fut
            else:
                await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # got the slot just as we gave up: hand it on
            elif entry in self._heap:
                self._heap.remove(entry)
                heapq.heapify(self._heap)
            raise

    def release(self) -> None:
        """Give a slot back, waking the highest-priority waiter."""
        while self._heap:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the waiter
                return
        self.in_flight -= 1
