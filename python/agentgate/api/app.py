"""The control-plane REST API: a Starlette app meant to be mounted under `/api`.

    api = create_api(store, factory=factory)           # policy/search/audit seal defaulted
    admin = Starlette(routes=[Mount("/api", app=api), ...])

Every endpoint but the OpenAPI document authenticates (`Authorization: Bearer <key>` or
`X-API-Key`), enforces the permission matrix of `agentgate.tenancy.roles`, works in the caller's
tenant (other tenants' objects are 404; a system admin administers tenants), and writes an audit
entry for every mutation. Errors are RFC 9457 problem+json; the OpenAPI 3.1 document is at
`/api/openapi.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from agentgate.api.openapi import openapi_document
from agentgate.api.problems import exception_handlers
from agentgate.api.routes import agents, audit, keys, policies, templates, tenants, trust
from agentgate.api.routes import alerts as alert_routes
from agentgate.api.routes import backup as backup_routes
from agentgate.api.routes import observe as observe_routes
from agentgate.api.routes import privacy as privacy_routes
from agentgate.api.routes import runtime as runtime_routes
from agentgate.api.routes import secrets as secret_routes
from agentgate.api.routes import slo_cost as slo_cost_routes
from agentgate.api.routes import state as state_routes
from agentgate.api.routes._common import Context, json
from agentgate.bus import open_bus, settings_from_config
from agentgate.bus.changes import ChangeFeed
from agentgate.config import GatewayConfig, load_config
from agentgate.policy import PolicyService
from agentgate.registry.search import SearchIndex
from agentgate.registry.service import RegistryService
from agentgate.runtime.factory import AgentFactory, ScopeAudit
from agentgate.security.audit import seal as audit_seal
from agentgate.security.scheduler import Scheduler
from agentgate.security.services import Security
from agentgate.settings import Settings
from agentgate.state import AgentHistory
from agentgate.state.agents import retention_loop
from agentgate.store import Seal, Store, open_store

__all__ = ["control_app", "control_plane", "create_api", "from_env", "standalone"]


def create_api(
    store: Store,
    *,
    factory: Any = None,
    policy: PolicyService | None = None,
    index: SearchIndex | None = None,
    seal: Seal = audit_seal,
    system_tenant: str | None = "system",
    security: Security | None = None,
    changes: ChangeFeed | None = None,
    history: AgentHistory | None = None,
    observe: Any = None,
    runtime: Any = None,
) -> Starlette:
    """The API app (routes relative to its mount point, `/api`).

    `factory` defaults to an `AgentFactory` on the same store, policy and audit seal (close it
    with `app.state.context.factory.close()`); `policy` to a `PolicyService` with the shipped
    rules; `index` to an in-memory BM25 search index.
    Admin keys of the tenant named `system_tenant` act as the installation's system principal.
    `security` defaults to services configured from the environment (`AGENTGATE_MASTER_KEY` …).
    `changes` publishes every successful mutation on the bus; `history` (default: on the
    store's event log) records agent lifecycle events for `/api/state`.
    """
    history = history if history is not None else AgentHistory(store.events)
    index = index if index is not None else SearchIndex()
    policy = policy if policy is not None else PolicyService()
    if factory is None:
        idx = index
        factory = AgentFactory(
            store,
            lambda scope: RegistryService(scope, index=idx),
            policy,
            ScopeAudit(seal),
            history=history,
            changes=changes,
            runtime=runtime,  # agentgate.runtime.manager.Runtime: runs `process` templates
        )
    ctx = Context(
        store=store,
        index=index,
        policy=policy,
        factory=factory,
        seal=seal,
        system_tenant=system_tenant,
        changes=changes,
    )
    doc = openapi_document()

    async def openapi(_: Request) -> Response:
        return json(doc)

    routes: list[BaseRoute] = [Route("/openapi.json", openapi, methods=["GET"])]
    for module in (tenants, keys, templates, trust, policies, agents, audit):
        routes.extend(module.routes(ctx))
    sec = security if security is not None else Security(store, seal=seal)
    routes.extend(secret_routes.routes(ctx, sec))
    routes.extend(state_routes.routes(ctx, history))
    routes.extend(privacy_routes.routes(ctx, sec))
    routes.extend(backup_routes.routes(ctx, sec))
    routes.extend(runtime_routes.routes(ctx, runtime))  # replicas, scale, capabilities
    if observe is not None:  # metrics, health, system, alerts (agentgate.observe)
        routes.extend(observe_routes.routes(ctx, observe) + alert_routes.routes(ctx, observe))
        routes.extend(slo_cost_routes.routes(ctx, observe))
    app = Starlette(routes=routes, exception_handlers=exception_handlers())
    app.state.context = ctx
    app.state.security = sec
    app.state.observe = observe
    app.state.runtime = runtime
    return app


def standalone(api: Starlette) -> Starlette:
    """`api` mounted at `/api` in an app of its own (tests, benchmarks, `agentgate api`)."""
    return Starlette(routes=[Mount("/api", app=api)], exception_handlers=exception_handlers())


def _config(env: dict[str, str]) -> GatewayConfig | None:
    path = env.get("AGENTGATE_CONFIG")
    return load_config(path) if path else None


@contextlib.asynccontextmanager
async def control_plane(
    store: Store,
    env: dict[str, str],
    *,
    database_url: str | None,
    data_dir: Path,
    feed: Any = None,
    load: Any = None,
    inflight: Any = None,
) -> AsyncIterator[Starlette]:
    """The API app with every control-plane service started, stopped on exit.

    `feed` (the metrics collector's `StatsFeed`), `load` (the autoscaler's `LoadSource`) and
    `inflight` (requests in flight per endpoint URL, which drains wait for) come from a data
    plane in this process; without one (a standalone API server) history collection and
    load-driven scaling are off. Services read the config file named by
    `AGENTGATE_CONFIG` in `env`.
    """
    cfg = _config(env)
    # the bus (platform changes) and state settings come from the gateway config, if any
    bus = None
    if cfg is not None and cfg.bus is not None:
        bus = open_bus(*settings_from_config(cfg))
        await bus.start()
    history = AgentHistory(store.events, snapshot_every=cfg.state.snapshot_every if cfg else 100)
    from agentgate.observe.service import open_for_admin

    observe = await open_for_admin(store, database_url, data_dir, feed=feed)
    changes = ChangeFeed(bus) if bus is not None else None
    if changes is not None:
        observe.alerts.on_change = changes.alert_hook()
    from agentgate.runtime.service import open_runtime

    runtime = await open_runtime(store, env, load=load, inflight=inflight)
    api = create_api(
        store,
        security=Security.from_env(store, env),
        changes=changes,
        history=history,
        observe=observe,
        runtime=runtime,
    )
    pruner = asyncio.get_running_loop().create_task(
        retention_loop(history, cfg.state.retention if cfg else None)
    )
    jobs = Scheduler(api.state.security)  # rotation checks, retention, backup schedule
    jobs.start()
    api.state.bus = bus
    try:
        yield api
    finally:
        await jobs.stop()
        pruner.cancel()
        if runtime is not None:
            await runtime.close()
        await observe.close()
        await api.state.context.factory.close()
        await api.state.security.close()
        if bus is not None:
            await bus.close()


def from_env() -> Starlette:
    """A standalone API server app for `granian --factory agentgate.api.app:from_env`: the store
    comes from `AGENTGATE_DATABASE_URL` (default SQLite in `AGENTGATE_DATA_DIR`, else `.`) and is
    opened in the server's event loop."""
    settings = Settings.from_env()
    url = settings.database_url
    data_dir = settings.data_dir or Path(".")
    env = dict(os.environ)  # master key and config as when the app was made
    inner: list[Starlette] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        store = await open_store(url, data_dir)
        try:
            async with control_plane(store, env, database_url=url, data_dir=data_dir) as api:
                inner.append(api)
                try:
                    yield
                finally:
                    inner.remove(api)
        finally:
            await store.close()

    async def api(scope: Scope, receive: Receive, send: Send) -> None:
        await inner[-1](scope, receive, send)

    return control_app(api, lambda: inner[-1], lifespan=lifespan)


def control_app(api: Any, get_api: Any, *, lifespan: Any = None) -> Starlette:
    """The API (`api`, an ASGI app) under `/api` plus the dashboard, with tracing; `get_api`
    returns the API app whose state holds the services."""
    from starlette.middleware import Middleware

    from agentgate.dashboard import routes as dashboard_routes
    from agentgate.observe.tracing import TracingMiddleware

    return Starlette(
        routes=[Mount("/api", app=api), *dashboard_routes(get_api)],
        middleware=[Middleware(TracingMiddleware)],  # spans only once tracing is set up
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
