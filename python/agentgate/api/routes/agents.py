"""`/api/agents`: agents created from templates through the agent factory, which resolves,
verifies, validates params, evaluates policy, persists, publishes routes and audits successes
and policy denials (the API audits the other failures)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.problems import Unavailable
from agentgate.api.routes._common import Context, audited, body, json, query_int
from agentgate.api.routes._models import AgentCreate, AgentUpdate

__all__ = ["routes"]


def routes(ctx: Context) -> list[Route]:
    """The agent routes."""

    def factory() -> Any:
        if ctx.factory is None:
            raise Unavailable("the agent factory is not configured in this process")
        return ctx.factory

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        limit = query_int(request, "limit", 1000, 1, 10000)
        offset = query_int(request, "offset", 0, 0, 10**9)
        rows = await factory().list(ctx.scope(p), p, limit=limit, offset=offset)
        return json([r.as_dict() for r in rows])

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        rec = await factory().get(ctx.scope(p), p, request.path_params["name"])
        return json(rec.as_dict())

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "agent:create")
        b = await body(request, AgentCreate)
        f = factory()
        rec = await audited(
            ctx,
            p,
            "agent.create",
            f"agent:{b.name or b.template.partition('@')[0]}",
            lambda: f.create(
                ctx.scope(p), p, b.template, b.params, b.replicas, routes=b.routes, name=b.name
            ),
            details={"template": b.template, "replicas": b.replicas},
            errors_only=True,
        )
        return json(rec.as_dict(), 201)

    async def update(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        b = await body(request, AgentUpdate)
        f = factory()
        rec = await audited(
            ctx,
            p,
            "agent.update",
            f"agent:{name}",
            lambda: f.update(
                ctx.scope(p),
                p,
                name,
                replicas=b.replicas,
                routes=b.routes,
                params=b.params,
                template_ref=b.template,
                expected_revision=b.expected_revision,
            ),
            errors_only=True,
        )
        return json(rec.as_dict())

    async def delete(request: Request) -> Response:
        p = await ctx.principal(request, "agent:delete")
        name = request.path_params["name"]
        f = factory()
        rec = await audited(
            ctx,
            p,
            "agent.delete",
            f"agent:{name}",
            lambda: f.delete(ctx.scope(p), p, name),
            errors_only=True,
        )
        return json(rec.as_dict(), 202)

    return [
        Route("/agents", list_, methods=["GET"]),
        Route("/agents", create, methods=["POST"]),
        Route("/agents/{name}", get, methods=["GET"]),
        Route("/agents/{name}", update, methods=["PATCH"]),
        Route("/agents/{name}", delete, methods=["DELETE"]),
    ]
