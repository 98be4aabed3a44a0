"""`/api/policies`: versioned Rego policies of the caller's tenant, and the dry run."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json
from agentgate.api.routes._models import PolicyActivate, PolicyCreate, PolicyDryRun, PolicyOut
from agentgate.errors import Invalid, NotFound
from agentgate.policy import PolicyService
from agentgate.store import Policy, TenantScope

__all__ = ["routes"]


def _version(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise NotFound(f"policy version {raw} not found")
    return int(raw)


def routes(ctx: Context) -> list[Route]:
    """The policy routes."""
    svc: PolicyService = ctx.policy

    async def ensure(scope: TenantScope) -> None:
        await svc.ensure_tenant(scope.tenant_id, scope.policies)

    async def reload(scope: TenantScope) -> None:
        await svc.load_tenant(scope.tenant_id, scope.policies)

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "policy:read")
        active = request.query_params.get("active") in ("1", "true")
        return json(dump_list(PolicyOut, await ctx.scope(p).policies.list(active_only=active)))

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "policy:write")
        b = await body(request, PolicyCreate)
        scope = ctx.scope(p)

        async def work() -> Policy:
            await ensure(scope)
            svc.validate(b.name, b.rego, tenant_id=scope.tenant_id)
            rec = await scope.policies.add(
                b.name, b.rego, created_by=f"key:{p.key_id}", activate=b.activate
            )
            await reload(scope)
            return rec

        rec = await audited(ctx, p, "policy.add", f"policy:{b.name}", work)
        return json(dump(PolicyOut, rec), 201)

    async def active(request: Request) -> Response:
        p = await ctx.principal(request, "policy:read")
        return json(dump(PolicyOut, await ctx.scope(p).policies.get(request.path_params["name"])))

    async def versions(request: Request) -> Response:
        p = await ctx.principal(request, "policy:read")
        rows = await ctx.scope(p).policies.versions(request.path_params["name"])
        if not rows:
            raise NotFound(f"policy {request.path_params['name']} not found")
        return json(dump_list(PolicyOut, rows))

    async def version(request: Request) -> Response:
        p = await ctx.principal(request, "policy:read")
        v = _version(request.path_params["version"])
        rec = await ctx.scope(p).policies.get(request.path_params["name"], v)
        return json(dump(PolicyOut, rec))

    async def activate(request: Request) -> Response:
        p = await ctx.principal(request, "policy:write")
        name = request.path_params["name"]
        b = await body(request, PolicyActivate)
        scope = ctx.scope(p)

        async def work() -> Policy:
            rec = await scope.policies.activate(name, b.version)
            await reload(scope)
            return rec

        rec = await audited(
            ctx, p, "policy.activate", f"policy:{name}", work, details={"version": b.version}
        )
        return json(dump(PolicyOut, rec))

    async def delete(request: Request) -> Response:
        p = await ctx.principal(request, "policy:write")
        name = request.path_params["name"]
        scope = ctx.scope(p)

        async def work() -> None:
            await scope.policies.delete(name)
            await reload(scope)

        await audited(ctx, p, "policy.delete", f"policy:{name}", work)
        return Response(status_code=204)

    async def dry_run(request: Request) -> Response:
        p = await ctx.principal(request, "policy:test")
        b = await body(request, PolicyDryRun)
        scope = ctx.scope(p)
        await ensure(scope)
        inp: dict[str, Any] = dict(b.input)
        tenant = inp.get("tenant")
        # the caller's tenant, whatever the input claims: a dry run never sees another bundle
        inp["tenant"] = {**(tenant if isinstance(tenant, dict) else {}), "id": scope.tenant_id}
        engine = svc
        if b.rego is not None or b.name is not None:
            if b.rego is None or b.name is None:
                raise Invalid("a candidate policy needs both name and rego", "$.rego")
            engine = PolicyService()
            modules = svc.tenant_policies(scope.tenant_id)
            modules[b.name] = b.rego
            svc.validate(b.name, b.rego, tenant_id=scope.tenant_id)
            engine.set_tenant_policies(scope.tenant_id, modules)
        out = engine.dry_run(b.stage, inp, tenant_id=scope.tenant_id)
        return json(out.as_dict())

    return [
        Route("/policies", list_, methods=["GET"]),
        Route("/policies", create, methods=["POST"]),
        Route("/policies/dry-run", dry_run, methods=["POST"]),
        Route("/policies/{name}", active, methods=["GET"]),
        Route("/policies/{name}", delete, methods=["DELETE"]),
        Route("/policies/{name}/versions", versions, methods=["GET"]),
        Route("/policies/{name}/versions/{version}", version, methods=["GET"]),
        Route("/policies/{name}/activate", activate, methods=["POST"]),
    ]
