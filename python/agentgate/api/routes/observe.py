"""`/api/metrics/…`, `/api/system/monitoring`, `/api/health/score`: history, custom metrics,
health scores and host/process figures.

Reads need `agent:read`, recording custom metrics and thresholds `agent:update`. A tenant's
keys see the agents of their tenant (`<tenant>/<agent>`); system admin keys see every agent and
the fleet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agentgate.api.routes._common import Context, body, json, query_float, query_int
from agentgate.errors import Invalid
from agentgate.observe.alerts.rules import Condition, Custom, Rule
from agentgate.observe.custom import AGGREGATIONS, Point
from agentgate.observe.history import FLEET
from agentgate.observe.service import ObserveService
from agentgate.tenancy import Principal

__all__ = ["AgentScope", "agent_scope", "check_rule_agent", "routes", "time_range"]

MAX_RANGE = 400 * 86400.0


class PointIn(BaseModel):
    """One value to record."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["counter", "gauge", "histogram"] = "gauge"
    value: float
    labels: dict[str, str] = {}
    agent: str = Field(default="", max_length=300)
    at: float | None = None


class RecordIn(BaseModel):
    """A batch of points."""

    model_config = ConfigDict(extra="forbid")
    points: list[PointIn] = Field(min_length=1, max_length=10_000)


class ThresholdIn(BaseModel):
    """A threshold on a custom metric: an alert rule named `threshold:<metric>`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    agg: Literal["avg", "min", "max", "sum", "count", "last", "rate", "p50", "p95", "p99"] = "avg"
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    value: float
    window: str | float = "5m"
    for_: str | float = Field(default=0, alias="for")
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[str, str] = {}
    agent: str = "*"
    channels: list[str] = []


def time_range(request: Request, default: float = 3600.0) -> tuple[float, float]:
    """`start`/`end` (epoch seconds) or `range` (seconds back from now) from the query."""
    import time

    now = time.time()
    end = query_float(request, "end")
    start = query_float(request, "start")
    back = query_float(request, "range")
    end = now if end is None else end
    if start is None:
        start = end - (back if back is not None else default)
    if not 0 < end - start <= MAX_RANGE:
        raise Invalid("the range must be positive and at most 400 days", "$.query.start")
    return start, end


class AgentScope:
    """Which agents a principal may see."""

    def __init__(self, system: bool, tenant_name: str) -> None:
        self.system = system
        self.prefix = tenant_name + "/"

    def allows(self, agent: str) -> bool:
        """May the caller see this agent (FLEET only for system keys)?"""
        return self.system or agent.startswith(self.prefix)

    def filter(self, agents: list[str]) -> list[str]:
        """The visible ones."""
        return [a for a in agents if a != FLEET and self.allows(a)]


async def agent_scope(ctx: Context, p: Principal) -> AgentScope:
    """The caller's agent scope."""
    if p.system:
        return AgentScope(True, "")
    t = await ctx.store.system.tenants.get(p.tenant_id)
    return AgentScope(False, t.name)


async def check_rule_agent(ctx: Context, p: Principal, agent: str, path: str = "$.agent") -> None:
    """A tenant's rule watches every agent of its own (`*`), its fleet, or one agent of its
    own; naming another tenant's agent is an error (the rule could never fire)."""
    if agent in ("*", "fleet"):
        return
    if not (await agent_scope(ctx, p)).allows(agent):
        raise Invalid(f"agent {agent!r} is not one of your tenant's", path)


