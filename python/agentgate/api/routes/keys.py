"""`/api/keys`: API keys of the caller's tenant (create shows the secret once; rotate; revoke)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json
from agentgate.api.routes._models import KeyCreate, KeyOut, KeyRotate
from agentgate.tenancy import create_key, revoke_key, rotate_key

__all__ = ["routes"]


def routes(ctx: Context) -> list[Route]:
    """The key routes."""

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "key:read")
        return json(dump_list(KeyOut, await ctx.scope(p).api_keys.list()))

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "key:read")
        return json(dump(KeyOut, await ctx.scope(p).api_keys.get(request.path_params["key_id"])))

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "key:manage")
        b = await body(request, KeyCreate)
        rec, secret = await audited(
            ctx,
            p,
            "key.create",
            f"key:{b.name}",
            lambda: create_key(ctx.scope(p), b.name, b.roles, b.expires_in),
            details={"roles": list(b.roles)},
        )
        return json({"key": dump(KeyOut, rec), "secret": secret}, 201)

    async def rotate(request: Request) -> Response:
        p = await ctx.principal(request, "key:manage")
        kid = request.path_params["key_id"]
        b = await body(request, KeyRotate)
        old, new, secret = await audited(
            ctx,
            p,
            "key.rotate",
            f"key:{kid}",
            lambda: rotate_key(ctx.scope(p), kid, overlap=b.overlap, expires_in=b.expires_in),
        )
        return json({"old": dump(KeyOut, old), "key": dump(KeyOut, new), "secret": secret}, 201)

    async def revoke(request: Request) -> Response:
        p = await ctx.principal(request, "key:manage")
        kid = request.path_params["key_id"]
        rec = await audited(
            ctx, p, "key.revoke", f"key:{kid}", lambda: revoke_key(ctx.scope(p), kid)
        )
        return json(dump(KeyOut, rec))

    return [
        Route("/keys", list_, methods=["GET"]),
        Route("/keys", create, methods=["POST"]),
        Route("/keys/{key_id}", get, methods=["GET"]),
        Route("/keys/{key_id}", revoke, methods=["DELETE"]),
        Route("/keys/{key_id}/rotate", rotate, methods=["POST"]),
    ]
