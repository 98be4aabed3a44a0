"""Cost from token usage: priced per model from the config's price table, rolled up per hour and
per day by tenant, agent and model, with tenant budgets.

A usage record (what the data plane reports once it reads `usage` from upstream responses, and
what `POST /api/cost/usage` takes):

    {"at": 1767225600.0,            # epoch seconds of the response (default: now)
     "tenant": "acme",              # tenant name ("" for config-file agents without one)
     "agent": "acme/summarizer",    # gateway agent (pool) name
     "model": "gpt-4o-mini",        # as the upstream reported it
     "input_tokens": 812, "output_tokens": 95,
     "requests": 1}                 # responses this record sums up (default 1)

Prices are per million tokens: cost = (input × price.input + output × price.output) / 10^6.
A model missing from the table costs 0 and is listed under `unpriced` in queries.

Budgets: `cost.budgets.<tenant>` in the config, or `PUT /api/cost/budgets/{tenant}` (which
wins). `check(tenant)` compares the spend since the start of the UTC day or month with the
amount; `limited()` lists the tenants over a budget whose action is `limit`, for the data
plane to answer 429 with the `budget-exceeded` problem type.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentgate.errors import Invalid, NotFound
from agentgate.observe.db import MetricsDB
from agentgate.observe.rollup import bucket_of
from agentgate.observe.settings import Budget, CostConfig
from agentgate.store.db import Database

__all__ = ["BUDGET_EXCEEDED", "CostService", "Usage"]

BUDGET_EXCEEDED = "urn:agentgate:problem:budget-exceeded"
_STEPS = (3600, 86400)


@dataclass(frozen=True, slots=True)
class Usage:
    """One usage record."""

    tenant: str
    agent: str
    model: str
    input_tokens: int
    output_tokens: int
    requests: int = 1
    at: float | None = None


def period_start(period: str, now: float) -> float:
    """Start of the current UTC day or month."""
    d = dt.datetime.fromtimestamp(now, dt.UTC)
    if period == "day":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


class CostService:
    """Prices, usage rollups and budgets."""

    def __init__(
        self,
        mdb: MetricsDB,
        db: Database,
        config: CostConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mdb = mdb
        self.db = db
        self.config = config or CostConfig()
        self.clock = clock

    def price(self, u: Usage) -> float | None:
        """The cost of one record (None when its model has no price)."""
        p = self.config.prices.get(u.model)
        if p is None:
            return None
        return (u.input_tokens * p.input + u.output_tokens * p.output) / 1e6

    async def record(self, usage: Sequence[Usage]) -> float:
        """Add usage records to the rollups; returns their total cost."""
        now = self.clock()
        acc: dict[tuple[str, str, str, int, int], list[float]] = {}
        total = 0.0
        for i, u in enumerate(usage):
            if u.input_tokens < 0 or u.output_tokens < 0 or u.requests < 0:
                raise Invalid("token and request counts must be >= 0", f"$.usage[{i}]")
            cost = self.price(u) or 0.0
            total += cost
            at = u.at if u.at is not None else now
            for step in _STEPS:
                k = (u.tenant, u.agent, u.model, step, bucket_of(at, step))
                a = acc.setdefault(k, [0, 0, 0, 0.0])
                a[0] += u.requests
                a[1] += u.input_tokens
                a[2] += u.output_tokens
                a[3] += cost
        if not acc:
            return 0.0
        async with self.mdb.transaction() as tx:
            await tx.executemany(
                "INSERT INTO cost_usage (tenant, agent, model, step, bucket, requests, "
                "input_tokens, output_tokens, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, agent, model, step, bucket) DO UPDATE SET "
                "requests = cost_usage.requests + excluded.requests, "
                "input_tokens = cost_usage.input_tokens + excluded.input_tokens, "
                "output_tokens = cost_usage.output_tokens + excluded.output_tokens, "
                "cost = cost_usage.cost + excluded.cost",
                [(*k, int(a[0]), int(a[1]), int(a[2]), float(a[3])) for k, a in acc.items()],
            )
        return total

    async def query(
        self,
        start: float,
        end: float,
        *,
        by: str = "agent",
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Requests, tokens and cost per `by` (agent, tenant or model) over the range."""
        if by not in ("agent", "tenant", "model"):
            raise Invalid("by must be agent, tenant or model", "$.query.by")
        # whole days from the day rollups, the edges from the hour rollups
        d0 = -(-int(start) // 86400) * 86400
        d1 = int(end) // 86400 * 86400
        spans: list[tuple[int, int, int]] = []
        if d0 < d1:
            spans.append((86400, d0, d1))
            spans.append((3600, bucket_of(start, 3600), d0))
            spans.append((3600, d1, -(-int(end) // 3600) * 3600))
        else:
            spans.append((3600, bucket_of(start, 3600), -(-int(end) // 3600) * 3600))
        rows: list[tuple[Any, ...]] = []
        for step, a, b in spans:
            if a >= b:
                continue
            sql = (
                f"SELECT {by}, model, SUM(requests), SUM(input_tokens), SUM(output_tokens), "
                "SUM(cost) FROM cost_usage WHERE step = ? AND bucket >= ? AND bucket < ?"
            )
            args: list[Any] = [step, a, b]
            if tenant is not None:
                sql += " AND tenant = ?"
                args.append(tenant)
            rows += await self.mdb.fetch(sql + f" GROUP BY {by}, model", *args)
        groups: dict[str, dict[str, Any]] = {}
        unpriced: set[str] = set()
        for key, model, req, inp, out, cost in rows:
            g = groups.setdefault(
                key, {by: key, "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
            )
            g["requests"] += int(req)
            g["input_tokens"] += int(inp)
            g["output_tokens"] += int(out)
            g["cost"] += float(cost)
            if model not in self.config.prices:
                unpriced.add(model)
        items = sorted(groups.values(), key=lambda g: -g["cost"])
        return {
            "currency": self.config.currency,
            "start": start,
            "end": end,
            "by": by,
            "total": sum(g["cost"] for g in items),
            "items": items,
            "unpriced": sorted(unpriced),
        }

    async def budget(self, tenant: str) -> Budget | None:
        """The tenant's budget: the API's, else the config file's."""
        r = await self.db.fetchrow(
            "SELECT amount, period, action FROM cost_budgets WHERE tenant = ?", tenant
        )
        if r is not None:
            return Budget(amount=r["amount"], period=r["period"], action=r["action"])
        return self.config.budgets.get(tenant)

    async def set_budget(self, tenant: str, b: Budget) -> None:
        """Set (replace) a tenant's budget."""
        now = self.clock()
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE cost_budgets SET amount = ?, period = ?, action = ?, updated_at = ? "
                "WHERE tenant = ?",
                b.amount,
                b.period,
                b.action,
                now,
                tenant,
            )
            if not n:
                await tx.execute(
                    "INSERT INTO cost_budgets (tenant, amount, period, action, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    tenant,
                    b.amount,
                    b.period,
                    b.action,
                    now,
                )

    async def delete_budget(self, tenant: str) -> None:
        """Remove the API budget (the config file's applies again, if any)."""
        if not await self.db.execute("DELETE FROM cost_budgets WHERE tenant = ?", tenant):
            raise NotFound(f"no budget set over the API for {tenant!r}")

    async def check(self, tenant: str, now: float | None = None) -> dict[str, Any] | None:
        """Spend in the budget's current period against its amount (None without a budget)."""
        b = await self.budget(tenant)
        if b is None:
            return None
        now = self.clock() if now is None else now
        start = period_start(b.period, now)
        q = await self.query(start, now + 1, by="tenant", tenant=tenant)
        spent = float(q["total"])
        return {
            "tenant": tenant,
            "amount": b.amount,
            "period": b.period,
            "period_start": start,
            "action": b.action,
            "spent": spent,
            "used": spent / b.amount,
            "exceeded": spent >= b.amount,
            "currency": self.config.currency,
        }

    async def tenants_with_budgets(self) -> list[str]:
        """Every tenant that has a budget."""
        rows = await self.db.fetch("SELECT tenant FROM cost_budgets")
        return sorted({r["tenant"] for r in rows} | set(self.config.budgets))

    async def limited(self, now: float | None = None) -> list[str]:
        """Tenants over a budget whose action is `limit` (the data plane answers them 429)."""
        out = []
        for t in await self.tenants_with_budgets():
            st = await self.check(t, now)
            if st is not None and st["exceeded"] and st["action"] == "limit":
                out.append(t)
        return out
