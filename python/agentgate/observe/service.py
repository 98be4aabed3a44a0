"""The observability service of the control plane: history, custom metrics, health, alerts.

    svc = await ObserveService.open(store, database_url, data_dir, settings, feed=feed)
    svc.start()          # collector (when a feed is given), alert evaluation, outbox delivery
    ...
    await svc.close()

`feed` is a `StatsFeed`:
`DataPlaneFeed` in `agentgate serve` (the data plane runs in this process). Without a feed the
service still answers queries, records custom metrics and delivers notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgate.observe.alerts import AlertManager, Outbox
from agentgate.observe.alerts.manager import synthetic_rule
from agentgate.observe.alerts.rules import Rule
from agentgate.observe.collector import Collector
from agentgate.observe.cost import CostService
from agentgate.observe.custom import CustomMetrics
from agentgate.observe.db import MetricsDB, open_metrics_db
from agentgate.observe.feed import AgentState, StatsFeed
from agentgate.observe.health import Health, agent_health, fleet_health
from agentgate.observe.history import FLEET, Signals, TrafficHistory
from agentgate.observe.settings import (
    AlertsConfig,
    CostConfig,
    MetricsConfig,
    SloConfig,
    TracingConfig,
)
from agentgate.observe.slo import SloService
from agentgate.observe.system import SystemMonitor
from agentgate.settings import Settings
from agentgate.store import Store

__all__ = ["ObserveService", "ObserveSettings"]

log = logging.getLogger("agentgate.observe")


@dataclass(frozen=True, slots=True)
class ObserveSettings:
    """The observability sections of the config file."""

    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    slos: tuple[SloConfig, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> ObserveSettings:
        """Read them from a `GatewayConfig` (defaults for sections it lacks)."""
        return cls(
            metrics=getattr(cfg, "metrics", None) or MetricsConfig(),
            alerts=getattr(cfg, "alerts", None) or AlertsConfig(),
            tracing=getattr(cfg, "tracing", None) or TracingConfig(),
            cost=getattr(cfg, "cost", None) or CostConfig(),
            slos=tuple(getattr(cfg, "slos", ()) or ()),
        )

    @classmethod
    def from_env(cls) -> ObserveSettings:
        """From the config file named by AGENTGATE_CONFIG, else the defaults."""
        path = Settings.from_env().config_path
        if not path:
            return cls()
        from agentgate.config import load_config

        return cls.from_config(load_config(path))


class _View:
    """The `MetricsView` alert rules evaluate against."""

    def __init__(self, svc: ObserveService) -> None:
        self._svc = svc

    async def window(self, seconds: float) -> dict[str, Signals]:
        now = self._svc.clock()
        table = await self._svc.history.agents_table(now - seconds, now)
        table[FLEET] = await self._svc.history.summary(now - seconds, now)
        return table

    def states(self) -> dict[str, AgentState]:
        return self._svc.states()

    async def custom(
        self, tenant_id: str, name: str, agg: str, labels: dict[str, str], seconds: float
    ) -> dict[str, float | None]:
        now = self._svc.clock()
        rows = await self._svc.custom.query(
            tenant_id, name, agg=agg, start=now - seconds, end=now, labels=labels, by=("agent",)
        )
        return {r["group"]["agent"]: r["value"] for r in rows}


class ObserveService:
    """Everything observability needs, opened on the control-plane store."""

    def __init__(
        self,
        store: Store,
        mdb: MetricsDB,
        settings: ObserveSettings,
        *,
        feed: StatsFeed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.mdb = mdb
        self.settings = settings
        self.clock = clock
        tiers = settings.metrics.effective_tiers()
        self.history = TrafficHistory(
            mdb,
            tiers,
            clock,
            # a bucket's last flush lands half an interval after its end, written in a second or
            # two; a second interval covers slow writes and other gateways' clocks
            seal_after=2 * settings.metrics.flush_interval + 10,
            cache_bytes=settings.metrics.query_cache,
        )
        self.custom = CustomMetrics(mdb, tiers, clock)
        self.collector = (
            Collector(feed, self.history, interval=settings.metrics.flush_interval, clock=clock)
            if feed is not None
            else None
        )
        self.alerts = AlertManager(store.db, _View(self), settings.alerts, clock)
        self.outbox = Outbox(store.db, self.alerts.channel, settings.alerts, clock)
        self.system = SystemMonitor()
        self.slos = SloService(store.db, self.history, settings.slos, clock)
        self.cost = CostService(mdb, store.db, settings.cost, clock)
        self.alerts.sources += [self._slo_alerts, self._budget_alerts]
        self._tasks: list[asyncio.Task[None]] = []
        self._defaults_done = False
        if self.collector is not None:
            self.collector.on_flush.append(self._after_flush)

    @classmethod
    async def open(
        cls,
        store: Store,
        database_url: str | None,
        data_dir: Path,
        settings: ObserveSettings | None = None,
        *,
        feed: StatsFeed | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ObserveService:
        """Open the metrics connection next to `store` (same database)."""
        mdb = await open_metrics_db(database_url, data_dir)
        return cls(store, mdb, settings or ObserveSettings(), feed=feed, clock=clock)

    def states(self) -> dict[str, AgentState]:
        """The agents' current state as of the last flush."""
        return dict(self.collector.agents) if self.collector is not None else {}

    async def ensure_defaults(self) -> None:
        """Install the shipped alert rules into the system tenant (once it exists)."""
        if self._defaults_done or not self.settings.alerts.defaults:
            return
        try:
            t = await self.store.system.tenants.get_by_name("system")
        except Exception:
            return  # not bootstrapped yet
        try:
            await self.alerts.install_defaults(t.id)
        except Exception:
            # e.g. another gateway on the same database installed them at the same moment;
            # the next flush tries again
            log.warning("installing the shipped alert rules failed", exc_info=True)
            return
        self._defaults_done = True

    async def _after_flush(self, at: float) -> None:
        await self.ensure_defaults()
        await self.alerts.evaluate(at)
        if await self.alerts.notify(at):
            self.outbox.poke()

    async def _alert_loop(self) -> None:
        # without a collector (no feed here) rules still run on their own timer
        interval = self.settings.alerts.evaluation_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if self.collector is None:
                    await self._after_flush(self.clock())
                else:
                    # grouping timers (group_wait …) advance between flushes too
                    if await self.alerts.notify():
                        self.outbox.poke()
            except Exception:
                log.exception("alert round failed")

    def start(self) -> None:
        """Start the collector, the alert timer and the outbox in the running loop."""
        if self.collector is not None:
            self.collector.start()
        self.outbox.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._alert_loop()))

    async def close(self) -> None:
        """Stop the loops (one last flush) and close the metrics connection."""
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self.collector is not None:
            await self.collector.stop()
        await self.outbox.stop()
        await self.mdb.close()

    async def _slo_alerts(
        self, tenant_id: str, tenant_name: str, system: bool, now: float
    ) -> list[tuple[Rule, dict[str, str], float | None]]:
        out: list[tuple[Rule, dict[str, str], float | None]] = []
        for slo in await self.slos.list(tenant_id, system):
            st = await self.slos.status(slo, now)
            for a in st["alerts"]:
                sev = "critical" if a["severity"] == "page" else "warning"
                name = f"SLOBurn:{slo.name}"
                rule = synthetic_rule(
                    name,
                    sev,
                    f"SLO {slo.name} burns its error budget {a['burn_rate']:.1f}x over "
                    f"{a['long_window']} and {a['short_window']} (threshold {a['threshold']}x)",
                )
                labels = {
                    "alertname": name,
                    "agent": slo.agent,
                    "severity": sev,
                    "slo": slo.name,
                    "window": a["long_window"],
                }
                out.append((rule, labels, float(a["burn_rate"])))
        return out

    async def _budget_alerts(
        self, tenant_id: str, tenant_name: str, system: bool, now: float
    ) -> list[tuple[Rule, dict[str, str], float | None]]:
        st = await self.cost.check(tenant_name, now)
        if st is None or st["used"] < 0.8:
            return []
        over = st["exceeded"]
        name = "BudgetExceeded" if over else "BudgetNearlySpent"
        rule = synthetic_rule(
            name,
            "critical" if over else "warning",
            f"{tenant_name} spent {st['spent']:.2f} of {st['amount']:.2f} {st['currency']} "
            f"this {st['period']}",
        )
        labels = {"alertname": name, "agent": "*", "severity": rule.severity, "tenant": tenant_name}
        return [(rule, labels, float(st["used"]))]

    # --- composed reads (API, dashboard) ---------------------------------------------------

    async def health(
        self, agents: list[str] | None = None, window: float | None = None
    ) -> tuple[float | None, dict[str, Health]]:
        """(fleet score, per-agent scores) over the health window."""
        now = self.clock()
        w = window or self.settings.metrics.health_window
        table = await self.history.agents_table(now - w, now, agents)
        states = self.states()
        names = set(table) | set(states)
        if agents is not None:
            names &= set(agents)
        scores = {
            a: agent_health(a, table.get(a), states.get(a), self.settings.metrics.apdex_t)
            for a in sorted(names)
        }
        return fleet_health(scores), scores


async def open_for_admin(
    store: Store, database_url: str | None, data_dir: Path, *, feed: StatsFeed | None = None
) -> ObserveService:
    """The service of the control plane: settings from AGENTGATE_CONFIG, loops started;
    `feed` from the data plane when one runs in this process."""
    settings = ObserveSettings.from_env()
    svc = await ObserveService.open(store, database_url, data_dir, settings, feed=feed)
    from agentgate.observe.tracing import setup_tracing

    setup_tracing(settings.tracing)
    # before the API serves: a rule list read right after start shows the shipped rules,
    # not only after the first flush
    await svc.ensure_defaults()
    svc.start()
    return svc
