"""`/api/privacy`: data subject requests (access/export, erasure, anonymisation), consent
records and retention. Subjects are answered by pseudonym (`subject_ref`) only."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, body, json
from agentgate.api.routes._security_models import (
    ConsentCreate,
    ConsentOut,
    PrivacyRequestCreate,
    PrivacyRequestOut,
    RetentionOut,
)
from agentgate.errors import Forbidden, Invalid
from agentgate.security.services import Security
from agentgate.store.privacy import PrivacyRequest

__all__ = ["routes"]

_STATUSES = ("received", "completed", "failed")


def routes(ctx: Context, sec: Security) -> list[Route]:
    """The privacy routes."""

    def out(r: PrivacyRequest) -> dict[str, Any]:
        overdue = r.status != "completed" and ctx.store.clock() > r.deadline_at
        return PrivacyRequestOut.model_validate(
            {**{f: getattr(r, f) for f in PrivacyRequestOut.model_fields if f != "overdue"},
             "overdue": overdue}
        ).model_dump(mode="json")  # fmt: skip

    async def create(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:write")
        b = await body(request, PrivacyRequestCreate)
        svc = await sec.privacy()
        req = await svc.create_request(
            p.tenant_id, b.subject, b.kind, note=b.note, actor=f"key:{p.key_id}"
        )
        return json(out(req), 201)

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:read")
        status = request.query_params.get("status")
        if status is not None and status not in _STATUSES:
            raise Invalid(f"status must be one of {list(_STATUSES)}", "$.query.status")
        svc = await sec.privacy()
        items = [out(r) for r in await svc.list(p.tenant_id, status)]
        if request.query_params.get("overdue") in ("1", "true"):
            items = [i for i in items if i["overdue"]]
        return json(items)

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:read")
        svc = await sec.privacy()
        return json(out(await svc.get(p.tenant_id, request.path_params["request_id"])))

    async def process(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:write")
        svc = await sec.privacy()
        rid = request.path_params["request_id"]
        return json(out(await svc.process(p.tenant_id, rid, actor=f"key:{p.key_id}")))

    async def export(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:read")
        svc = await sec.privacy()
        return json(await svc.export_request(p.tenant_id, request.path_params["request_id"]))

    async def consent(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:write")
        b = await body(request, ConsentCreate)
        svc = await sec.privacy()
        rec = await svc.record_consent(
            p.tenant_id, b.subject, b.purpose, b.granted, b.source, b.time
        )
        await ctx.audit(
            p,
            "privacy.consent",
            f"consent:{rec.id}",
            "ok",
            details={
                "subject_ref": rec.subject_ref,
                "purpose": rec.purpose,
                "granted": rec.granted,
            },
        )
        return json(ConsentOut.model_validate(rec).model_dump(mode="json"), 201)

    async def consents(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:read")
        q = request.query_params
        svc = await sec.privacy()
        recs = await svc.consents(p.tenant_id, q.get("subject"), q.get("purpose"))
        return json([ConsentOut.model_validate(r).model_dump(mode="json") for r in recs])

    async def retention(request: Request) -> Response:
        await ctx.principal(request, "privacy:read")
        return json(RetentionOut(periods=sec.retention().periods).model_dump())

    async def retention_run(request: Request) -> Response:
        p = await ctx.principal(request, "privacy:write")
        if not p.system:
            raise Forbidden("running retention needs a system admin key")
        job = sec.retention()
        rep = await job.run_once()
        return json(RetentionOut(periods=job.periods, deleted=rep.deleted).model_dump())

    return [
        Route("/privacy/requests", list_, methods=["GET"]),
        Route("/privacy/requests", create, methods=["POST"]),
        Route("/privacy/requests/{request_id}", get, methods=["GET"]),
        Route("/privacy/requests/{request_id}/process", process, methods=["POST"]),
        Route("/privacy/requests/{request_id}/export", export, methods=["GET"]),
        Route("/privacy/consents", consents, methods=["GET"]),
        Route("/privacy/consents", consent, methods=["POST"]),
        Route("/privacy/retention", retention, methods=["GET"]),
        Route("/privacy/retention/run", retention_run, methods=["POST"]),
    ]
