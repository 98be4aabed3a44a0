"""Roles and the permission matrix every control-plane endpoint enforces with `require`.

| action             | admin | publisher | operator | viewer |
|--------------------|:-----:|:---------:|:--------:|:------:|
| tenant:read        |   ✓   |     ✓     |    ✓     |   ✓    |
| tenant:write       |   ✓   |           |          |        |
| key:manage         |   ✓   |           |          |        |
| key:read           |   ✓   |           |          |        |
| template:read      |   ✓   |     ✓     |    ✓     |   ✓    |
| template:publish   |   ✓   |     ✓     |          |        |
| template:tag       |   ✓   |     ✓     |          |        |
| template:yank      |   ✓   |     ✓     |          |        |
| publisher_key:read |   ✓   |     ✓     |    ✓     |   ✓    |
| publisher_key:write|   ✓   |           |          |        |
| trust_root:write   |   ✓   |           |          |        |
| policy:read        |   ✓   |     ✓     |    ✓     |   ✓    |
| policy:write       |   ✓   |           |          |        |
| policy:test        |   ✓   |     ✓     |    ✓     |        |
| agent:read         |   ✓   |     ✓     |    ✓     |   ✓    |
| agent:create       |   ✓   |           |    ✓     |        |
| agent:update       |   ✓   |           |    ✓     |        |
| agent:delete       |   ✓   |           |    ✓     |        |
| audit:read         |   ✓   |           |          |   ✓    |
| secret:read        |   ✓   |           |    ✓     |        |
| secret:write       |   ✓   |           |          |        |
| privacy:read       |   ✓   |           |          |        |
| privacy:write      |   ✓   |           |          |        |

Administration across tenants (list, create, change and delete tenants, issue a tenant's API
keys) is not a tenant role: it needs the system principal (`Principal.system`), which an admin key
of the system tenant acts as (the tenant and key `agentgate admin bootstrap` creates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from agentgate.errors import Forbidden

__all__ = ["PERMISSIONS", "ROLES", "Action", "Principal", "Role", "allowed", "require"]

Role = Literal["admin", "publisher", "operator", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("admin", "publisher", "operator", "viewer")

Action = Literal[
    "tenant:read",
    "tenant:write",
    "key:manage",
    "key:read",
    "template:read",
    "template:publish",
    "template:tag",
    "template:yank",
    "publisher_key:read",
    "publisher_key:write",
    "trust_root:write",
    "policy:read",
    "policy:write",
    "policy:test",
    "agent:read",
    "agent:create",
    "agent:update",
    "agent:delete",
    "audit:read",
    "secret:read",
    "secret:write",
    "privacy:read",
    "privacy:write",
]

_ALL: Final = frozenset(ROLES)
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "tenant:read": _ALL,
    "tenant:write": frozenset({"admin"}),
    "key:manage": frozenset({"admin"}),
    "key:read": frozenset({"admin"}),
    "template:read": _ALL,
    "template:publish": frozenset({"admin", "publisher"}),
    "template:tag": frozenset({"admin", "publisher"}),
    "template:yank": frozenset({"admin", "publisher"}),
    "publisher_key:read": _ALL,
    "publisher_key:write": frozenset({"admin"}),
    "trust_root:write": frozenset({"admin"}),
    "policy:read": _ALL,
    "policy:write": frozenset({"admin"}),
    "policy:test": frozenset({"admin", "publisher", "operator"}),
    "agent:read": _ALL,
    "agent:create": frozenset({"admin", "operator"}),
    "agent:update": frozenset({"admin", "operator"}),
    "agent:delete": frozenset({"admin", "operator"}),
    "audit:read": frozenset({"admin", "viewer"}),
    "secret:read": frozenset({"admin", "operator"}),
    "secret:write": frozenset({"admin"}),
    "privacy:read": frozenset({"admin"}),
    "privacy:write": frozenset({"admin"}),
}
"""action → roles allowed to perform it (the table in the module docstring)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant's API key with its roles, or the installation-wide system."""

    tenant_id: str
    key_id: str
    roles: frozenset[str]
    system: bool = False


def check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """The roles, validated and de-duplicated in matrix order; unknown ones raise ValueError."""
    given = set(roles)
    bad = sorted(given - _ALL)
    if bad:
        raise ValueError(f"unknown role(s) {bad}; roles are {list(ROLES)}")
    return tuple(r for r in ROLES if r in given)


def allowed(principal: Principal, action: str) -> bool:
    """Whether the principal may perform `action` (unknown actions are never allowed)."""
    if principal.system:
        return True
    roles = PERMISSIONS.get(action)
    return roles is not None and not roles.isdisjoint(principal.roles)


def require(principal: Principal, action: str, tenant_id: str | None = None) -> None:
    """Raise Forbidden unless the principal may do `action` (in `tenant_id`, when given)."""
    if not allowed(principal, action):
        raise Forbidden(f"{action} needs one of the roles {sorted(PERMISSIONS.get(action, ()))}")
    if tenant_id is not None and not principal.system and tenant_id != principal.tenant_id:
        raise Forbidden(f"{action} is not allowed outside the caller's tenant")
