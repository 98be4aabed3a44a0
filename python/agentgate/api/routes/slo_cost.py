"""`/api/slos` (objectives, error budget, burn rates) and `/api/cost` (usage, spend, budgets).

Reads need `agent:read`; SLO changes and usage records `agent:update`; budgets are set by a
system admin key (a tenant does not raise its own limit). A tenant key sees its own spend.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, body, json, query_float
from agentgate.api.routes.observe import agent_scope, time_range
from agentgate.errors import Forbidden, Invalid
from agentgate.observe.cost import Usage
from agentgate.observe.service import ObserveService
from agentgate.observe.settings import Budget, SloConfig

__all__ = ["BudgetIn", "SloIn", "UsageIn", "UsageRecord", "routes"]


class SloIn(BaseModel):
    """An SLO (the name comes from the path)."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=300)
    route: str = "*"
    kind: str = "availability"
    objective: float = Field(gt=0.0, lt=1.0)
    threshold: str | float | None = None
    period: str = "30d"


class UsageRecord(BaseModel):
    """Token usage of one or more responses."""

    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(default="", max_length=200)
    agent: str = Field(max_length=300)
    model: str = Field(min_length=1, max_length=200)
    input_tokens: int = Field(ge=0, le=10**12)
    output_tokens: int = Field(ge=0, le=10**12)
    requests: int = Field(default=1, ge=0, le=10**9)
    at: float | None = Field(default=None, ge=0, le=10**11)


class UsageIn(BaseModel):
    """A batch of usage records."""

    model_config = ConfigDict(extra="forbid")
    usage: list[UsageRecord] = Field(min_length=1, max_length=10_000)


class BudgetIn(BaseModel):
    """A tenant's budget."""

    model_config = ConfigDict(extra="forbid")
    amount: float = Field(gt=0.0, le=1e15)
    period: str = "month"
    action: str = "alert"


def routes(ctx: Context, svc: ObserveService) -> list[Route]:
    """The SLO and cost routes."""

    async def list_slos(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        slos = await svc.slos.list(p.tenant_id, p.system)
        return json([await svc.slos.status(s) for s in slos])

    async def get_slo(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        s = await svc.slos.get(p.tenant_id, p.system, request.path_params["name"])
        return json(await svc.slos.status(s))

    async def put_slo(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        data = await body(request, SloIn)
        scope = await agent_scope(ctx, p)
        if not scope.allows(data.agent):
            raise Invalid(f"agent {data.agent!r} is not one of your tenant's", "$.agent")
        try:
            slo = SloConfig.model_validate({"name": name, **data.model_dump(exclude_none=True)})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise Invalid(str(err["msg"]).removeprefix("Value error, "), f"$.{loc}") from None
        await svc.slos.put(p.tenant_id, slo)
        await ctx.audit(p, "slo.put", name, "ok")
        return json(await svc.slos.status(slo))

    async def delete_slo(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        await svc.slos.delete(p.tenant_id, name)
        await ctx.audit(p, "slo.delete", name, "ok")
        return Response(status_code=204)

    async def tenant_name(p: object) -> str | None:
        scope = await agent_scope(ctx, p)  # type: ignore[arg-type]
        return None if scope.system else scope.prefix[:-1]

    async def record_usage(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        data = await body(request, UsageIn)
        own = await tenant_name(p)
        recs = []
        for i, u in enumerate(data.usage):
            if own is not None and u.tenant != own:
                raise Invalid(f"tenant must be your own ({own!r})", f"$.usage[{i}].tenant")
            recs.append(
                Usage(u.tenant, u.agent, u.model, u.input_tokens, u.output_tokens, u.requests, u.at)
            )
        cost = await svc.cost.record(recs)
        return json({"recorded": len(recs), "cost": cost}, status=202)

    async def query_cost(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        start, end = time_range(request, default=30 * 86400.0)
        by = request.query_params.get("by", "agent")
        own = await tenant_name(p)
        tenant = own if own is not None else request.query_params.get("tenant")
        return json(await svc.cost.query(start, end, by=by, tenant=tenant))

    async def list_budgets(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        own = await tenant_name(p)
        names = [own] if own is not None else await svc.cost.tenants_with_budgets()
        now = query_float(request, "at")
        out = []
        for t in names:
            st = await svc.cost.check(t, now)
            if st is not None:
                out.append(st)
        return json(out)

    async def put_budget(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        if not p.system:
            raise Forbidden("budgets are set with a system admin key")
        tenant = request.path_params["tenant"]
        data = await body(request, BudgetIn)
        try:
            b = Budget.model_validate(data.model_dump())
        except ValidationError as e:
            err = e.errors()[0]
            raise Invalid(str(err["msg"]), f"$.{err['loc'][0]}") from None
        await svc.cost.set_budget(tenant, b)
        await ctx.audit(p, "cost.budget.put", tenant, "ok")
        return json(await svc.cost.check(tenant))

    async def delete_budget(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        if not p.system:
            raise Forbidden("budgets are set with a system admin key")
        tenant = request.path_params["tenant"]
        await svc.cost.delete_budget(tenant)
        await ctx.audit(p, "cost.budget.delete", tenant, "ok")
        return Response(status_code=204)

    return [
        Route("/slos", list_slos, methods=["GET"]),
        Route("/slos/{name}", get_slo, methods=["GET"]),
        Route("/slos/{name}", put_slo, methods=["PUT"]),
        Route("/slos/{name}", delete_slo, methods=["DELETE"]),
        Route("/cost", query_cost, methods=["GET"]),
        Route("/cost/usage", record_usage, methods=["POST"]),
        Route("/cost/budgets", list_budgets, methods=["GET"]),
        Route("/cost/budgets/{tenant}", put_budget, methods=["PUT"]),
        Route("/cost/budgets/{tenant}", delete_budget, methods=["DELETE"]),
    ]
