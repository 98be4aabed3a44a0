"""Tenant administration: validated wrappers over `store.system.tenants`."""

from __future__ import annotations

import re
from typing import Any

from agentgate.errors import Invalid
from agentgate.store import Store, Tenant

__all__ = ["create_tenant", "delete_tenant", "get_tenant", "list_tenants", "update_tenant"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _check_quotas(quotas: dict[str, Any] | None) -> None:
    if quotas is None:
        return
    for k, v in quotas.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise Invalid(f"quota {k!r} must be a non-negative number", f"$.quotas.{k}")


async def create_tenant(
    store: Store, name: str, *, display_name: str = "", quotas: dict[str, Any] | None = None
) -> Tenant:
    """Create a tenant; `name` is a DNS-label-like slug (Conflict if taken)."""
    if not _NAME.match(name):
        raise Invalid("name must match [a-z0-9][a-z0-9-]{0,62}", "$.name")
    _check_quotas(quotas)
    return await store.system.tenants.create(name, display_name=display_name, quotas=quotas)


async def get_tenant(store: Store, tenant_id: str) -> Tenant:
    """A tenant by id, or NotFound."""
    return await store.system.tenants.get(tenant_id)


async def list_tenants(store: Store, *, limit: int = 1000, offset: int = 0) -> list[Tenant]:
    """All tenants by name."""
    return await store.system.tenants.list(limit=limit, offset=offset)


async def update_tenant(
    store: Store,
    tenant_id: str,
    *,
    display_name: str | None = None,
    quotas: dict[str, Any] | None = None,
    disabled: bool | None = None,
) -> Tenant:
    """Change display name, quotas or disabled flag (a disabled tenant's keys stop working)."""
    _check_quotas(quotas)
    return await store.system.tenants.update(
        tenant_id, display_name=display_name, quotas=quotas, disabled=disabled
    )


async def delete_tenant(store: Store, tenant_id: str) -> None:
    """Delete a tenant with everything it owns (the audit trail stays)."""
    await store.system.tenants.delete(tenant_id)
