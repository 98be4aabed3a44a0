"""Token usage from the data plane, recorded as cost, and budgets enforced back on it.

The core reads `usage` from upstream responses as they stream by (`X-Usage-*` headers, a JSON
body or the last server-sent event that carries one) and sums it per agent, tenant and model.
`Gateway.flush` pushes each take here; `run` records the sums every `every` seconds and hands
the tenants over a `limit` budget to the core, which then answers them 429 `budget-exceeded`
before any token is spent. Enforcement therefore lags spending by at most one interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agentgate._core import StatsDelta
from agentgate.observe.cost import CostService, Usage

__all__ = ["CostFeed"]

log = logging.getLogger(__name__)


class CostFeed:
    """Usage pushed by the gateway (`push`), recorded and enforced by `run`."""

    def __init__(self, cost: CostService, limit: Callable[[list[str]], None]) -> None:
        self.cost = cost
        self.limit = limit
        # (tenant, agent, model) -> [input, output, requests]
        self._pending: dict[tuple[str, str, str], list[int]] = {}

    def push(self, d: StatsDelta) -> None:
        """Add the usage of one take of the core's counters."""
        for a in d.agents:
            for u in a.usage:
                acc = self._pending.setdefault((u.tenant or "", a.agent, u.model), [0, 0, 0])
                acc[0] += u.input_tokens
                acc[1] += u.output_tokens
                acc[2] += u.requests

    async def flush(self) -> None:
        """Record what was pushed since the last call, then refresh the limited tenants."""
        pending, self._pending = self._pending, {}
        if pending:
            try:
                await self.cost.record(
                    [
                        Usage(tenant, agent, model, i, o, n)
                        for (tenant, agent, model), (i, o, n) in pending.items()
                    ]
                )
            except BaseException:
                # nothing was written (one transaction): keep the sums for the next flush
                for k, (i, o, n) in pending.items():
                    acc = self._pending.setdefault(k, [0, 0, 0])
                    acc[0] += i
                    acc[1] += o
                    acc[2] += n
                raise
        self.limit(await self.cost.limited())

    async def run(self, every: float = 5.0) -> None:
        """Flush every `every` seconds until cancelled; a failed flush is logged and retried."""
        while True:
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be briefly unavailable: keep the gateway serving
                log.exception("cost: recording usage failed; will retry")
            await asyncio.sleep(every)
