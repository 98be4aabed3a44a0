"""Active health checks: probe every endpoint of pools that configure `health_check`.

Results go to the core (`set_healthy`), where the balancer skips unhealthy endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from agentgate.gateway.http1 import UpstreamError

if TYPE_CHECKING:
    from agentgate.gateway.engine import AgentState, Engine
    from agentgate.gateway.upstream import Endpoint, UpstreamClient
    from agentgate.observe.metrics import Metrics

__all__ = ["HealthChecker"]


class HealthChecker:
    """One task per checked pool; flips an endpoint's health after N successes/failures."""

    def __init__(self, engine: Engine, client: UpstreamClient, metrics: Metrics | None) -> None:
        self.engine = engine
        self.client = client
        self.metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start probing (inside the running loop)."""
        loop = asyncio.get_running_loop()
        for agent in self.engine.agents:
            if agent.name in self.engine.config.agents and agent.config.health_check is not None:
                self._tasks.append(loop.create_task(self._run(agent)))

    def stop(self) -> None:
        """Stop probing."""
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()

    async def _run(self, agent: AgentState) -> None:
        hc = agent.config.health_check
        assert hc is not None
        urls = [ep.url for ep in agent.config.endpoints]
        # start from what the core knows: a reload must not re-admit an ejected endpoint
        known = self.engine.stats().get(agent.name, {}).get("endpoints", [])
        healthy = [bool(e["healthy"]) for e in known] if len(known) == len(urls) else []
        healthy = healthy or [True] * len(urls)
        ups = [0] * len(urls)
        downs = [0] * len(urls)
        eps = [self.client.endpoint(agent.name, url) for url in urls]
        while True:
            results = await asyncio.gather(*(self._probe(ep, hc.path, hc.timeout) for ep in eps))
            for i, ok in enumerate(results):
                if ok:
                    ups[i] += 1
                    downs[i] = 0
                    flip = not healthy[i] and ups[i] >= hc.healthy
                else:
                    downs[i] += 1
                    ups[i] = 0
                    flip = healthy[i] and downs[i] >= hc.unhealthy
                if flip:
                    healthy[i] = not healthy[i]
                    self.engine.set_healthy(agent.index, i, healthy[i])
                if self.metrics is not None:
                    self.metrics.endpoint_health(agent.name, urls[i], healthy[i])
            await asyncio.sleep(hc.interval)

    @staticmethod
    async def _probe(ep: Endpoint, path: str, limit: float) -> bool:
        deadline = asyncio.get_running_loop().time() + limit if limit else None
        with contextlib.suppress(UpstreamError, TimeoutError, OSError, ValueError):
            async with await ep.pool.request("GET", ep.target(path), deadline=deadline) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        return False
