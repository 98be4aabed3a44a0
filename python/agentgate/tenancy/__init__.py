"""Tenants, API keys and roles: who may call the control plane and what they may do.

See `agentgate.tenancy.roles` for the permission matrix.
"""

from __future__ import annotations

from agentgate.tenancy.keys import (
    KeySnapshot,
    authenticate,
    create_key,
    gateway_keys,
    hash_secret,
    key_snapshot,
    keys_version,
    revoke_key,
    rotate_key,
)
from agentgate.tenancy.roles import PERMISSIONS, ROLES, Action, Principal, Role, allowed, require
from agentgate.tenancy.tenants import (
    create_tenant,
    delete_tenant,
    get_tenant,
    list_tenants,
    update_tenant,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "Action",
    "KeySnapshot",
    "Principal",
    "Role",
    "allowed",
    "authenticate",
    "create_key",
    "create_tenant",
    "delete_tenant",
    "gateway_keys",
    "get_tenant",
    "hash_secret",
    "key_snapshot",
    "keys_version",
    "list_tenants",
    "require",
    "revoke_key",
    "rotate_key",
    "update_tenant",
]
