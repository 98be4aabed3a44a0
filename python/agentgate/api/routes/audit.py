"""`/api/audit`: the tenant's audit entries (query, JSON-lines export) and chain verification."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agentgate.api.routes._common import Context, dump_list, json, query_float, query_int
from agentgate.api.routes._models import AuditOut
from agentgate.errors import Forbidden
from agentgate.security.audit import entry_dict, stream_entries, verify_store
from agentgate.tenancy import Principal

__all__ = ["routes"]


def _filters(request: Request) -> dict[str, object]:
    q = request.query_params
    return {
        "since": query_float(request, "since"),
        "until": query_float(request, "until"),
        "actor": q.get("actor"),
        "target": q.get("target"),
        "action": q.get("action"),
    }


def routes(ctx: Context) -> list[Route]:
    """The audit routes."""

    def repo(p: Principal, request: Request) -> object:
        # system principals may read the whole trail with ?all=1 (what `audit verify` exports)
        if request.query_params.get("all") in ("1", "true"):
            if not p.system:
                raise Forbidden("the whole audit trail needs a system admin key")
            return ctx.store.system.audit
        return ctx.scope(p).audit

    async def query(request: Request) -> Response:
        p = await ctx.principal(request, "audit:read")
        after = query_int(request, "after", 0, 0, 2**62)
        limit = query_int(request, "limit", 100, 1, 10000)
        r = repo(p, request)
        rows = await r.query(after_seq=after, limit=limit, **_filters(request))  # type: ignore[attr-defined]
        return json(dump_list(AuditOut, rows))

    async def export(request: Request) -> Response:
        p = await ctx.principal(request, "audit:read")
        r = repo(p, request)
        filters = _filters(request)

        async def lines() -> AsyncIterator[bytes]:
            async for e in stream_entries(r, **filters):
                yield orjson.dumps(
                    entry_dict(e), option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
                )

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def verify(request: Request) -> Response:
        p = await ctx.principal(request, "audit:read")
        if not p.system:
            raise Forbidden("verifying the whole audit chain needs a system admin key")
        res = await verify_store(ctx.store.system.audit)
        return json(
            {
                "ok": res.ok,
                "checked": res.checked,
                "first_bad_seq": res.first_bad_seq,
                "reason": res.reason,
                "head_seq": res.head_seq,
                "head_hash": res.head_hash,
            }
        )

    return [
        Route("/audit", query, methods=["GET"]),
        Route("/audit/export", export, methods=["GET"]),
        Route("/audit/verify", verify, methods=["GET"]),
    ]
