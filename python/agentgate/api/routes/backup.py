"""`/api/backup`: create, list, verify and prune backups, and the 3-2-1 / free-space status.
Backups hold every tenant's data: system principals only (others see no backup at all)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, body, json
from agentgate.api.routes._security_models import BackupCreate
from agentgate.errors import Forbidden, NotFound
from agentgate.security.backup import BackupError, Manifest
from agentgate.security.services import Security
from agentgate.tenancy import Principal

__all__ = ["routes", "summary"]


def summary(m: Manifest, dests: list[str]) -> dict[str, Any]:
    """A manifest as `BackupOut` JSON."""
    return m.summary(dests)


def routes(ctx: Context, sec: Security) -> list[Route]:
    """The backup routes."""

    async def system(request: Request) -> Principal:
        p = await ctx.principal(request)
        if not p.system:
            raise Forbidden("backups need a system admin key")
        return p

    async def list_(request: Request) -> Response:
        await system(request)
        mgr = await sec.backups()
        return json([summary(m, d) for m, d in await mgr.list()])

    async def create(request: Request) -> Response:
        p = await system(request)
        b = await body(request, BackupCreate)
        mgr = await sec.backups()
        try:
            m = await mgr.create(full=b.full)
        except BackupError as e:
            await ctx.audit(p, "backup.create", "backup", "error", details={"error": str(e)})
            raise
        await ctx.audit(
            p, "backup.create", f"backup:{m.id}", "ok", details={"stored_new": m.stored_new}
        )
        return json(summary(m, [d.name for d in mgr.destinations]), 201)

    async def get(request: Request) -> Response:
        p = await ctx.principal(request)
        if not p.system:
            raise NotFound("backup not found")
        mgr = await sec.backups()
        bid = request.path_params["backup_id"]
        for m, d in await mgr.list():
            if m.id == bid:
                return json(summary(m, d))
        raise NotFound("backup not found")

    async def verify(request: Request) -> Response:
        p = await ctx.principal(request)
        if not p.system:
            raise NotFound("backup not found")
        mgr = await sec.backups()
        bid = request.path_params["backup_id"]
        try:
            rep = await mgr.verify(bid)
        except BackupError:
            raise NotFound("backup not found") from None
        await ctx.audit(p, "backup.verify", f"backup:{bid}", "ok" if rep.ok else "failed")
        return json({"id": rep.id, "ok": rep.ok, "results": rep.results})

    async def prune(request: Request) -> Response:
        p = await system(request)
        mgr = await sec.backups()
        removed = await mgr.prune()
        await ctx.audit(p, "backup.prune", "backup", "ok", details={"removed": removed})
        return json({"removed": removed})

    async def status(request: Request) -> Response:
        await system(request)
        st = await (await sec.backups()).status()
        last = None
        if st.last is not None:
            last = summary(st.last, [])
        return json(
            {
                "copies": st.copies,
                "media": st.media,
                "offsite": st.offsite,
                "warnings": st.warnings,
                "disk": st.disk,
                "last": last,
            }
        )

    return [
        Route("/backup", list_, methods=["GET"]),
        Route("/backup", create, methods=["POST"]),
        Route("/backup/-/status", status, methods=["GET"]),
        Route("/backup/-/prune", prune, methods=["POST"]),
        Route("/backup/{backup_id}", get, methods=["GET"]),
        Route("/backup/{backup_id}/verify", verify, methods=["POST"]),
    ]
