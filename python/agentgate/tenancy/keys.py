"""API keys: create (secret shown once), rotate with overlap, revoke, authenticate, and the
snapshot of valid keys the gateway data plane loads.

A secret looks like `ag_<keyid>_<random>`: the key id (32 hex) finds the row in O(1), then the
SHA-256 of the whole secret is compared in constant time. Only that digest is stored, the same
`sha256:<hex>` the gateway config's `auth.api_keys[].hash` uses, so one key works on both planes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentgate.errors import Invalid, Unauthorized
from agentgate.store import ApiKey, Store, TenantScope
from agentgate.store._base import new_id
from agentgate.tenancy.roles import Principal, check_roles

__all__ = [
    "KeySnapshot",
    "authenticate",
    "create_key",
    "gateway_keys",
    "hash_secret",
    "key_snapshot",
    "keys_version",
    "revoke_key",
    "rotate_key",
]

_SECRET = re.compile(r"^ag_([0-9a-f]{32})_([A-Za-z0-9_-]{32,128})$")
DEFAULT_OVERLAP = 24 * 3600.0


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a secret, as stored (and as the gateway compares)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> tuple[str, str]:
    key_id = new_id()
    return key_id, f"ag_{key_id}_{secrets.token_urlsafe(32)}"


def _expiry(now: float, expires_in: float | None) -> float | None:
    if expires_in is None:
        return None
    if not expires_in > 0:
        raise Invalid(f"expires_in must be > 0 seconds, got {expires_in!r}", "$.expires_in")
    return now + expires_in


async def create_key(
    scope: TenantScope,
    name: str,
    roles: Iterable[str],
    expires_in: float | None = None,
    *,
    now: float | None = None,
) -> tuple[ApiKey, str]:
    """Create a key in the scope's tenant; returns (record, secret). Show the secret once."""
    if not name or len(name) > 200:
        raise Invalid("name must be 1..200 characters", "$.name")
    try:
        role_list = check_roles(roles)
    except ValueError as e:
        raise Invalid(str(e), "$.roles") from None
    if not role_list:
        raise Invalid("a key needs at least one role", "$.roles")
    key_id, secret = _new_secret()
    rec = await scope.api_keys.insert(
        key_id=key_id,
        name=name,
        sha256=hash_secret(secret),
        prefix=secret[:11],
        roles=role_list,
        expires_at=_expiry(scope.clock() if now is None else now, expires_in),
    )
    return rec, secret


async def rotate_key(
    scope: TenantScope,
    key_id: str,
    *,
    overlap: float = DEFAULT_OVERLAP,
    expires_in: float | None = None,
) -> tuple[ApiKey, ApiKey, str]:
    """Issue a successor (same name and roles); the old key stays valid for `overlap` seconds.

    Returns (old, new, new_secret).
    """
    if overlap < 0:
        raise Invalid(f"overlap must be >= 0 seconds, got {overlap!r}", "$.overlap")
    now = scope.clock()
    new_key_id, secret = _new_secret()
    old, new = await scope.api_keys.rotate(
        key_id,
        key_id=new_key_id,
        sha256=hash_secret(secret),
        prefix=secret[:11],
        overlap_until=now + overlap,
        expires_at=_expiry(now, expires_in),
    )
    return old, new, secret


async def revoke_key(scope: TenantScope, key_id: str) -> ApiKey:
    """Revoke a key now; the data plane drops it at its next snapshot poll."""
    return await scope.api_keys.revoke(key_id)


async def authenticate(store: Store, secret: str, *, now: float | None = None) -> Principal:
    """The principal of a valid secret, else Unauthorized (one message for every reason)."""
    m = _SECRET.match(secret)
    if m is None:
        raise Unauthorized("invalid API key")
    key = await store.system.api_keys.get(m.group(1))
    # Compare even when the row is missing so timing doesn't tell which ids exist.
    stored = key.sha256 if key is not None else "0" * 64
    ok = hmac.compare_digest(stored, hash_secret(secret))
    t = store.clock() if now is None else now
    if key is None or not ok or not key.valid_at(t):
        raise Unauthorized("invalid API key")
    if await store.system.api_keys.tenant_disabled(key.tenant_id):
        raise Unauthorized("invalid API key")
    return Principal(tenant_id=key.tenant_id, key_id=key.id, roles=frozenset(key.roles))


async def keys_version(store: Store) -> int:
    """A counter that increases on every key or tenant-status change (cheap to poll)."""
    return await store.system.api_keys.version()


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    """Valid keys at `taken_at` plus when the set next changes by time alone."""

    version: int
    keys: list[dict[str, Any]]
    taken_at: float
    next_change_at: float | None


async def key_snapshot(store: Store, *, now: float | None = None) -> KeySnapshot:
    """`gateway_keys` with the version read first and the next expiry/overlap end.

    A poller reloads when `keys_version` differs from `version` or the clock passes
    `next_change_at` (expiries change validity without a write).
    """
    t = store.clock() if now is None else now
    version = await keys_version(store)
    rows = await store.system.api_keys.candidates(t)
    keys: list[dict[str, Any]] = []
    ends: list[float] = []
    for key, tenant_disabled in rows:
        if tenant_disabled:
            continue
        keys.append(
            {
                "id": key.id,
                "sha256": key.sha256,
                "hash": f"sha256:{key.sha256}",
                "tenant": key.tenant_id,
                "roles": list(key.roles),
            }
        )
        ends.extend(x for x in (key.expires_at, key.overlap_until) if x is not None)
    return KeySnapshot(version, keys, t, min(ends) if ends else None)


async def gateway_keys(store: Store, *, now: float | None = None) -> list[dict[str, Any]]:
    """All currently valid keys as `{id, sha256, hash, tenant, roles}` for the core's api_keys."""
    return (await key_snapshot(store, now=now)).keys
