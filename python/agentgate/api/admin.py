"""Admin listener: /healthz, /readyz, /metrics, /api/health/agents, /api/config, and the
control-plane REST API under /api.

It runs in the gateway's own process, so what it reports about agents is what the data plane
sees: breaker and health-check state, last probe and requests in flight per endpoint.

/healthz and /readyz are always open (probes). /metrics, /api/config and /api/health/agents
(with the probe) are open too unless the config file says `admin_auth: required`; then
`agentgate.api.auth.admin_access` wants a viewer-or-above key. The REST API authenticates every
call itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from agentgate._core import AgentState, BreakerState, ProbeResult
from agentgate.api.auth import PrincipalSource, admin_access
from agentgate.api.problems import exception_handlers, problem_response
from agentgate.config import GatewayConfig
from agentgate.observe.metrics import render_latest

__all__ = ["GatewayView", "agent_report", "create_app"]


class GatewayView(Protocol):
    """What the admin listener reads of the running gateway."""

    base: GatewayConfig
    config: GatewayConfig

    def agents(self) -> list[AgentState]:
        """Every agent's state as the data plane sees it."""
        ...

    async def probe(self, agent: str, attempts: int = 3) -> list[ProbeResult]:
        """Probe an agent's endpoints now (KeyError if unknown)."""
        ...

    def cluster_health(self) -> dict[str, Any] | None:
        """Redis as the cluster rate limits see it; None without Redis."""
        ...


_BREAKER = {
    BreakerState.Closed: "closed",
    BreakerState.Open: "open",
    BreakerState.HalfOpen: "half_open",
}


def agent_report(gw: GatewayView) -> dict[str, Any]:
    """Per agent: where it comes from, its endpoints' state, load and queue."""
    out: dict[str, Any] = {}
    for a in gw.agents():
        eps = [
            {
                "url": ep.url,
                "weight": ep.weight,
                "healthy": ep.healthy,
                "breaker": _BREAKER[ep.breaker],
                "breaker_trips": ep.breaker_trips,
                "breaker_open_for": ep.breaker_open_for,
                "in_flight": ep.in_flight,
                "latency_ms": round(ep.latency * 1000, 3),
                "last_probe": ep.last_probe or None,
                "last_status": ep.last_status,
                "last_error": ep.last_error,
                "probe_successes": ep.probe_successes,
                "probe_failures": ep.probe_failures,
                "connections_opened": ep.connections_opened,
                "idle_connections": ep.idle_connections,
            }
            for ep in a.endpoints
        ]
        out[a.name] = {
            "source": "file" if a.name in gw.base.agents else "api",
            "health_checked": a.health_checked,
            "endpoints": eps,
            "healthy": sum(bool(ep["healthy"]) for ep in eps),
            "in_flight": a.in_flight,
            "queued": sum(a.queued.values()),
            "retry_budget": a.retry_budget,
        }
    return out


def _probe_json(r: ProbeResult) -> dict[str, Any]:
    return {
        "url": r.url,
        "ok": r.ok,
        "status": r.status,
        "error": r.error,
        "latency_ms": round(r.latency * 1000, 3),
        "attempts": r.attempts,
    }


View = Callable[[Request], Awaitable[Response]]


def create_app(
    gw: GatewayView, api: Starlette | None = None, keys: PrincipalSource | None = None
) -> Starlette:
    """The admin app over a running gateway; `api` (the control-plane app) is mounted at /.

    `keys` authenticates store API keys for `admin_auth: required` (the API's `Context`);
    without it only the config file's keys are accepted there.
    """

    def guarded(view: View) -> View:
        async def run(request: Request) -> Response:
            # the file's config (`base`): the merged one also carries every tenant's store keys
            await admin_access(request, gw.base, keys)
            return await view(request)

        return run

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        agents = gw.agents()
        ready = all(any(ep.healthy for ep in a.endpoints) for a in agents)
        body: dict[str, Any] = {"ready": ready}
        cluster = gw.cluster_health()
        if cluster is not None:
            # Redis down does not make the gateway unready: routes follow on_redis_error
            body["cluster_limits"] = cluster
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        body, ctype = await asyncio.to_thread(render_latest)
        return Response(body, media_type=ctype)

    async def agents(_: Request) -> Response:
        return JSONResponse(agent_report(gw))

    async def probe(request: Request) -> Response:
        name = request.path_params["agent"]
        try:
            attempts = int(request.query_params.get("attempts", "3"))
        except ValueError:
            attempts = 0
        if not 1 <= attempts <= 10:
            return problem_response(
                422, "attempts must be an integer from 1 to 10", instance=request.url.path
            )
        try:
            results = await gw.probe(name, attempts)
        except KeyError:
            return problem_response(404, f"no agent {name!r}", instance=request.url.path)
        return JSONResponse(
            {
                "agent": name,
                "healthy": sum(r.ok for r in results),
                "endpoints": [_probe_json(r) for r in results],
            }
        )

    async def config_view(_: Request) -> Response:
        return JSONResponse(gw.config.redacted())

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", guarded(metrics)),
        Route("/api/health/agents", guarded(agents), methods=["GET"]),
        Route("/api/health/agents/{agent:path}", guarded(probe), methods=["POST"]),
        Route("/api/config", guarded(config_view)),
    ]
    if api is not None:
        routes.append(Mount("/", app=api))
    app = Starlette(routes=routes, exception_handlers=exception_handlers())
    if api is not None:
        app.router.lifespan_context = api.router.lifespan_context
    return app
