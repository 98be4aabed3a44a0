"""The data plane in this process: the core's `DataPlane` with its config sources and metrics.

The core serves every request (listener, decision, upstream client, retries, health checks);
Python never touches a request. This class feeds it configs (the file merged with every
`ConfigSource`), flushes its counters into Prometheus on a timer, and answers what the admin
listener asks about the agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from agentgate._core import AgentState, ConfigRejected, DataPlane, ProbeResult
from agentgate.config import GatewayConfig
from agentgate.gateway.sources import ConfigSource
from agentgate.observe.metrics import Metrics

__all__ = ["Gateway"]

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
    ) -> None:
        self.base = config
        self.sources = list(sources)
        self.config = self._merged()
        self.core = DataPlane(self.config.core_json(), workers)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.publish(self.core.agents())
        self._lock = asyncio.Lock()

    def _merged(self) -> GatewayConfig:
        cfg = self.base
        for s in self.sources:
            cfg = s.contribute(cfg)
        return cfg

    def listen(self, address: str) -> int:
        """Serve on `host:port` (port 0: any free one); returns the bound port."""
        return self.core.listen(address)

    async def install(self, base: GatewayConfig | None = None) -> bool:
        """Merge `base` (or the current file config) with every source and swap it in.

        A config the core refuses is logged and the running one stays; returns whether the
        new one is in force.
        """
        async with self._lock:
            if base is not None:
                self.base = base
            cfg = self._merged()
            try:
                self.core.replace(cfg.core_json())
            except ConfigRejected as e:
                log.error("config refused by the core, keeping the running config: %s", e)
                return False
            self.config = cfg
            return True

    def agents(self) -> list[AgentState]:
        """Every agent's state as the data plane sees it now."""
        return self.core.agents()

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per agent."""
        return {a.name: a.in_flight for a in self.core.agents()}

    async def probe(self, agent: str, attempts: int = 3) -> list[ProbeResult]:
        """Probe an agent's endpoints now (KeyError if unknown)."""
        return await asyncio.to_thread(self.core.probe, agent, attempts)

    def flush(self) -> None:
        """Move the core's counters and state into the Prometheus metrics."""
        self.metrics.flush(self.core.take_stats())
        self.metrics.publish(self.core.agents())

    async def run(self) -> None:
        """Flush metrics every `FLUSH_EVERY` seconds until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.flush()

    async def shutdown(self, grace: float = 30.0) -> bool:
        """Stop accepting, drain open requests (at most `grace` s); True if all finished."""
        drained = await asyncio.to_thread(self.core.shutdown, grace)
        self.flush()
        return drained
