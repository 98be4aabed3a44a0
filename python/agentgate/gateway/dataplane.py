"""The data plane in this process: the core's `DataPlane` with its config sources and metrics.

The core serves every request (listener, decision, upstream client, retries, health checks);
Python never touches a request. This class feeds it configs (the file merged with every
`ConfigSource`), flushes its counters into Prometheus on a timer, and answers what the admin
listener asks about the agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from agentgate._core import AgentState, ConfigRejected, DataPlane, ProbeResult, StatsDelta
from agentgate.config import GatewayConfig
from agentgate.errors import AgentgateError
from agentgate.gateway.sources import ConfigSource
from agentgate.observe.metrics import Metrics

if TYPE_CHECKING:
    from agentgate.gateway.leases import LeaseLoop

__all__ = ["Gateway", "Resolve"]

Resolve = Callable[[GatewayConfig], Awaitable[GatewayConfig]]
"""Turns the config in force into what the core gets (e.g. `${secret:NAME}` → values)."""

log = logging.getLogger("agentgate.gateway")

FLUSH_EVERY = 0.5
"""Seconds between moves of the core's counters into Prometheus (scrapes lag at most this)."""


class Gateway:
    """Hosts the core's data plane: `install` configs, `listen`, `run` the metrics pump."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        workers: int = 1,
        sources: Sequence[ConfigSource] = (),
        metrics: Metrics | None = None,
        resolve: Resolve | None = None,
        core_config: GatewayConfig | None = None,
    ) -> None:
        self.base = config
        self.sources = list(sources)
        self.resolve = resolve
        self.config = self._merged()
        # with `resolve`, use `create`: the core's first config must be resolved too
        self.core = DataPlane((core_config or self.config).core_json(), workers)
        self.metrics = metrics if metrics is not None else Metrics()
        # other readers of the core's counters (the metrics history): each take goes to all
        self.sinks: list[Callable[[StatsDelta], None]] = []
        # scale from zero: called with the agent a waiting request needs a replica of
        self.on_activate: Callable[[str], Awaitable[object]] | None = None
        self.metrics.publish(self.core.agents())
        self._lock = asyncio.Lock()
        # cluster rate limits: leases from the Redis the config names (its URL is read once)
        self.leases: LeaseLoop | None = None
        if config.redis is not None:
            # imported here: redis is the optional `redis` extra, needed only with `redis:`
            from agentgate.gateway.leases import LeaseLoop

            self.leases = LeaseLoop(self.core, config.redis.url, timeout=config.redis.timeout)

    @classmethod
    async def create(
        cls,
        config: GatewayConfig,
        *,
        workers: int = 1,
        sources: Sequence[ConfigSource] = (),
        resolve: Resolve | None = None,
    ) -> Gateway:
        """A gateway whose first config also went through `resolve`."""
        merged = config
        for s in sources:
            merged = s.contribute(merged)
        first = merged if resolve is None else await resolve(merged)
        return cls(config, workers=workers, sources=sources, resolve=resolve, core_config=first)

    def _merged(self) -> GatewayConfig:
        cfg = self.base
        for s in self.sources:
            cfg = s.contribute(cfg)
        return cfg

    def listen(self, address: str) -> int:
        """Serve on `host:port` (port 0: any free one); returns the bound port."""
        return self.core.listen(address)

    async def install(self, base: GatewayConfig | None = None) -> bool:
        """Merge `base` (or the current file config) with every source, resolve it, swap it in.

        A config the core refuses, or one whose secrets cannot be resolved, is logged and the
        running one stays; returns whether the new one is in force.
        """
        async with self._lock:
            if base is not None:
                self.base = base
            cfg = self._merged()
            try:
                core_cfg = cfg if self.resolve is None else await self.resolve(cfg)
                self.core.replace(core_cfg.core_json())
            except (ConfigRejected, AgentgateError) as e:
                log.error("config refused by the core, keeping the running config: %s", e)
                return False
            self.config = cfg
            return True

    def agents(self) -> list[AgentState]:
        """Every agent's state as the data plane sees it now."""
        return self.core.agents()

    def cluster_health(self) -> dict[str, Any] | None:
        """Redis as the cluster rate limits see it (None without `redis:` in the config)."""
        return None if self.leases is None else self.leases.health()

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per agent."""
        return {a.name: a.in_flight for a in self.core.agents()}

    def endpoint_in_flight(self, url: str) -> int | None:
        """Requests in flight on one endpoint (by URL), None if no agent has it."""
        found = None
        for a in self.core.agents():
            for ep in a.endpoints:
                if ep.url == url:
                    found = (found or 0) + ep.in_flight
        return found

    async def probe(self, agent: str, attempts: int = 3) -> list[ProbeResult]:
        """Probe an agent's endpoints now (KeyError if unknown)."""
        return await asyncio.to_thread(self.core.probe, agent, attempts)

    def flush(self) -> None:
        """Move the core's counters and state into the Prometheus metrics and the sinks."""
        d = self.core.take_stats()
        self.metrics.flush(d)
        for sink in self.sinks:
            sink(d)
        self.metrics.publish(self.core.agents())

    async def run(self) -> None:
        """Flush metrics every `FLUSH_EVERY` seconds, pass activations on, and keep the
        cluster-limit leases filled, until cancelled."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._activations())]
        if self.leases is not None:
            tasks.append(loop.create_task(self.leases.run()))
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY)
                self.flush()
        finally:
            for t in tasks:
                t.cancel()

    async def _activations(self) -> None:
        # the core blocks a thread until a request waits for an agent with no endpoint
        pending: set[asyncio.Task[object]] = set()
        while True:
            names = await asyncio.to_thread(self.core.activations, 1.0)
            hook = self.on_activate
            if hook is None:
                continue
            for name in names:
                t = asyncio.ensure_future(hook(name))
                pending.add(t)
                t.add_done_callback(pending.discard)

    async def shutdown(self, grace: float = 30.0) -> bool:
        """Stop accepting, drain open requests (at most `grace` s); True if all finished."""
        drained = await asyncio.to_thread(self.core.shutdown, grace)
        self.flush()
        return drained
