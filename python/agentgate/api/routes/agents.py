"""`/api/agents`: agents created from templates through the agent factory (which resolves,
verifies, validates params, evaluates policy, persists and publishes routes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.problems import Unavailable
from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json, query_int
from agentgate.api.routes._models import AgentCreate, AgentOut, AgentUpdate

__all__ = ["routes"]


def _decision(rec: Any) -> dict[str, Any] | None:
    d = getattr(rec, "decision", None)
    if d is None:
        return None
    as_dict = getattr(d, "as_dict", None)
    return as_dict() if callable(as_dict) else dict(d)


def _agent(rec: Any) -> Any:
    # the factory may wrap the stored agent with extra facts (decision, warnings)
    return getattr(rec, "agent", rec)


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
        rows = await ctx.scope(p).agents.list(limit=limit, offset=offset)
        return json(dump_list(AgentOut, rows))

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        return json(dump(AgentOut, await ctx.scope(p).agents.get(request.path_params["name"])))

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "agent:create")
        b = await body(request, AgentCreate)
        f = factory()
        rec = await audited(
            ctx,
            p,
            "agent.create",
            f"agent:{b.name or b.template}",
            lambda: f.create(
                ctx.scope(p),
                p,
                b.template,
                b.params,
                b.replicas,
                routes=b.routes,
                name=b.name,
            ),
            details={"template": b.template, "replicas": b.replicas},
            decision_of=_decision,
        )
        return json(dump(AgentOut, _agent(rec)), 201)

    async def update(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        b = await body(request, AgentUpdate)
        f = factory()
        changes = b.model_dump(exclude_none=True)
        rec = await audited(
            ctx,
            p,
            "agent.update",
            f"agent:{name}",
            lambda: f.update(ctx.scope(p), p, name, **changes),
            details={k: v for k, v in changes.items() if k != "params"},
            decision_of=_decision,
        )
        return json(dump(AgentOut, _agent(rec)))

    async def delete(request: Request) -> Response:
        p = await ctx.principal(request, "agent:delete")
        name = request.path_params["name"]
        f = factory()
        await audited(ctx, p, "agent.delete", f"agent:{name}", lambda: f.delete(ctx.scope(p), p, name))
        return Response(status_code=204)

    return [
        Route("/agents", list_, methods=["GET"]),
        Route("/agents", create, methods=["POST"]),
        Route("/agents/{name}", get, methods=["GET"]),
        Route("/agents/{name}", update, methods=["PATCH"]),
        Route("/agents/{name}", delete, methods=["DELETE"]),
    ]
