"""`/api/tenants`: tenant administration (system principal), including a tenant's API keys,
and the caller's own tenant."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json, query_int
from agentgate.api.routes._models import KeyCreate, KeyOut, TenantCreate, TenantOut, TenantUpdate
from agentgate.errors import Forbidden, NotFound
from agentgate.tenancy import (
    Principal,
    create_key,
    create_tenant,
    delete_tenant,
    get_tenant,
    list_tenants,
    require,
    update_tenant,
)

__all__ = ["routes"]


def _system_only(p: object) -> None:
    if not getattr(p, "system", False):
        raise Forbidden("tenant administration needs a system admin key")


def routes(ctx: Context) -> list[Route]:
    """The tenant routes."""

    async def administered(request: Request, action: str) -> tuple[Principal, str]:
        # The caller and the path's tenant, for acts only a system admin may do there: another
        # tenant's id is 404 to everyone else (never confirm it exists), its own is 403.
        p = await ctx.principal(request, action)
        tid: str = request.path_params["tenant_id"]
        if not p.system:
            if tid != p.tenant_id:
                raise NotFound(f"tenant {tid} not found")
            _system_only(p)
        return p, tid

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "tenant:read")
        _system_only(p)
        limit = query_int(request, "limit", 1000, 1, 10000)
        offset = query_int(request, "offset", 0, 0, 10**9)
        return json(dump_list(TenantOut, await list_tenants(ctx.store, limit=limit, offset=offset)))

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "tenant:write")
        _system_only(p)
        b = await body(request, TenantCreate)
        t = await audited(
            ctx,
            p,
            "tenant.create",
            f"tenant:{b.name}",
            lambda: create_tenant(ctx.store, b.name, display_name=b.display_name, quotas=b.quotas),
        )
        return json(dump(TenantOut, t), 201)

    async def me(request: Request) -> Response:
        p = await ctx.principal(request, "tenant:read")
        return json(dump(TenantOut, await get_tenant(ctx.store, p.tenant_id)))

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "tenant:read")
        tid = request.path_params["tenant_id"]
        if not p.system and tid != p.tenant_id:
            raise NotFound(f"tenant {tid} not found")  # never confirm other tenants exist
        return json(dump(TenantOut, await get_tenant(ctx.store, tid)))

    async def update(request: Request) -> Response:
        p, tid = await administered(request, "tenant:write")
        b = await body(request, TenantUpdate)
        t = await audited(
            ctx,
            p,
            "tenant.update",
            f"tenant:{tid}",
            lambda: update_tenant(
                ctx.store,
                tid,
                display_name=b.display_name,
                quotas=b.quotas,
                disabled=b.disabled,
            ),
            details=b.model_dump(exclude_none=True),
        )
        return json(dump(TenantOut, t))

    async def delete(request: Request) -> Response:
        p, tid = await administered(request, "tenant:write")
        require(p, "tenant:write")
        if tid == p.tenant_id:
            raise Forbidden("a key cannot delete its own tenant")
        await audited(
            ctx, p, "tenant.delete", f"tenant:{tid}", lambda: delete_tenant(ctx.store, tid)
        )
        return Response(status_code=204)

    async def create_key_(request: Request) -> Response:
        # A new tenant's first admin key (and any later one) without database access: the
        # system admin issues it here; the secret is in this response only.
        p, tid = await administered(request, "key:manage")
        b = await body(request, KeyCreate)
        t = await get_tenant(ctx.store, tid)
        rec, secret = await audited(
            ctx,
            p,
            "key.create",
            f"key:{b.name}",
            lambda: create_key(ctx.store.scoped(t.id), b.name, b.roles, b.expires_in),
            details={"roles": list(b.roles), "issued_by_tenant": p.tenant_id},
            tenant_id=t.id,  # in the trail of the tenant that owns the key
        )
        return json({"key": dump(KeyOut, rec), "secret": secret}, 201)

    return [
        Route("/tenants", list_, methods=["GET"]),
        Route("/tenants", create, methods=["POST"]),
        Route("/tenant", me, methods=["GET"]),
        Route("/tenants/{tenant_id}", get, methods=["GET"]),
        Route("/tenants/{tenant_id}", update, methods=["PATCH"]),
        Route("/tenants/{tenant_id}", delete, methods=["DELETE"]),
        Route("/tenants/{tenant_id}/keys", create_key_, methods=["POST"]),
    ]
