"""The alert manager: evaluates rules, keeps alert state, groups notifications into the outbox.

State per alert (one per rule and label set): pending (condition true, `for:` not yet over) →
firing → resolved. Every change is an event in the history.

Notifications follow Alertmanager's semantics and defaults, per channel and group (labels in
`alerts.grouping.group_by`, `alertname` by default):
- a new group waits `group_wait` (30 s) to collect alerts, then notifies;
- a changed group (alerts firing or resolved since) notifies at most every `group_interval` (5 m);
- an unchanged group with unacknowledged firing alerts notifies again every `repeat_interval`
  (4 h); the same alert is never sent twice in one notification (deduplication by fingerprint);
- silenced alerts are not notified; a rule's `cooldown` holds its new alerts back for that long
  after the rule last notified;
- escalation: firing and unacknowledged for `after` → the level's channels are notified (once
  per level); acknowledging stops escalation and repeats.

Notifications are written to the outbox in the same transaction as the state they report
(`alerts.outbox.Outbox` delivers them), so a restart loses none.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from agentgate.errors import Conflict, Invalid, NotFound
from agentgate.observe.alerts.channels import (
    ChannelConfig,
    Notification,
    NotifiedAlert,
    payload,
)
from agentgate.observe.alerts.rules import DEFAULT_RULES, INSTANT, OPS, Condition, Rule, render
from agentgate.observe.feed import AgentState
from agentgate.observe.history import FLEET, Signals
from agentgate.observe.settings import AlertsConfig
from agentgate.store.db import Database, Executor

__all__ = ["AlertManager", "MetricsView", "Source", "channel_from", "fingerprint", "synthetic_rule"]

Source = Callable[
    [str, str, bool, float], Awaitable[list[tuple[Rule, dict[str, str], float | None]]]
]


STATE_EVENTS = frozenset({"pending", "firing", "inactive", "resolved", "acknowledged"})
"""Alert events that change its state (what `AlertManager.on_change` hears of)."""

OnChange = Callable[[str, str, str, str], Awaitable[object]]


def synthetic_rule(name: str, severity: str, summary: str) -> Rule:
    """A rule for alerts another component decides (SLO burn, budgets): name, severity and
    annotation only; its condition is never evaluated."""
    return Rule.model_validate(
        {
            "name": name,
            "conditions": [{"metric": "requests", "op": ">", "threshold": 0}],
            "severity": severity,
            "annotations": {"summary": summary},
        }
    )


class MetricsView(Protocol):
    """What rule evaluation reads."""

    async def window(self, seconds: float) -> dict[str, Signals]:
        """Signals per agent over the last `seconds` (FLEET for the whole fleet)."""
        ...

    def states(self) -> dict[str, AgentState]:
        """The agents' current state."""
        ...

    async def custom(
        self, tenant_id: str, name: str, agg: str, labels: dict[str, str], seconds: float
    ) -> dict[str, float | None]:
        """A custom metric aggregated per agent over the last `seconds` ('' = no agent)."""
        ...


def _dumps(x: Any) -> str:
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS).decode()


def fingerprint(labels: dict[str, str]) -> str:
    """Stable id of a label set."""
    return hashlib.sha256(_dumps(labels).encode()).hexdigest()[:16]


def channel_from(kind: str, config: dict[str, Any], path: str = "$") -> ChannelConfig:
    """Validate a channel's settings (Invalid naming the field)."""
    from pydantic import TypeAdapter

    from agentgate.registry.template import json_path

    data = {**config, "kind": kind}
    try:
        adapter: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)
        return adapter.validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [p for p in err["loc"] if p not in ("slack", "email", "webhook", "alertmanager")]
        raise Invalid(
            str(err["msg"]),
            json_path([*(path.lstrip("$.").split(".") if path != "$" else []), *loc]),
        ) from None


@dataclass(slots=True)
class _Eval:
    value: float | None
    holds: bool


def _sum_states(states: dict[str, AgentState], agents: Sequence[str]) -> AgentState:
    out = AgentState(FLEET, 0, 0, 0, 0, 0)
    for a in agents:
        s = states.get(a)
        if s is not None:
            out.endpoints += s.endpoints
            out.healthy += s.healthy
            out.breakers_open += s.breakers_open
            out.in_flight += s.in_flight
            out.queued += s.queued
    return out


