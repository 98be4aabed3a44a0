"""API authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>` through
`tenancy.authenticate`; the principal is kept on `request.state.principal`.

Admin keys of the installation's system tenant (named by `system_tenant`, `system` by default:
the tenant `agentgate admin bootstrap` creates) act as the system principal, which may manage
tenants; every other key acts inside its own tenant only.

`admin_access` guards the admin listener's gateway views (`/metrics`, `/api/config`,
`/api/health/agents`) when the config says `admin_auth: required`.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Protocol

from starlette.requests import Request

from agentgate.config import ApiKey as ConfigKey
from agentgate.config import GatewayConfig
from agentgate.errors import Forbidden, Unauthorized
from agentgate.store import Store
from agentgate.tenancy import ROLES, Principal, authenticate, hash_secret

__all__ = [
    "ADMIN_READ_ROLES",
    "PrincipalSource",
    "admin_access",
    "admin_exposure_warning",
    "config_key_roles",
    "principal",
    "secret_of",
]

ADMIN_READ_ROLES: frozenset[str] = frozenset(ROLES)
"""Roles that may read the admin listener's views: viewer or above (every control-plane role)."""


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


class PrincipalSource(Protocol):
    """Authenticates store keys (the API's `Context`): the principal and the system tenant id."""

    system_tenant_id: str | None

    async def principal(self, request: Request, action: str | None = None) -> Principal:
        """The caller (Unauthorized without a valid key)."""
        ...


def config_key_roles(keys: Sequence[ConfigKey], secret: str) -> frozenset[str] | None:
    """Roles of the config file's `auth.api_keys` entry for `secret`; None when none matches."""
    digest = "sha256:" + hash_secret(secret)
    found: ConfigKey | None = None
    for k in keys:  # every entry compared in constant time: timing tells nothing of the others
        if hmac.compare_digest(k.hash, digest):
            found = k
    return None if found is None else frozenset(found.roles)


async def admin_access(
    request: Request, config: GatewayConfig, source: PrincipalSource | None
) -> None:
    """Raise Unauthorized / Forbidden unless the request may read the admin views.

    With `admin_auth: none` everything passes. With `required` the request needs a key with a
    role of `ADMIN_READ_ROLES`: a config-file key (`auth.api_keys`), or a store key of the
    system tenant. Keys of other tenants are refused, since these views show every tenant's
    agents and routes.
    """
    if config.admin_auth == "none":
        return
    secret = secret_of(request)
    if not secret:
        raise Unauthorized(
            "this endpoint needs an API key (admin_auth: required): "
            "send Authorization: Bearer <key> or X-API-Key"
        )
    need = f"one of the roles {sorted(ADMIN_READ_ROLES)}"
    roles = config_key_roles(config.auth.api_keys, secret)
    if roles is not None:
        if roles.isdisjoint(ADMIN_READ_ROLES):
            raise Forbidden(f"this key has none of the roles the admin views need ({need})")
        return
    if source is None:
        raise Unauthorized("invalid API key")
    p = await source.principal(request)
    if p.tenant_id != source.system_tenant_id:
        raise Forbidden(
            "the admin views show every tenant: they need a key of the system tenant "
            f"or of the config file's auth.api_keys, with {need}"
        )
    if p.roles.isdisjoint(ADMIN_READ_ROLES):
        raise Forbidden(f"this key has none of the roles the admin views need ({need})")


def admin_exposure_warning(admin_listen: str, admin_auth: str) -> str | None:
    """A warning when the admin views are open (`admin_auth: none`) beyond loopback."""
    if admin_auth != "none":
        return None
    host = admin_listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to anything
    return (
        f"the admin listener {admin_listen} is not on loopback and admin_auth is none: "
        "/metrics, /api/config and /api/health/agents are open to anyone who can reach it "
        "(set admin_auth: required)"
    )
