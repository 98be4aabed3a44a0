"""Service-level objectives: availability and latency over 28 or 30 days, error budget left,
and the SRE workbook's multi-window, multi-burn-rate alerts.

    SLI          = good / total over the period
                   availability: good = answers that are not 5xx
                   latency:      good = answers faster than `threshold` (from the latency sketch)
    error budget = 1 − objective
    budget left  = 1 − (1 − SLI) / (1 − objective)        (negative once it is spent)
    burn rate(w) = error ratio over window w / (1 − objective)

Alerts (Google SRE workbook, "Alerting on SLOs", table 5-8):
    page    burn(1 h) ≥ 14.4 and burn(5 m)  ≥ 14.4     (2 % of a 30-day budget in an hour)
    page    burn(6 h) ≥ 6    and burn(30 m) ≥ 6        (5 % in six hours)
    ticket  burn(3 d) ≥ 1    and burn(6 h)  ≥ 1        (10 % in three days)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from agentgate.errors import NotFound
from agentgate.observe.history import Signals, TrafficHistory
from agentgate.observe.settings import SloConfig
from agentgate.store.db import Database

__all__ = ["BURN_RULES", "SloService"]

BURN_RULES: tuple[tuple[str, float, float, float], ...] = (
    # severity, long window, short window, burn-rate threshold
    ("page", 3600.0, 300.0, 14.4),
    ("page", 6 * 3600.0, 1800.0, 6.0),
    ("ticket", 3 * 86400.0, 6 * 3600.0, 1.0),
)


def _bad_total(slo: SloConfig, s: Signals) -> tuple[float, int]:
    if s.requests == 0:
        return 0.0, 0
    if slo.kind == "availability":
        return float(s.classes[5]), s.requests
    good = s.latency.fraction_below(slo.threshold or 0.0) * s.latency.count
    return max(0.0, s.latency.count - good), s.latency.count


class SloService:
    """SLOs of every tenant: from the config file and the API (`slos` table)."""

    def __init__(
        self,
        db: Database,
        history: TrafficHistory,
        configured: tuple[SloConfig, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.history = history
        self.configured = configured
        self.clock = clock

    async def list(self, tenant_id: str, system: bool) -> list[SloConfig]:
        """The tenant's SLOs (config-file ones belong to the system tenant)."""
        rows = await self.db.fetch(
            "SELECT body FROM slos WHERE tenant_id = ? ORDER BY name", tenant_id
        )
        out = [SloConfig.model_validate_json(r["body"]) for r in rows]
        if system:
            have = {s.name for s in out}
            out += [s for s in self.configured if s.name not in have]
        return sorted(out, key=lambda s: s.name)

    async def get(self, tenant_id: str, system: bool, name: str) -> SloConfig:
        """One SLO (NotFound)."""
        for s in await self.list(tenant_id, system):
            if s.name == name:
                return s
        raise NotFound(f"SLO {name!r} not found")

    async def put(self, tenant_id: str, slo: SloConfig) -> None:
        """Create or replace an SLO."""
        now = self.clock()
        body = orjson.dumps(slo.model_dump(mode="json")).decode()
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE slos SET body = ?, updated_at = ? WHERE tenant_id = ? AND name = ?",
                body,
                now,
                tenant_id,
                slo.name,
            )
            if not n:
                await tx.execute(
                    "INSERT INTO slos (tenant_id, name, body, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    tenant_id,
                    slo.name,
                    body,
                    now,
                    now,
                )

    async def delete(self, tenant_id: str, name: str) -> None:
        """Delete an SLO set over the API."""
        n = await self.db.execute(
            "DELETE FROM slos WHERE tenant_id = ? AND name = ?", tenant_id, name
        )
        if not n:
            raise NotFound(f"SLO {name!r} not found (config-file SLOs change in the file)")

    async def _ratio(self, slo: SloConfig, seconds: float, now: float) -> tuple[float | None, int]:
        s = await self.history.summary(now - seconds, now, agent=slo.agent, route=slo.route)
        bad, total = _bad_total(slo, s)
        return (bad / total if total else None), total

    async def status(self, slo: SloConfig, now: float | None = None) -> dict[str, Any]:
        """SLI, error budget left and burn rates of one SLO."""
        now = self.clock() if now is None else now
        period = 28 * 86400.0 if slo.period == "28d" else 30 * 86400.0
        budget = 1.0 - slo.objective
        ratio, total = await self._ratio(slo, period, now)
        burns: dict[str, float | None] = {}
        for w in (300.0, 1800.0, 3600.0, 6 * 3600.0, 3 * 86400.0):
            r, _ = await self._ratio(slo, w, now)
            burns[_label(w)] = None if r is None else r / budget
        alerts = []
        for severity, long_w, short_w, threshold in BURN_RULES:
            lb, sb = burns[_label(long_w)], burns[_label(short_w)]
            if lb is not None and sb is not None and lb >= threshold and sb >= threshold:
                alerts.append(
                    {
                        "severity": severity,
                        "long_window": _label(long_w),
                        "short_window": _label(short_w),
                        "burn_rate": lb,
                        "threshold": threshold,
                    }
                )
        return {
            **slo.model_dump(mode="json"),
            "requests": total,
            "sli": None if ratio is None else 1.0 - ratio,
            "error_budget": budget,
            "budget_remaining": None if ratio is None else 1.0 - ratio / budget,
            "burn_rates": burns,
            "alerts": alerts,
        }


def _label(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}m"