def _metric(c: Condition, sig: Signals | None, st: AgentState | None) -> float | None:
    m = c.metric
    if m in INSTANT:
        if st is None or st.endpoints == 0:
            return None
        return float(
            {
                "healthy_endpoints": st.healthy,
                "breakers_open": st.breakers_open,
                "queue_depth": st.queued,
                "in_flight": st.in_flight,
            }[m]
        )
    n = sig.requests if sig is not None else 0
    if m == "requests":
        return float(n)
    if m == "rate":
        return n / c.window
    if m == "status_5xx":
        return float(sig.classes[5]) if sig is not None else 0.0
    if m == "status_4xx":
        return float(sig.classes[4]) if sig is not None else 0.0
    if m == "error_rate":
        if sig is None or n == 0 or n < c.min_requests:
            return None
        return sig.error_rate
    if sig is None or n == 0 or n < c.min_requests:
        return None
    q = {"p50_latency": 0.5, "p95_latency": 0.95, "p99_latency": 0.99}[m]
    return sig.quantile(q)


class AlertManager:
    """Rules, alerts, silences, channels and notification groups of every tenant."""

    def __init__(
        self,
        db: Database,
        view: MetricsView | None,
        settings: AlertsConfig | None = None,
        clock: Callable[[], float] = time.time,
        external_url: str = "",
    ) -> None:
        self.db = db
        self.view = view
        self.settings = settings or AlertsConfig()
        self.clock = clock
        self.external_url = external_url or (self.settings.external_url or "")
        self.evaluations = 0
        # more alert sources (SLO burn rates, budgets): (tenant id, tenant name, system, now)
        # -> firing (rule, labels, value) triples
        self.sources: list[Source] = []
        # (tenant id, alert id, new state, detail) once the change committed: the control
        # plane publishes them as `alert.<state>` platform changes on the bus
        self.on_change: OnChange | None = None
        self._uncommitted: dict[int, list[tuple[str, str, str, str]]] = {}

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Executor]:
        """A transaction whose alert state changes reach `on_change` after it committed."""
        key: int | None = None
        try:
            async with self.db.transaction() as tx:
                key = id(tx)
                yield tx
        except BaseException:
            if key is not None:
                self._uncommitted.pop(key, None)
            raise
        hook = self.on_change
        for change in self._uncommitted.pop(key, []) if key is not None else []:
            if hook is not None:
                await hook(*change)

    async def _has_active(self, tenant_id: str) -> bool:
        r = await self.db.fetchrow(
            "SELECT id FROM alerts WHERE tenant_id = ? AND active = 1 LIMIT 1", tenant_id
        )
        return r is not None

    # --- tenants --------------------------------------------------------------------------

    async def _tenants(self) -> dict[str, str]:
        rows = await self.db.fetch("SELECT id, name FROM tenants")
        return {r["id"]: r["name"] for r in rows}

    @staticmethod
    def scope_agents(tenant_name: str, system: bool, agents: Sequence[str]) -> list[str]:
        """Agents a tenant's rules see: all for the system tenant, else `<tenant>/…` ones."""
        if system:
            return [a for a in agents if a != FLEET]
        prefix = tenant_name + "/"
        return [a for a in agents if a.startswith(prefix)]

    # --- rules ----------------------------------------------------------------------------

    async def rules(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every rule of the tenant, as JSON with `builtin`."""
        rows = await self.db.fetch(
            "SELECT name, body, builtin FROM alert_rules WHERE tenant_id = ? ORDER BY name",
            tenant_id,
        )
        return [{**orjson.loads(r["body"]), "builtin": bool(r["builtin"])} for r in rows]

    async def rule(self, tenant_id: str, name: str) -> dict[str, Any]:
        """One rule (NotFound)."""
        r = await self.db.fetchrow(
            "SELECT body, builtin FROM alert_rules WHERE tenant_id = ? AND name = ?",
            tenant_id,
            name,
        )
        if r is None:
            raise NotFound(f"alert rule {name!r} not found")
        return {**orjson.loads(r["body"]), "builtin": bool(r["builtin"])}

    async def put_rule(self, tenant_id: str, rule: Rule, *, builtin: bool = False) -> bool:
        """Create or replace a rule; True when it was created."""
        now = self.clock()
        body = _dumps(rule.to_json())
        async with self.db.transaction() as tx:
            old = await tx.fetchrow(
                "SELECT name FROM alert_rules WHERE tenant_id = ? AND name = ?",
                tenant_id,
                rule.name,
            )
            if old is None:
                await tx.execute(
                    "INSERT INTO alert_rules (tenant_id, name, body, builtin, enabled, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    tenant_id,
                    rule.name,
                    body,
                    1 if builtin else 0,
                    1 if rule.enabled else 0,
                    now,
                    now,
                )
                return True
            await tx.execute(
                "UPDATE alert_rules SET body = ?, enabled = ?, updated_at = ? "
                "WHERE tenant_id = ? AND name = ?",
                body,
                1 if rule.enabled else 0,
                now,
                tenant_id,
                rule.name,
            )
            return False

    async def delete_rule(self, tenant_id: str, name: str) -> None:
        """Delete a rule; its active alerts resolve."""
        now = self.clock()
        async with self._tx() as tx:
            n = await tx.execute(
                "DELETE FROM alert_rules WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
            if not n:
                raise NotFound(f"alert rule {name!r} not found")
            for a in await tx.fetch(
                "SELECT id FROM alerts WHERE tenant_id = ? AND rule = ? AND active = 1",
                tenant_id,
                name,
            ):
                await self._resolve(tx, tenant_id, a["id"], now, "rule deleted")

    async def install_defaults(self, tenant_id: str) -> int:
        """Add the shipped rules the tenant does not have yet; returns how many."""
        have = {r["name"] for r in await self.rules(tenant_id)}
        n = 0
        for rule in DEFAULT_RULES:
            if rule.name not in have:
                await self.put_rule(tenant_id, rule, builtin=True)
                n += 1
        return n

    # --- evaluation -----------------------------------------------------------------------

    async def evaluate(self, now: float | None = None) -> int:
        """Evaluate every enabled rule of every tenant; returns the number of state changes."""
        if self.view is None:
            return 0
        now = self.clock() if now is None else now
        tenants = await self._tenants()
        rows = await self.db.fetch(
            "SELECT tenant_id, body FROM alert_rules WHERE enabled = 1 ORDER BY tenant_id, name"
        )
        by_tenant: dict[str, list[Rule]] = {}
        for r in rows:
            by_tenant.setdefault(r["tenant_id"], []).append(Rule.model_validate_json(r["body"]))
        windows: dict[float, dict[str, Signals]] = {}
        states = self.view.states()
        changes = 0
        for tenant_id, tname in tenants.items():
            rules = by_tenant.get(tenant_id, [])
            system = tname == "system"
            results: dict[tuple[str, str], tuple[Rule, dict[str, str], float | None]] = {}
            for rule in rules:
                for c in rule.conditions:
                    if c.metric not in INSTANT and c.metric != "custom" and c.window not in windows:
                        windows[c.window] = await self.view.window(c.window)
                known = set(states)
                for w in windows.values():
                    known.update(w)
                if rule.agent == "*":
                    targets = self.scope_agents(tname, system, sorted(known))
                elif rule.agent == "fleet":
                    targets = [FLEET]
                else:
                    targets = self.scope_agents(tname, system, [rule.agent])
                customs: dict[int, dict[str, float | None]] = {}
                for i, c in enumerate(rule.conditions):
                    if c.metric == "custom" and c.custom is not None:
                        customs[i] = await self.view.custom(
                            tenant_id, c.custom.name, c.custom.agg, c.custom.labels, c.window
                        )
                scoped = self.scope_agents(tname, system, sorted(known))
                for agent in targets:
                    evs = []
                    for i, c in enumerate(rule.conditions):
                        if c.metric == "custom":
                            vals = customs.get(i, {})
                            v = vals.get(agent if agent != FLEET else "", vals.get(agent))
                        else:
                            st: AgentState | None
                            if agent == FLEET:
                                st = _sum_states(states, scoped)
                                # only the system tenant sees the whole fleet's traffic
                                sig = windows.get(c.window, {}).get(FLEET) if system else None
                            else:
                                st = states.get(agent)
                                sig = windows.get(c.window, {}).get(agent)
                            v = _metric(c, sig, st)
                        evs.append(_Eval(v, v is not None and OPS[c.op](v, c.threshold)))
                    holds = (any if rule.match == "any" else all)(e.holds for e in evs)
                    value = next((e.value for e in evs if e.holds), evs[0].value)
                    labels = {
                        "alertname": rule.name,
                        "agent": agent,
                        "severity": rule.severity,
                        **rule.labels,
                    }
                    if holds:
                        results[(rule.name, fingerprint(labels))] = (rule, labels, value)
            for source in self.sources:
                for rule, labels, value in await source(tenant_id, tname, system, now):
                    results[(rule.name, fingerprint(labels))] = (rule, labels, value)
            if not results and not await self._has_active(tenant_id):
                continue
            changes += await self._apply(tenant_id, rules, results, now)
        self.evaluations += 1
        return changes

    async def _event(
        self, tx: Executor, tenant_id: str, alert_id: str, at: float, kind: str, detail: str = ""
    ) -> None:
        if self.on_change is not None and kind in STATE_EVENTS:
            self._uncommitted.setdefault(id(tx), []).append((tenant_id, alert_id, kind, detail))
        await tx.execute(
            "INSERT INTO alert_events (id, tenant_id, alert_id, at, kind, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            uuid.uuid4().hex,
            tenant_id,
            alert_id,
            at,
            kind,
            detail,
        )

    async def _resolve(
        self, tx: Executor, tenant_id: str, alert_id: str, now: float, why: str
    ) -> None:
        await tx.execute(
            "UPDATE alerts SET state = 'resolved', active = 0, resolved_at = ?, updated_at = ? "
            "WHERE id = ?",
            now,
            now,
            alert_id,
        )
        await self._event(tx, tenant_id, alert_id, now, "resolved", why)

    async def _apply(
        self,
        tenant_id: str,
        rules: Sequence[Rule],
        results: dict[tuple[str, str], tuple[Rule, dict[str, str], float | None]],
        now: float,
    ) -> int:
        changes = 0
        async with self._tx() as tx:
            active = await tx.fetch(
                "SELECT id, rule, fingerprint, state, pending_since FROM alerts "
                "WHERE tenant_id = ? AND active = 1",
                tenant_id,
            )
            seen: set[tuple[str, str]] = set()
            for a in active:
                key = (a["rule"], a["fingerprint"])
                seen.add(key)
                hit = results.get(key)
                if hit is None:
                    if a["state"] == "pending":
                        await tx.execute(
                            "UPDATE alerts SET active = 0, state = 'inactive', updated_at = ? "
                            "WHERE id = ?",
                            now,
                            a["id"],
                        )
                        await self._event(
                            tx, tenant_id, a["id"], now, "inactive", "condition no longer holds"
                        )
                    else:
                        await self._resolve(
                            tx, tenant_id, a["id"], now, "condition no longer holds"
                        )
                    changes += 1
                    continue
                rule, labels, value = hit
                if a["state"] == "pending" and now - a["pending_since"] >= rule.for_:
                    await tx.execute(
                        "UPDATE alerts SET state = 'firing', fired_at = ?, value = ?, "
                        "updated_at = ? "
                        "WHERE id = ?",
                        now,
                        value,
                        now,
                        a["id"],
                    )
                    await self._event(tx, tenant_id, a["id"], now, "firing", f"value {value}")
                    changes += 1
                else:
                    await tx.execute(
                        "UPDATE alerts SET value = ?, updated_at = ? WHERE id = ?",
                        value,
                        now,
                        a["id"],
                    )
            for key, (rule, labels, value) in results.items():
                if key in seen:
                    continue
                aid = uuid.uuid4().hex
                firing = rule.for_ <= 0
                vals: dict[str, Any] = {
                    **labels,
                    "rule": rule.name,
                    "value": value if value is not None else "n/a",
                    "threshold": rule.conditions[0].threshold,
                }
                ann = {k: render(v, vals) for k, v in rule.annotations.items()}
                await tx.execute(
                    "INSERT INTO alerts (id, tenant_id, rule, fingerprint, labels, annotations, "
                    "severity, state, value, active, pending_since, fired_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    aid,
                    tenant_id,
                    rule.name,
                    key[1],
                    _dumps(labels),
                    _dumps(ann),
                    rule.severity,
                    "firing" if firing else "pending",
                    value,
                    now,
                    now if firing else None,
                    now,
                )
                await self._event(
                    tx, tenant_id, aid, now, "firing" if firing else "pending", f"value {value}"
                )
                changes += 1
        return changes

    # --- alerts ---------------------------------------------------------------------------

    @staticmethod
    def _alert(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": r["id"],
            "rule": r["rule"],
            "fingerprint": r["fingerprint"],
            "labels": orjson.loads(r["labels"]),
            "annotations": orjson.loads(r["annotations"]),
            "severity": r["severity"],
            "state": r["state"],
            "value": r["value"],
            "pending_since": r["pending_since"],
            "fired_at": r["fired_at"],
            "resolved_at": r["resolved_at"],
            "acked_at": r["acked_at"],
            "acked_by": r["acked_by"],
            "escalation_level": r["escalation_level"],
        }

    async def active(self, tenant_id: str) -> list[dict[str, Any]]:
        """Pending and firing alerts, newest first, with `silenced`."""
        rows = await self.db.fetch(
            "SELECT * FROM alerts WHERE tenant_id = ? AND active = 1 ORDER BY pending_since DESC",
            tenant_id,
        )
        sil = await self._silences(tenant_id, self.clock())
        out = []
        for r in rows:
            a = self._alert(r)
            a["silenced"] = any(_matches(m, a["labels"]) for m in sil)
            out.append(a)
        return out

    async def get(self, tenant_id: str, alert_id: str) -> dict[str, Any]:
        """One alert with its events."""
        r = await self.db.fetchrow(
            "SELECT * FROM alerts WHERE tenant_id = ? AND id = ?", tenant_id, alert_id
        )
        if r is None:
            raise NotFound(f"alert {alert_id!r} not found")
        a = self._alert(r)
        ev = await self.db.fetch(
            "SELECT at, kind, detail FROM alert_events WHERE alert_id = ? ORDER BY at", alert_id
        )
        a["events"] = [dict(e) for e in ev]
        return a

    async def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> dict[str, Any]:
        """Acknowledge an active alert (stops escalation and repeats)."""
        now = self.clock()
        async with self._tx() as tx:
            r = await tx.fetchrow(
                "SELECT active, acked_at FROM alerts WHERE tenant_id = ? AND id = ?",
                tenant_id,
                alert_id,
            )
            if r is None:
                raise NotFound(f"alert {alert_id!r} not found")
            if not r["active"]:
                raise Conflict("the alert is no longer active")
            if r["acked_at"] is None:
                await tx.execute(
                    "UPDATE alerts SET acked_at = ?, acked_by = ?, updated_at = ? WHERE id = ?",
                    now,
                    by,
                    now,
                    alert_id,
                )
                await self._event(tx, tenant_id, alert_id, now, "acknowledged", by)
        return await self.get(tenant_id, alert_id)

    async def history(
        self,
        tenant_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """State changes, newest first."""
        rows = await self.db.fetch(
            "SELECT e.at, e.kind, e.detail, a.id, a.rule, a.labels, a.severity FROM alert_events e "
            "JOIN alerts a ON a.id = e.alert_id WHERE e.tenant_id = ? AND e.at >= ? AND e.at <= ? "
            "ORDER BY e.at DESC LIMIT ?",
            tenant_id,
            since if since is not None else 0.0,
            until if until is not None else 1e18,
            limit,
        )
        return [
            {
                "at": r["at"],
                "kind": r["kind"],
                "detail": r["detail"],
                "alert_id": r["id"],
                "rule": r["rule"],
                "labels": orjson.loads(r["labels"]),
                "severity": r["severity"],
            }
            for r in rows
        ]

    async def stats(self, tenant_id: str, since: float | None = None) -> dict[str, Any]:
        """Counts and time to acknowledge / resolve (mean, median, max), overall and per rule."""
        rows = await self.db.fetch(
            "SELECT rule, fired_at, acked_at, resolved_at FROM alerts WHERE tenant_id = ? "
            "AND fired_at IS NOT NULL AND fired_at >= ?",
            tenant_id,
            since if since is not None else 0.0,
        )

        def summarize(rs: list[dict[str, Any]]) -> dict[str, Any]:
            tta = sorted(r["acked_at"] - r["fired_at"] for r in rs if r["acked_at"] is not None)
            ttr = sorted(
                r["resolved_at"] - r["fired_at"] for r in rs if r["resolved_at"] is not None
            )

            def dist(xs: list[float]) -> dict[str, float | None]:
                if not xs:
                    return {"mean": None, "median": None, "max": None}
                return {"mean": sum(xs) / len(xs), "median": xs[len(xs) // 2], "max": xs[-1]}

            return {
                "fired": len(rs),
                "acknowledged": len(tta),
                "resolved": len(ttr),
                "time_to_acknowledge": dist(tta),
                "time_to_resolve": dist(ttr),
            }

        by_rule: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_rule.setdefault(r["rule"], []).append(r)
        return {
            **summarize(rows),
            "rules": {k: summarize(v) for k, v in sorted(by_rule.items())},
        }

    # --- silences -------------------------------------------------------------------------

    async def _silences(self, tenant_id: str, now: float) -> list[list[dict[str, Any]]]:
        rows = await self.db.fetch(
            "SELECT matchers FROM alert_silences WHERE tenant_id = ? AND starts_at <= ? "
            "AND ends_at > ?",
            tenant_id,
            now,
            now,
        )
        return [orjson.loads(r["matchers"]) for r in rows]

    async def silences(self, tenant_id: str, include_expired: bool = False) -> list[dict[str, Any]]:
        """Silences (active and future; with expired ones on request)."""
        rows = await self.db.fetch(
            "SELECT * FROM alert_silences WHERE tenant_id = ? AND ends_at > ? ORDER BY starts_at",
            tenant_id,
            0.0 if include_expired else self.clock(),
        )
        return [
            {
                "id": r["id"],
                "matchers": orjson.loads(r["matchers"]),
                "starts_at": r["starts_at"],
                "ends_at": r["ends_at"],
                "created_by": r["created_by"],
                "comment": r["comment"],
            }
            for r in rows
        ]

    async def silence(
        self,
        tenant_id: str,
        matchers: list[dict[str, Any]],
        starts_at: float | None,
        ends_at: float,
        by: str,
        comment: str = "",
    ) -> dict[str, Any]:
        """Add a silence: alerts whose labels match every matcher are not notified."""
        now = self.clock()
        start = starts_at if starts_at is not None else now
        if ends_at <= start:
            raise Invalid("ends_at must be after starts_at", "$.ends_at")
        for i, m in enumerate(matchers):
            if m.get("regex"):
                try:
                    re.compile(str(m.get("value", "")))
                except re.error as e:
                    raise Invalid(
                        f"bad regular expression: {e}", f"$.matchers[{i}].value"
                    ) from None
        sid = uuid.uuid4().hex
        await self.db.execute(
            "INSERT INTO alert_silences (id, tenant_id, matchers, starts_at, ends_at, created_by, "
            "comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            sid,
            tenant_id,
            _dumps(matchers),
            start,
            ends_at,
            by,
            comment,
            now,
        )
        return {
            "id": sid,
            "matchers": matchers,
            "starts_at": start,
            "ends_at": ends_at,
            "created_by": by,
            "comment": comment,
        }

    async def expire_silence(self, tenant_id: str, silence_id: str) -> None:
        """End a silence now."""
        n = await self.db.execute(
            "UPDATE alert_silences SET ends_at = ? WHERE tenant_id = ? AND id = ? AND ends_at > ?",
            self.clock(),
            tenant_id,
            silence_id,
            self.clock(),
        )
        if not n:
            raise NotFound(f"active silence {silence_id!r} not found")

    # --- channels -------------------------------------------------------------------------

    async def channels(self, tenant_id: str) -> dict[str, ChannelConfig]:
        """The tenant's channels by name."""
        rows = await self.db.fetch(
            "SELECT name, kind, config FROM alert_channels WHERE tenant_id = ? ORDER BY name",
            tenant_id,
        )
        return {r["name"]: channel_from(r["kind"], orjson.loads(r["config"])) for r in rows}

    async def channel(self, tenant_id: str, name: str) -> ChannelConfig:
        """One channel (NotFound)."""
        r = await self.db.fetchrow(
            "SELECT kind, config FROM alert_channels WHERE tenant_id = ? AND name = ?",
            tenant_id,
            name,
        )
        if r is None:
            raise NotFound(f"channel {name!r} not found")
        return channel_from(r["kind"], orjson.loads(r["config"]))

    async def put_channel(self, tenant_id: str, name: str, c: ChannelConfig) -> bool:
        """Create or replace a channel; True when created."""
        if not re.match(r"^[A-Za-z0-9_.-]{1,100}$", name):
            raise Invalid("channel name must be 1-100 of A-Z a-z 0-9 _ . -", "$.name")
        now = self.clock()
        cfg = _dumps(c.model_dump(mode="json", by_alias=True, exclude={"kind"}))
        async with self.db.transaction() as tx:
            old = await tx.fetchrow(
                "SELECT name FROM alert_channels WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
            if old is None:
                await tx.execute(
                    "INSERT INTO alert_channels (tenant_id, name, kind, config, created_at, "
                    "updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    tenant_id,
                    name,
                    c.kind,
                    cfg,
                    now,
                    now,
                )
                return True
            await tx.execute(
                "UPDATE alert_channels SET kind = ?, config = ?, updated_at = ? "
                "WHERE tenant_id = ? AND name = ?",
                c.kind,
                cfg,
                now,
                tenant_id,
                name,
            )
            return False

    async def delete_channel(self, tenant_id: str, name: str) -> None:
        """Delete a channel (its queued notifications are dropped as dead)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM alert_channels WHERE tenant_id = ? AND name = ?", tenant_id, name
            )
            if not n:
                raise NotFound(f"channel {name!r} not found")
            await tx.execute(
                "UPDATE alert_outbox SET state = 'dead', last_error = 'channel deleted' "
                "WHERE tenant_id = ? AND channel = ? AND state = 'pending'",
                tenant_id,
                name,
            )

    def test_notification(self, tenant_id: str, channel: str) -> Notification:
        """A notification with one made-up firing alert, for "send test"."""
        now = self.clock()
        labels = {"alertname": "AgentgateTest", "severity": "info", "agent": "test"}
        return Notification(
            group_key=f"test:{channel}",
            receiver=channel,
            group_labels={"alertname": "AgentgateTest"},
            alerts=[
                NotifiedAlert(
                    fingerprint=fingerprint(labels),
                    status="firing",
                    labels=labels,
                    annotations={"summary": "Test notification from agentgate: this channel works"},
                    starts_at=now,
                    ends_at=None,
                )
            ],
            external_url=self.external_url,
            key=f"test-{uuid.uuid4().hex}",
        )

    # --- notification ---------------------------------------------------------------------

    async def notify(self, now: float | None = None) -> int:
        """Group alerts per channel and enqueue due notifications; returns how many."""
        now = self.clock() if now is None else now
        g = self.settings.grouping
        rows = await self.db.fetch(
            "SELECT DISTINCT tenant_id FROM alerts WHERE active = 1 OR resolved_at >= ?",
            now - 2 * g.repeat_interval,
        )
        queued = 0
        for t in rows:
            queued += await self._notify_tenant(t["tenant_id"], now)
        return queued

    async def _notify_tenant(self, tenant_id: str, now: float) -> int:
        g = self.settings.grouping
        channels = await self.channels(tenant_id)
        if not channels:
            return 0
        rules = {
            r["name"]: (Rule.model_validate_json(r["body"]), r["last_notified_at"])
            for r in await self.db.fetch(
                "SELECT name, body, last_notified_at FROM alert_rules WHERE tenant_id = ?",
                tenant_id,
            )
        }
        sil = await self._silences(tenant_id, now)
        queued = 0
        async with self.db.transaction() as tx:
            alerts = [
                dict(r)
                for r in await tx.fetch(
                    "SELECT a.*, n.channel AS n_channel, n.state AS n_state FROM alerts a "
                    "LEFT JOIN alert_notices n ON n.alert_id = a.id "
                    "WHERE a.tenant_id = ? AND (a.state = 'firing' OR (a.state = 'resolved' "
                    "AND a.resolved_at >= ?))",
                    tenant_id,
                    now - 2 * g.repeat_interval,
                )
            ]
            notices: dict[str, dict[str, str]] = {}
            by_id: dict[str, dict[str, Any]] = {}
            for r in alerts:
                by_id[r["id"]] = r
                if r["n_channel"] is not None:
                    notices.setdefault(r["id"], {})[r["n_channel"]] = r["n_state"]
            groups: dict[tuple[str, str], list[tuple[dict[str, Any], str]]] = {}
            group_labels: dict[str, dict[str, str]] = {}
            notified_rules: set[str] = set()
            for a in by_id.values():
                labels = orjson.loads(a["labels"])
                rule_info = rules.get(a["rule"])
                targets = (
                    list(rule_info[0].channels)
                    if rule_info and rule_info[0].channels
                    else list(channels)
                )
                silenced = any(_matches(m, labels) for m in sil)
                for ch in targets:
                    if ch not in channels:
                        continue
                    told = notices.get(a["id"], {}).get(ch)
                    if a["state"] == "firing":
                        if silenced:
                            continue
                        if told is None and rule_info is not None:
                            rule, last = rule_info
                            if rule.cooldown and last is not None and now - last < rule.cooldown:
                                continue
                        status = "firing"
                    else:
                        if told != "firing":
                            continue  # never told it fired: nothing to resolve
                        status = "resolved"
                    gl = {k: labels.get(k, "") for k in g.group_by}
                    gk = f"{ch}:{_dumps(gl)}"
                    group_labels[gk] = gl
                    groups.setdefault((gk, ch), []).append((a, status))
            state_rows = {
                (r["group_key"], r["channel"]): dict(r)
                for r in await tx.fetch("SELECT * FROM alert_groups WHERE tenant_id = ?", tenant_id)
            }
            for (gk, ch), members in groups.items():
                members.sort(key=lambda m: m[0]["fingerprint"])
                digest = hashlib.sha256(
                    _dumps([(m[0]["fingerprint"], m[1]) for m in members]).encode()
                ).hexdigest()[:16]
                st = state_rows.get((gk, ch))
                if st is None:
                    await tx.execute(
                        "INSERT INTO alert_groups (tenant_id, group_key, channel, first_seen, "
                        "sent) "
                        "VALUES (?, ?, ?, ?, 0)",
                        tenant_id,
                        gk,
                        ch,
                        now,
                    )
                    st = {"first_seen": now, "last_sent_at": None, "last_digest": None, "sent": 0}
                firing_unacked = any(m[1] == "firing" and m[0]["acked_at"] is None for m in members)
                if st["sent"] == 0:
                    due = now >= st["first_seen"] + g.group_wait
                elif digest != st["last_digest"]:
                    due = now >= (st["last_sent_at"] or 0) + g.group_interval
                else:
                    due = firing_unacked and now >= (st["last_sent_at"] or 0) + g.repeat_interval
                if not due:
                    continue
                n = Notification(
                    group_key=gk,
                    receiver=ch,
                    group_labels=group_labels[gk],
                    alerts=[
                        NotifiedAlert(
                            fingerprint=a["fingerprint"],
                            status=status,  # type: ignore[arg-type]
                            labels=orjson.loads(a["labels"]),
                            annotations=orjson.loads(a["annotations"]),
                            starts_at=a["fired_at"] or a["pending_since"],
                            ends_at=a["resolved_at"],
                            value=a["value"],
                            acked=a["acked_at"] is not None,
                        )
                        for a, status in members
                    ],
                    external_url=self.external_url,
                    key=f"{hashlib.sha256(f'{tenant_id}|{gk}'.encode()).hexdigest()[:12]}-{digest}-{st['sent']}",
                )
                await self._enqueue(tx, tenant_id, ch, channels[ch].kind, n, now)
                await tx.execute(
                    "UPDATE alert_groups SET last_sent_at = ?, last_digest = ?, sent = sent + 1 "
                    "WHERE tenant_id = ? AND group_key = ? AND channel = ?",
                    now,
                    digest,
                    tenant_id,
                    gk,
                    ch,
                )
                for a, status in members:
                    await tx.execute(
                        "INSERT INTO alert_notices (alert_id, channel, state, at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (alert_id, channel) "
                        "DO UPDATE SET state = excluded.state, at = excluded.at",
                        a["id"],
                        ch,
                        status,
                        now,
                    )
                    if notices.get(a["id"], {}).get(ch) != status:
                        await self._event(
                            tx, tenant_id, a["id"], now, "notified", f"{ch}: {status}"
                        )
                    notified_rules.add(a["rule"])
                queued += 1
            # groups with nothing left to say start over (group_wait applies to their next alert)
            for gk, ch in state_rows:
                if (gk, ch) not in groups:
                    await tx.execute(
                        "DELETE FROM alert_groups WHERE tenant_id = ? AND group_key = ? "
                        "AND channel = ?",
                        tenant_id,
                        gk,
                        ch,
                    )
            for name in notified_rules:
                await tx.execute(
                    "UPDATE alert_rules SET last_notified_at = ? WHERE tenant_id = ? AND name = ?",
                    now,
                    tenant_id,
                    name,
                )
            queued += await self._escalate(tx, tenant_id, by_id, rules, channels, sil, now)
        return queued

    async def _escalate(
        self,
        tx: Executor,
        tenant_id: str,
        alerts: dict[str, dict[str, Any]],
        rules: dict[str, tuple[Rule, Any]],
        channels: dict[str, ChannelConfig],
        sil: list[list[dict[str, Any]]],
        now: float,
    ) -> int:
        queued = 0
        for a in alerts.values():
            if a["state"] != "firing" or a["acked_at"] is not None or a["fired_at"] is None:
                continue
            info = rules.get(a["rule"])
            if info is None or not info[0].escalation:
                continue
            labels = orjson.loads(a["labels"])
            if any(_matches(m, labels) for m in sil):
                continue
            level = int(a["escalation_level"])
            steps = info[0].escalation
            if level >= len(steps) or now - a["fired_at"] < steps[level].after:
                continue
            step = steps[level]
            for ch in step.channels:
                if ch not in channels:
                    continue
                n = Notification(
                    group_key=f"escalation:{a['id']}:{level + 1}",
                    receiver=ch,
                    group_labels={"alertname": a["rule"]},
                    alerts=[
                        NotifiedAlert(
                            fingerprint=a["fingerprint"],
                            status="firing",
                            labels=labels,
                            annotations=orjson.loads(a["annotations"]),
                            starts_at=a["fired_at"],
                            ends_at=None,
                            value=a["value"],
                        )
                    ],
                    external_url=self.external_url,
                    key=f"esc-{a['id']}-{level + 1}",
                    title_prefix=f"[ESCALATED L{level + 1}] ",
                )
                await self._enqueue(tx, tenant_id, ch, channels[ch].kind, n, now)
                queued += 1
            await tx.execute(
                "UPDATE alerts SET escalation_level = ?, updated_at = ? WHERE id = ?",
                level + 1,
                now,
                a["id"],
            )
            await self._event(
                tx,
                tenant_id,
                a["id"],
                now,
                "escalated",
                f"level {level + 1}: {', '.join(step.channels)}",
            )
        return queued

    async def _enqueue(
        self, tx: Executor, tenant_id: str, channel: str, kind: str, n: Notification, now: float
    ) -> None:
        await tx.execute(
            "INSERT INTO alert_outbox (id, tenant_id, channel, kind, payload, state, attempts, "
            "next_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
            uuid.uuid4().hex,
            tenant_id,
            channel,
            kind,
            _dumps(payload(kind, n)),
            now,
            now,
        )


def _matches(matchers: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Alertmanager matchers: every one must hold (`regex` full-matches, `equal: false` negates)."""
    for m in matchers:
        v = labels.get(str(m.get("name", "")), "")
        want = str(m.get("value", ""))
        ok = re.fullmatch(want, v) is not None if m.get("regex") else v == want
        if m.get("equal", True) is False:
            ok = not ok
        if not ok:
            return False
    return bool(matchers)
