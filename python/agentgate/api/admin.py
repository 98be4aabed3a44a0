"""Admin listener: /healthz, /readyz, /metrics, /api/health/agents, /api/config (redacted), and
the control-plane REST API under /api.

/healthz and /readyz are always open (probes). /metrics, /api/config and /api/health/agents are
open too unless the config says `admin_auth: required`; then `agentgate.api.auth.admin_access`
wants a viewer-or-above key. The REST API authenticates every call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from agentgate.api.app import from_env as control_api
from agentgate.api.auth import admin_access
from agentgate.api.problems import exception_handlers
from agentgate.config import ConfigError, GatewayConfig, load_config
from agentgate.gateway.engine import Engine
from agentgate.gateway.health import HealthChecker
from agentgate.gateway.upstream import UpstreamClient
from agentgate.observe.metrics import fleet_state, render_latest

__all__ = ["AdminState", "create_app"]

CONFIG_ENV = "AGENTGATE_CONFIG"


class AdminState:
    """The config in force as seen by the admin process, with its own health probes."""

    def __init__(self, config: GatewayConfig, path: str | None) -> None:
        self.config = config
        self.path = path
        self.engine = Engine(config)
        self.client: UpstreamClient | None = None
        self.checker: HealthChecker | None = None
        self.mtime = _mtime(path)

    async def start(self) -> None:
        """Start probing endpoints."""
        self.client = UpstreamClient(self.config)
        self.checker = HealthChecker(self.engine, self.client, None)
        self.checker.start()

    async def stop(self) -> None:
        """Stop probing."""
        if self.checker is not None:
            self.checker.stop()
        if self.client is not None:
            await self.client.close()

    async def refresh(self) -> None:
        """Follow config file changes (invalid ones are ignored: the old config stays)."""
        m = _mtime(self.path)
        if m == self.mtime or self.path is None:
            return
        self.mtime = m
        try:
            cfg = load_config(self.path)
        except ConfigError:
            return
        try:
            self.engine.replace(cfg)  # same core: endpoint health learned so far stays
        except ValueError:
            return
        await self.stop()
        self.config = cfg
        await self.start()


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return 0.0


def create_app(config: GatewayConfig | None = None, config_path: str | None = None) -> Starlette:
    """The admin Starlette app; reads AGENTGATE_CONFIG when no config is given."""
    path = config_path or os.environ.get(CONFIG_ENV)
    if config is None:
        if path is None:
            raise RuntimeError(f"set {CONFIG_ENV} to the config file")
        config = load_config(path)
    state = AdminState(config, path)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        await state.refresh()
        pools = state.engine.stats().values()
        ready = all(any(ep["healthy"] for ep in p["endpoints"]) for p in pools)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        body, ctype = await asyncio.to_thread(render_latest)
        return Response(body, media_type=ctype)

    async def agents(_: Request) -> Response:
        await state.refresh()
        # health from this process's probes; breakers and load from the workers' gauges
        fleet = await asyncio.to_thread(fleet_state)
        out = {}
        for name, pool in state.engine.stats().items():
            live = fleet.get(name, {})
            breakers = live.get("breakers", {})
            eps = [
                {
                    "url": ep["url"],
                    "weight": ep["weight"],
                    "healthy": ep["healthy"],
                    "breaker": breakers.get(ep["url"], "closed"),
                }
                for ep in pool["endpoints"]
            ]
            out[name] = {
                "health_checked": state.config.agents[name].health_check is not None,
                "endpoints": eps,
                "healthy": sum(bool(ep["healthy"]) for ep in eps),
                "in_flight": live.get("in_flight", 0),
                "queued": live.get("queued", 0),
            }
        return JSONResponse(out)

    async def config_view(_: Request) -> Response:
        await state.refresh()
        return JSONResponse(state.config.redacted())

    # The control-plane REST API (/api/…) on the store named by AGENTGATE_DATABASE_URL /
    # AGENTGATE_DATA_DIR (set by `agentgate serve` from the config); the admin routes above win.
    api = control_api()

    def guarded(
        view: Callable[[Request], Awaitable[Response]],
    ) -> Callable[..., Awaitable[Response]]:
        async def run(request: Request) -> Response:
            await state.refresh()  # the admin_auth and keys of the config in force
            # store keys are checked by the API's context (present once its lifespan ran)
            await admin_access(request, state.config, getattr(api.state, "context", None))
            return await view(request)

        return run

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            async with api.router.lifespan_context(api):
                yield
        finally:
            await state.stop()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", guarded(metrics)),
            Route("/api/health/agents", guarded(agents)),
            Route("/api/config", guarded(config_view)),
            Mount("/", app=api),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
