"""API authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>` through
`tenancy.authenticate`; the principal is kept on `request.state.principal`.

Admin keys of the installation's system tenant (named by `system_tenant`, `system` by default:
the tenant `agentgate admin bootstrap` creates) act as the system principal, which may manage
tenants; every other key acts inside its own tenant only.
"""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from agentgate.errors import Unauthorized
from agentgate.store import Store
from agentgate.tenancy import Principal, authenticate

__all__ = ["principal", "secret_of"]


def secret_of(request: Request) -> str | None:
    """The API key a request presents, if any."""
    h = request.headers.get("authorization")
    if h is not None:
        scheme, _, token = h.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return request.headers.get("x-api-key")


async def principal(request: Request, store: Store, system_tenant_id: str | None) -> Principal:
    """The authenticated caller (Unauthorized without a valid key)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    secret = secret_of(request)
    if not secret:
        raise Unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key")
    p = await authenticate(store, secret)
    if system_tenant_id is not None and p.tenant_id == system_tenant_id and "admin" in p.roles:
        p = dataclasses.replace(p, system=True)
    request.state.principal = p
    return p
