"""The metrics collector: every flush interval, take the feed's deltas and write the rollups.

    collector = Collector(feed, history, interval=10.0)
    collector.on_flush.append(alerts.evaluate)       # runs after each write
    collector.start()                               # background task in the running loop
    ...
    await collector.stop()                           # one last flush, then stop

`flush()` can be called directly (tests, shutdown). The latest agent states stay available as
`collector.agents` for the health score, the dashboard and the alert rules that look at the
present (agent down, queue depth, breaker open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from agentgate.observe.feed import AgentState, Deltas, StatsFeed
from agentgate.observe.history import TrafficHistory

__all__ = ["Collector"]

log = logging.getLogger("agentgate.observe")

_EXPIRE_EVERY = 600.0


class Collector:
    """Flushes a `StatsFeed` into a `TrafficHistory` on a timer."""

    def __init__(
        self,
        feed: StatsFeed,
        history: TrafficHistory,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.feed = feed
        self.history = history
        self.interval = interval
        self.clock = clock
        self.agents: dict[str, AgentState] = {}
        self.last_flush: float | None = None
        self.flushes = 0
        self.on_flush: list[Callable[[float], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_expire = 0.0
        self._lock = asyncio.Lock()

    async def flush(self) -> Deltas:
        """Take the deltas now, write them, run the hooks; returns what was taken."""
        async with self._lock:
            at = self.clock()
            deltas = self.feed.take()
            self.agents = deltas.agents
            # the deltas are the interval that just ended: stamp them with its middle, so a
            # flush a little after a bucket boundary still lands in the bucket it describes
            await self.history.write(at - self.interval / 2, deltas)
            self.last_flush = at
            self.flushes += 1
            if at - self._last_expire >= _EXPIRE_EVERY:
                self._last_expire = at
                await self.history.expire(at)
        for hook in list(self.on_flush):
            try:
                await hook(at)
            except Exception:  # one failing consumer must not stop the collection
                log.exception("metrics flush hook failed")
        return deltas

    async def _run(self) -> None:
        while True:
            now = self.clock()
            # flush on interval boundaries so buckets line up across gateways
            delay = self.interval - (now % self.interval)
            await asyncio.sleep(max(0.05, delay))
            try:
                await self.flush()
            except Exception:
                log.exception("metrics flush failed; the deltas of this interval are lost")

    def start(self) -> None:
        """Flush in the background of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the timer and flush what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
