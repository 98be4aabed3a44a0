"""`/api/templates`: publish (DSSE-signed, then the `publish` policy stage), list/search, show,
resolve, tag, rollback, yank, deprecate."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json, query_int
from agentgate.api.routes._models import (
    Deprecate,
    TagMoveOut,
    TagOut,
    TagRollback,
    TagSet,
    TemplateOut,
    TemplatePublish,
    Yank,
)
from agentgate.errors import Invalid, NotFound, PolicyDenied
from agentgate.registry.service import PublishCheck, Published, RegistryService
from agentgate.registry.signing import VerifiedStatement
from agentgate.registry.template import Template
from agentgate.tenancy import Principal

__all__ = ["routes"]


def _verified(pub: Published) -> dict[str, Any] | None:
    v = pub.verified
    if v is None:
        return None
    return {
        "keyids": list(v.keyids),
        "publisher": v.publisher,
        "signed_at": v.signed_at,
        "parent": v.parent,
    }


def _denied(ref: str, decision: dict[str, Any]) -> str:
    reasons = decision.get("reasons") or []
    named = "; ".join(f"rule {r['rule']}: {r['message']}" for r in reasons)
    return f"publish of {ref} denied by policy: {named or 'no rule allowed it'}"


def publish_policy(ctx: Context, p: Principal, decided: list[dict[str, Any]]) -> PublishCheck:
    """The `publish` policy stage as a registry check: appends the decision to `decided` and
    raises `PolicyDenied` (naming the rules) when the tenant's policies deny."""

    async def check(tpl: Template, verified: VerifiedStatement | None) -> None:
        if ctx.policy is None:
            return
        scope = ctx.scope(p)
        tenant = await ctx.store.system.tenants.get(p.tenant_id)
        model = tpl.model
        doc = {
            "template": {
                "name": tpl.name,
                "version": model.version,
                "digest": tpl.digest,
                "capabilities": list(model.capabilities),
                "resources": {
                    "cpu": model.resources.cpu,
                    "memory_mb": model.resources.memory / 2**20,
                },
            },
            "signature": {
                "verified": verified is not None,
                "key_id": verified.keyids[0] if verified is not None and verified.keyids else None,
            },
            "tenant": {"id": tenant.id, "name": tenant.name},
            "caller": {"id": f"key:{p.key_id}", "roles": sorted(p.roles)},
        }
        await ctx.policy.ensure_tenant(scope.tenant_id, scope.policies)
        decision = ctx.policy.evaluate("publish", doc, tenant_id=scope.tenant_id).as_dict()
        decided.append(decision)
        if not decision["allow"]:
            raise PolicyDenied(_denied(tpl.ref, decision), decision)

    return check


