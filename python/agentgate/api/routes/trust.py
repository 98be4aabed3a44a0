"""`/api/publisher-keys` and `/api/trust-roots`: who may sign the tenant's templates."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate import crypto
from agentgate.api.routes._common import Context, audited, body, dump, dump_list, json
from agentgate.api.routes._models import (
    PublisherKeyCreate,
    PublisherKeyOut,
    TrustRootCreate,
    TrustRootOut,
)
from agentgate.errors import Invalid, NotFound
from agentgate.registry.signing import key_id
from agentgate.registry.trust import SignedRoot, TrustHistory, TrustRoot
from agentgate.store import TrustRoot as TrustRootRecord

__all__ = ["routes"]


def routes(ctx: Context) -> list[Route]:
    """The publisher-key and trust-root routes."""

    async def keys(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:read")
        return json(dump_list(PublisherKeyOut, await ctx.scope(p).publisher_keys.list()))

    async def key(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:read")
        rec = await ctx.scope(p).publisher_keys.get(request.path_params["keyid"])
        return json(dump(PublisherKeyOut, rec))

    async def add_key(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:write")
        b = await body(request, PublisherKeyCreate)
        try:
            raw = crypto.raw_public_key(b.public_key)
        except (ValueError, TypeError) as e:
            raise Invalid(f"public_key is not an Ed25519 public key: {e}", "$.public_key") from None
        if b.valid_from is not None and b.valid_until is not None and b.valid_until <= b.valid_from:
            raise Invalid("valid_until must be after valid_from", "$.valid_until")
        kid = key_id(raw)
        rec = await audited(
            ctx,
            p,
            "publisher_key.add",
            f"publisher_key:{kid}",
            lambda: ctx.scope(p).publisher_keys.add(
                kid,
                crypto.KeyPair(b"", raw).public_b64(),
                valid_from=b.valid_from,
                valid_until=b.valid_until,
            ),
        )
        return json(dump(PublisherKeyOut, rec), 201)

    async def revoke_key(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:write")
        kid = request.path_params["keyid"]
        rec = await audited(
            ctx,
            p,
            "publisher_key.revoke",
            f"publisher_key:{kid}",
            lambda: ctx.scope(p).publisher_keys.revoke(kid),
        )
        return json(dump(PublisherKeyOut, rec))

    async def roots(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:read")
        return json(dump_list(TrustRootOut, await ctx.scope(p).trust_roots.list()))

    async def root(request: Request) -> Response:
        p = await ctx.principal(request, "publisher_key:read")
        raw = request.path_params["version"]
        if not raw.isdigit() or len(raw) > 9:
            raise NotFound(f"trust root v{raw} not found")
        return json(dump(TrustRootOut, await ctx.scope(p).trust_roots.get(int(raw))))

    async def add_root(request: Request) -> Response:
        p = await ctx.principal(request, "trust_root:write")
        b = await body(request, TrustRootCreate)
        scope = ctx.scope(p)

        async def work() -> TrustRootRecord:
            existing = await scope.trust_roots.list()
            if not existing:
                # the first root is pinned by whoever may write trust roots: no signature chain
                new = TrustRoot.from_json(b.body, "$.body")
                if new.version != 1:
                    raise Invalid("the first trust root must be version 1", "$.body.version")
            else:
                history = TrustHistory.verify_chain(
                    TrustRoot.from_json(existing[0].body),
                    [SignedRoot(r.body, r.signatures) for r in existing[1:]],
                )
                new = history.check_next(SignedRoot(b.body, b.signatures))
            return await scope.trust_roots.add(new.version, dict(b.body), list(b.signatures))

        rec = await audited(ctx, p, "trust_root.add", "trust_root", work)
        return json(dump(TrustRootOut, rec), 201)

    return [
        Route("/publisher-keys", keys, methods=["GET"]),
        Route("/publisher-keys", add_key, methods=["POST"]),
        Route("/publisher-keys/{keyid}", key, methods=["GET"]),
        Route("/publisher-keys/{keyid}", revoke_key, methods=["DELETE"]),
        Route("/trust-roots", roots, methods=["GET"]),
        Route("/trust-roots", add_root, methods=["POST"]),
        Route("/trust-roots/{version}", root, methods=["GET"]),
    ]
