"""`/api/secrets`: encrypted secrets of the caller's tenant (values are write-only) and, for
system principals, the key ring (`/api/secrets/kek`, rotate, retire) and due rotations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, json
from agentgate.api.routes._security_models import (
    KekOut,
    KekRetire,
    KekRotated,
    ReminderOut,
    SecretCreate,
    SecretOut,
    SecretRotate,
)
from agentgate.errors import Forbidden
from agentgate.security.rotation import RotationJob, retire_kek, rotate_kek
from agentgate.security.services import Security
from agentgate.tenancy import Principal

__all__ = ["routes"]


def out(rec: Any) -> dict[str, Any]:
    """A secret record as response JSON (metadata only)."""
    return SecretOut.model_validate(rec, from_attributes=True).model_dump(
        mode="json", by_alias=True
    )


def _system(p: Principal, what: str) -> None:
    if not p.system:
        raise Forbidden(f"{what} needs a system admin key")


def routes(ctx: Context, sec: Security) -> list[Route]:
    """The secret routes."""

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "secret:read")
        svc = await sec.secrets()
        return json([out(r) for r in await svc.list(p.tenant_id)])

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "secret:read")
        svc = await sec.secrets()
        return json(out(await svc.get(p.tenant_id, request.path_params["name"])))

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "secret:write")
        b = await body(request, SecretCreate)
        svc = await sec.secrets()
        rec = await audited(
            ctx,
            p,
            "secret.create",
            f"secret:{b.name}",
            lambda: svc.put(
                p.tenant_id,
                b.name,
                b.value,
                cls=b.cls,
                description=b.description,
                rotate_every=b.rotate_every,
                overlap=b.overlap,
            ),
            details={"class": b.cls},
        )
        return json(out(rec), 201)

    async def rotate(request: Request) -> Response:
        p = await ctx.principal(request, "secret:write")
        name = request.path_params["name"]
        b = await body(request, SecretRotate)
        svc = await sec.secrets()
        rec = await audited(
            ctx,
            p,
            "secret.rotate",
            f"secret:{name}",
            lambda: svc.rotate(p.tenant_id, name, b.value),
            details={"generated": b.value is None},
        )
        return json(out(rec))

    async def delete(request: Request) -> Response:
        p = await ctx.principal(request, "secret:write")
        name = request.path_params["name"]
        svc = await sec.secrets()
        await audited(
            ctx, p, "secret.delete", f"secret:{name}", lambda: svc.delete(p.tenant_id, name)
        )
        return Response(status_code=204)

    async def due(request: Request) -> Response:
        p = await ctx.principal(request, "secret:read")
        svc = await sec.secrets()
        items = await RotationJob(svc, seal=ctx.seal).due()
        mine = [r for r in items if p.system or r.tenant_id == p.tenant_id]
        return json([ReminderOut.model_validate(r).model_dump(mode="json") for r in mine])

    async def kek(request: Request) -> Response:
        p = await ctx.principal(request, "secret:read")
        _system(p, "the key ring")
        st = await (await sec.kek()).status()
        return json(KekOut.model_validate(st).model_dump(mode="json"))

    async def kek_rotate(request: Request) -> Response:
        p = await ctx.principal(request, "secret:write")
        _system(p, "rotating the key ring")
        svc = await sec.secrets()
        st, moved = await rotate_kek(svc, actor=f"key:{p.key_id}", seal=ctx.seal)
        return json(KekRotated(kek=KekOut.model_validate(st), rewrapped=moved).model_dump())

    async def kek_retire(request: Request) -> Response:
        p = await ctx.principal(request, "secret:write")
        _system(p, "retiring key versions")
        b = await body(request, KekRetire)
        svc = await sec.secrets()
        st = await retire_kek(svc, b.min_decryption_version, actor=f"key:{p.key_id}", seal=ctx.seal)
        return json(KekOut.model_validate(st).model_dump(mode="json"))

    return [
        Route("/secrets", list_, methods=["GET"]),
        Route("/secrets", create, methods=["POST"]),
        Route("/secrets/-/rotation", due, methods=["GET"]),
        Route("/secrets/-/kek", kek, methods=["GET"]),
        Route("/secrets/-/kek/rotate", kek_rotate, methods=["POST"]),
        Route("/secrets/-/kek/retire", kek_retire, methods=["POST"]),
        Route("/secrets/{name:path}/rotate", rotate, methods=["POST"]),
        Route("/secrets/{name:path}", get, methods=["GET"]),
        Route("/secrets/{name:path}", delete, methods=["DELETE"]),
    ]