def routes(ctx: Context) -> list[Route]:
    """The template routes."""
    indexed: set[str] = set()

    async def reg(p: Principal, *, search: bool = False) -> RegistryService:
        r = RegistryService(ctx.scope(p), index=ctx.index)
        if search and ctx.index is not None and p.tenant_id not in indexed:
            # the index is in memory: load a tenant's versions the first time it is searched
            await r.reindex()
            indexed.add(p.tenant_id)
        return r

    async def publish(request: Request) -> Response:
        p = await ctx.principal(request, "template:publish")
        b = await body(request, TemplatePublish)
        name = str(b.template.get("name", "?"))
        version = str(b.template.get("version", "?"))
        r = await reg(p)
        decided: list[dict[str, Any]] = []
        pub = await audited(
            ctx,
            p,
            "template.publish",
            f"template:{name}@{version}",
            lambda: r.publish(
                b.template,
                b.envelope,
                publisher=f"key:{p.key_id}",
                check=publish_policy(ctx, p, decided),
            ),
            decision_of=lambda _: decided[-1] if decided else None,
        )
        return json({"template": dump(TemplateOut, pub.template), "verified": _verified(pub)}, 201)

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "template:read")
        q = request.query_params.get("q")
        caps = tuple(request.query_params.getlist("capability"))
        limit = query_int(request, "limit", 100, 1, 1000)
        if q is not None:
            r = await reg(p, search=True)
            hits = await r.search(q, capabilities=caps, limit=limit)
            return json([{"key": h.key, "score": h.score} for h in hits])
        offset = query_int(request, "offset", 0, 0, 10**9)
        name = request.query_params.get("name")
        cap = caps[0] if caps else None
        rows = await ctx.scope(p).templates.list(
            name=name, capability=cap, limit=limit, offset=offset
        )
        if len(caps) > 1:
            rows = [t for t in rows if set(caps).issubset(t.capabilities)]
        return json(dump_list(TemplateOut, rows))

    async def versions(request: Request) -> Response:
        p = await ctx.principal(request, "template:read")
        name = request.path_params["name"]
        rows = await ctx.scope(p).templates.versions(name)
        if not rows:
            # like every addressed object: unknown in the caller's tenant is 404, not `[]`
            raise NotFound(f"template {name} not found")
        return json(dump_list(TemplateOut, rows))

    async def resolve(request: Request) -> Response:
        p = await ctx.principal(request, "template:read")
        ref = request.query_params.get("ref", "*")
        name = request.path_params["name"]
        r = await reg(p)
        try:
            hit = await r.resolve(name, ref)
        except Invalid:
            # a ref that does not parse names no object; without the template it is a 404
            if not await ctx.scope(p).templates.versions(name):
                raise NotFound(f"template {name} not found") from None
            raise
        return json({"template": dump(TemplateOut, hit.template), "warning": hit.warning})

    async def show(request: Request) -> Response:
        p = await ctx.principal(request, "template:read")
        name, version = request.path_params["name"], request.path_params["version"]
        r = await reg(p)
        hit = await r.resolve(name, version) if version.startswith("sha256:") else None
        t = hit.template if hit is not None else await r.get(name, version)
        return json(dump(TemplateOut, t))

    async def tag(request: Request) -> Response:
        p = await ctx.principal(request, "template:tag")
        name, tag_ = request.path_params["name"], request.path_params["tag"]
        b = await body(request, TagSet)
        r = await reg(p)
        t = await audited(
            ctx,
            p,
            "template.tag",
            f"template:{name}:{tag_}",
            lambda: r.tag(name, tag_, b.target, by=f"key:{p.key_id}"),
            details={"target": b.target},
        )
        return json(dump(TagOut, t))

    async def tag_history(request: Request) -> Response:
        p = await ctx.principal(request, "template:read")
        name, tag_ = request.path_params["name"], request.path_params["tag"]
        r = await reg(p)
        moves = await r.tag_history(name, tag_)
        if not moves:
            raise NotFound(f"tag {name}:{tag_} not found")
        return json(dump_list(TagMoveOut, moves))

    async def rollback(request: Request) -> Response:
        p = await ctx.principal(request, "template:tag")
        name, tag_ = request.path_params["name"], request.path_params["tag"]
        b = await body(request, TagRollback)
        r = await reg(p)
        t = await audited(
            ctx,
            p,
            "template.rollback",
            f"template:{name}:{tag_}",
            lambda: r.rollback(name, tag_, to=b.to, by=f"key:{p.key_id}"),
            details={"to": b.to},
        )
        return json(dump(TagOut, t))

    async def yank(request: Request) -> Response:
        p = await ctx.principal(request, "template:yank")
        name, version = request.path_params["name"], request.path_params["version"]
        b = await body(request, Yank)
        r = await reg(p)
        t = await audited(
            ctx,
            p,
            "template.yank" if b.yanked else "template.unyank",
            f"template:{name}@{version}",
            lambda: r.yank(name, version, yanked=b.yanked),
        )
        return json(dump(TemplateOut, t))

    async def deprecate(request: Request) -> Response:
        p = await ctx.principal(request, "template:yank")
        name, version = request.path_params["name"], request.path_params["version"]
        b = await body(request, Deprecate)
        r = await reg(p)
        t = await audited(
            ctx,
            p,
            "template.deprecate",
            f"template:{name}@{version}",
            lambda: r.deprecate(name, version, b.message),
            details={"message": b.message},
        )
        return json(dump(TemplateOut, t))

    return [
        Route("/templates", list_, methods=["GET"]),
        Route("/templates", publish, methods=["POST"]),
        Route("/templates/{name}", versions, methods=["GET"]),
        Route("/templates/{name}/resolve", resolve, methods=["GET"]),
        Route("/templates/{name}/tags/{tag}", tag, methods=["PUT"]),
        Route("/templates/{name}/tags/{tag}", tag_history, methods=["GET"]),
        Route("/templates/{name}/tags/{tag}/rollback", rollback, methods=["POST"]),
        Route("/templates/{name}/{version}", show, methods=["GET"]),
        Route("/templates/{name}/{version}/yank", yank, methods=["POST"]),
        Route("/templates/{name}/{version}/deprecate", deprecate, methods=["POST"]),
    ]