def routes(ctx: Context, svc: ObserveService) -> list[Route]:
    """The metrics, system and health routes."""

    async def summary(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        scope = await agent_scope(ctx, p)
        start, end = time_range(request)
        agent = request.query_params.get("agent", FLEET)
        route = request.query_params.get("route", FLEET)
        if agent == FLEET and not scope.system:
            visible = scope.filter(list(svc.states()) + await svc.history.known_agents(start))
            s = await svc.history.summary(start, end, agents=visible)
        else:
            if agent != FLEET and not scope.allows(agent):
                return json({"agent": agent, **_empty(start, end)})
            s = await svc.history.summary(start, end, agent=agent, route=route)
        return json({"agent": agent, "route": route, **s.to_dict()})

    async def series(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        scope = await agent_scope(ctx, p)
        start, end = time_range(request)
        agent = request.query_params.get("agent", FLEET)
        if (agent == FLEET and not scope.system) or (agent != FLEET and not scope.allows(agent)):
            return json({"agent": agent, "step": 0, "points": []})
        points = query_int(request, "points", 120, 2, 2000)
        step, pts = await svc.history.series(start, end, agent=agent, points=points)
        return json({"agent": agent, "step": step, "points": [x.to_dict() for x in pts]})

    async def agents_table(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        scope = await agent_scope(ctx, p)
        start, end = time_range(request)
        table = await svc.history.agents_table(start, end)
        states = svc.states()
        names = scope.filter(sorted(set(table) | set(states)))
        _, scores = await svc.health(names)
        out = []
        for a in names:
            row: dict[str, Any] = {"agent": a}
            row.update(table[a].to_dict() if a in table else _empty(start, end))
            st = states.get(a)
            row["state"] = (
                None
                if st is None
                else {
                    "endpoints": st.endpoints,
                    "healthy": st.healthy,
                    "breakers_open": st.breakers_open,
                    "in_flight": st.in_flight,
                    "queued": st.queued,
                }
            )
            h = scores.get(a)
            row["health"] = h.to_dict() if h is not None else None
            out.append(row)
        return json(out)

    async def health_score(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        scope = await agent_scope(ctx, p)
        names = scope.filter(
            list(svc.states())
            + await svc.history.known_agents(svc.clock() - svc.settings.metrics.health_window)
        )
        fleet, scores = await svc.health(names)
        return json(
            {
                "score": fleet,
                "window": svc.settings.metrics.health_window,
                "agents": [h.to_dict() for h in scores.values()],
            }
        )

    async def system(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        snap = svc.system.snapshot()
        if not p.system:
            # other tenants share the host: they see their agents' figures, not the host's
            snap = {"at": snap["at"], "host": None, "processes": []}
        return json(snap)

    async def record(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        scope = await agent_scope(ctx, p)
        data = await body(request, RecordIn)
        pts = []
        for i, x in enumerate(data.points):
            if x.agent and not scope.allows(x.agent):
                raise Invalid(
                    f"agent {x.agent!r} is not one of your tenant's", f"$.points[{i}].agent"
                )
            pts.append(
                Point(x.name, x.kind, x.value, tuple(sorted(x.labels.items())), x.agent, x.at)
            )
        n = await svc.custom.record(p.tenant_id, pts)
        return json({"recorded": n}, status=202)

    def _labels(request: Request) -> dict[str, str]:
        out = {}
        for k, v in request.query_params.multi_items():
            if k.startswith("label."):
                out[k[6:]] = v
        return out

    async def query(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        q = request.query_params
        name = q.get("name")
        if not name:
            return json({"metrics": await svc.custom.names(p.tenant_id)})
        start, end, agg, by = _custom_query(request)
        step = query_int(request, "step", 0, 0, 86400 * 7) if "step" in q else None
        res = await svc.custom.query(
            p.tenant_id,
            name,
            agg=agg,
            start=start,
            end=end,
            agent=q.get("agent"),
            labels=_labels(request),
            by=by,
            step=step,
        )
        return json({"name": name, "agg": agg, "by": by, "results": res})

    async def export(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        q = request.query_params
        fmt = q.get("format", "jsonl")
        if fmt not in ("jsonl", "csv"):
            raise Invalid("format must be jsonl or csv", "$.query.format")
        name = q.get("name")
        if not name:
            raise Invalid("name is required", "$.query.name")
        start, end, agg, by = _custom_query(request)
        step = query_int(request, "step", 60, 1, 86400 * 7)
        res = await svc.custom.query(
            p.tenant_id,
            name,
            agg=agg,
            start=start,
            end=end,
            labels=_labels(request),
            by=by,
            step=step,
        )

        async def lines() -> AsyncIterator[bytes]:
            if fmt == "csv":
                buf = io.StringIO()
                w = csv.writer(buf)
                w.writerow(["time", "name", "agg", *by, "value"])
                for s in res:
                    for t, v in s["points"]:
                        if v is not None:
                            w.writerow([t, name, agg, *(s["group"][b] for b in by), v])
                yield buf.getvalue().encode()
                return
            for s in res:
                for t, v in s["points"]:
                    if v is not None:
                        yield orjson.dumps(
                            {"time": t, "name": name, "agg": agg, **s["group"], "value": v},
                            option=orjson.OPT_APPEND_NEWLINE,
                        )

        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(lines(), media_type=media)

    async def put_threshold(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        t = await body(request, ThresholdIn)
        await check_rule_agent(ctx, p, t.agent)
        try:
            rule = Rule.model_validate(
                {
                    "name": f"threshold:{name}",
                    "conditions": [
                        Condition(
                            metric="custom",
                            op=t.op,
                            threshold=t.value,
                            window=t.window,  # type: ignore[arg-type]
                            custom=Custom(name=name, agg=t.agg, labels=t.labels),
                        )
                    ],
                    "agent": t.agent,
                    "for": t.for_,
                    "severity": t.severity,
                    "channels": t.channels,
                    "annotations": {"summary": f"{t.agg}({name}) is {{value}} ({t.op} {t.value})"},
                }
            )
        except ValueError as e:
            raise Invalid(str(e).splitlines()[-1].strip(), "$") from None
        await svc.alerts.put_rule(p.tenant_id, rule)
        await ctx.audit(p, "metrics.threshold.put", name, "ok")
        return json(rule.to_json())  # 200 whether created or replaced

    async def thresholds(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        rules = await svc.alerts.rules(p.tenant_id)
        return json([r for r in rules if r["name"].startswith("threshold:")])

    return [
        Route("/metrics/summary", summary, methods=["GET"]),
        Route("/metrics/series", series, methods=["GET"]),
        Route("/metrics/agents", agents_table, methods=["GET"]),
        Route("/metrics/advanced", query, methods=["GET"]),
        Route("/metrics/advanced", record, methods=["POST"]),
        Route("/metrics/advanced/export", export, methods=["GET"]),
        Route("/metrics/advanced/thresholds", thresholds, methods=["GET"]),
        Route("/metrics/advanced/thresholds/{name}", put_threshold, methods=["PUT"]),
        Route("/health/score", health_score, methods=["GET"]),
        Route("/system/monitoring", system, methods=["GET"]),
    ]


def _custom_query(request: Request) -> tuple[float, float, str, list[str]]:
    """Range, aggregation and group-by labels of a custom-metric query."""
    start, end = time_range(request)
    agg = request.query_params.get("agg", "avg")
    if agg not in AGGREGATIONS:
        raise Invalid(f"agg must be one of {', '.join(AGGREGATIONS)}", "$.query.agg")
    by = [b for b in (request.query_params.get("by") or "").split(",") if b]
    return start, end, agg, by


def _empty(start: float, end: float) -> dict[str, Any]:
    return {
        "start": int(start),
        "end": int(end),
        "requests": 0,
        "rate": 0.0,
        "status": {},
        "error_rate": 0.0,
        "latency": {"p50": None, "p95": None, "p99": None, "mean": None, "max": None},
        "in_flight_max": 0,
        "queue_max": 0,
    }
