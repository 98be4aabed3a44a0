"""The security jobs on a timer in the control-plane process: secret rotation checks,
retention, and the configured backup schedule (with prune after each backup).

`run_pending(now)` runs whatever is due, so tests drive it with a fake clock; `start` runs it
in a background task until `stop`. A job that fails is logged by name and type only (messages
might name a secret) and tried again at its next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentgate.security.rotation import RotationJob
from agentgate.security.services import NotConfigured, Security

__all__ = ["Job", "Scheduler"]

log = logging.getLogger("agentgate.security")


@dataclass(slots=True)
class Job:
    """A named job, its interval and when it runs next."""

    name: str
    every: float
    run: Callable[[], Awaitable[object]]
    next_at: float = 0.0
    runs: int = 0
    last_error: str | None = None


class Scheduler:
    """Runs the security jobs of one `Security` on their intervals."""

    def __init__(self, sec: Security, clock: Callable[[], float] = time.time) -> None:
        self.sec = sec
        self.clock = clock
        cfg = sec.config
        self.jobs: list[Job] = [
            Job("rotation", 3600.0 if cfg is None else cfg.secrets.check_every, self._rotation),
            Job(
                "retention",
                86400.0 if cfg is None else cfg.privacy.retention.run_every,
                self._retention,
            ),
        ]
        if cfg is not None and cfg.backup is not None and cfg.backup.schedule:
            self.jobs.append(Job("backup", cfg.backup.schedule, self._backup))
        now = clock()
        for j in self.jobs:
            j.next_at = now + j.every
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _rotation(self) -> object:
        cfg = self.sec.config
        job = RotationJob(await self.sec.secrets(), seal=self.sec.seal)
        if cfg is not None:
            job.publisher_key_max_age = cfg.secrets.publisher_key_max_age
            job.warn_before = cfg.secrets.remind_before
        return await job.run_once()

    async def _retention(self) -> object:
        return await self.sec.retention().run_once()

    async def _backup(self) -> object:
        mgr = await self.sec.backups()
        m = await mgr.create()
        await mgr.prune()
        return m

    async def run_pending(self, now: float | None = None) -> list[str]:
        """Run every job due at `now`; returns the names of those that ran."""
        now = self.clock() if now is None else now
        ran = []
        for j in self.jobs:
            if j.next_at > now:
                continue
            j.next_at = now + j.every
            try:
                await j.run()
                j.last_error = None
            except NotConfigured:
                j.last_error = "not configured"
            except Exception as e:  # a job must not stop the others
                j.last_error = type(e).__name__
                log.error("security job %s failed: %s", j.name, type(e).__name__)
            j.runs += 1
            ran.append(j.name)
        return ran

    def start(self) -> None:
        """Run due jobs in the background until `stop`."""
        self._stop.clear()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while not self._stop.is_set():
            await self.run_pending()
            wait = max(0.0, min(j.next_at for j in self.jobs) - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stop.wait()

    async def stop(self) -> None:
        """Stop the background task (a running job finishes first)."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
