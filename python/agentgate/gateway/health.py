"""Active health checks: probe every endpoint of pools that configure `health_check`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiohttp

from agentgate.gateway.upstream import make_url

if TYPE_CHECKING:
    from agentgate.gateway.engine import EndpointState, Engine, PoolState
    from agentgate.gateway.upstream import UpstreamClient
    from agentgate.observe.metrics import Metrics

__all__ = ["HealthChecker"]


class HealthChecker:
    """One task per checked pool; flips `EndpointState.healthy` after N successes/failures."""

    def __init__(self, engine: Engine, client: UpstreamClient, metrics: Metrics | None) -> None:
        self.engine = engine
        self.client = client
        self.metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start probing (inside the running loop)."""
        loop = asyncio.get_running_loop()
        for pool in self.engine.pools.values():
            if pool.config.health_check is not None:
                self._tasks.append(loop.create_task(self._run(pool)))

    def stop(self) -> None:
        """Stop probing."""
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()

    async def _run(self, pool: PoolState) -> None:
        hc = pool.config.health_check
        assert hc is not None
        ups = {ep.index: 0 for ep in pool.endpoints}
        downs = {ep.index: 0 for ep in pool.endpoints}
        session = self.client.session(pool.name)
        while True:
            results = await asyncio.gather(
                *(self._probe(session, ep, hc.path, hc.timeout) for ep in pool.endpoints)
            )
            for ep, ok in zip(pool.endpoints, results, strict=True):
                if ok:
                    ups[ep.index] += 1
                    downs[ep.index] = 0
                    if not ep.healthy and ups[ep.index] >= hc.healthy:
                        ep.healthy = True
                else:
                    downs[ep.index] += 1
                    ups[ep.index] = 0
                    if ep.healthy and downs[ep.index] >= hc.unhealthy:
                        ep.healthy = False
                if self.metrics is not None:
                    self.metrics.endpoint_health(pool.name, ep)
            await asyncio.sleep(hc.interval)

    @staticmethod
    async def _probe(
        session: aiohttp.ClientSession, ep: EndpointState, path: str, limit: float
    ) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with (
                asyncio.timeout(limit or None),
                session.get(make_url(ep.url, path), allow_redirects=False) as resp,
            ):
                await resp.read()
                return 200 <= resp.status < 300
        return False
