"""Tenants (system-level) and API keys (tenant-scoped, plus the lookups authentication needs)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from agentgate.errors import NotFound
from agentgate.store._base import Clock, ScopedRepo, bump_counter, dumps, loads, need, new_id
from agentgate.store._base import opt_float as _f
from agentgate.store.db import Database, Row
from agentgate.store.models import ApiKey, Tenant

__all__ = ["ApiKeyRepo", "SystemApiKeyRepo", "TenantRepo"]

_TENANT_COLS = "id, name, display_name, quotas, disabled, created_at, updated_at"
_KEY_COLS = (
    "id, tenant_id, name, sha256, prefix, roles, created_at, expires_at, revoked_at, "
    "rotated_from, overlap_until"
)


def _tenant(r: Row) -> Tenant:
    return Tenant(
        id=r["id"],
        name=r["name"],
        display_name=r["display_name"],
        quotas=loads(r["quotas"]),
        disabled=bool(r["disabled"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


def _key(r: Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        sha256=r["sha256"],
        prefix=r["prefix"],
        roles=tuple(loads(r["roles"])),
        created_at=float(r["created_at"]),
        expires_at=_f(r["expires_at"]),
        revoked_at=_f(r["revoked_at"]),
        rotated_from=r["rotated_from"],
        overlap_until=_f(r["overlap_until"]),
    )


class TenantRepo:
    """Cross-tenant administration of tenants (reachable only from `store.system`)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self,
        name: str,
        *,
        display_name: str = "",
        quotas: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> Tenant:
        """Create a tenant; a taken name is Conflict."""
        now = self._clock()
        tid = tenant_id or new_id()
        await self._db.execute(
            f"INSERT INTO tenants ({_TENANT_COLS}) VALUES (?, ?, ?, ?, 0, ?, ?)",
            tid,
            name,
            display_name,
            dumps(quotas or {}),
            now,
            now,
        )
        return await self.get(tid)

    async def get(self, tenant_id: str) -> Tenant:
        """A tenant by id, or NotFound."""
        row = await self._db.fetchrow(f"SELECT {_TENANT_COLS} FROM tenants WHERE id = ?", tenant_id)
        return _tenant(need(row, "tenant"))

    async def get_by_name(self, name: str) -> Tenant:
        """A tenant by its unique name, or NotFound."""
        row = await self._db.fetchrow(f"SELECT {_TENANT_COLS} FROM tenants WHERE name = ?", name)
        return _tenant(need(row, "tenant"))

    async def list(self, *, limit: int = 1000, offset: int = 0) -> builtins.list[Tenant]:
        """Tenants ordered by name."""
        rows = await self._db.fetch(
            f"SELECT {_TENANT_COLS} FROM tenants ORDER BY name LIMIT ? OFFSET ?", limit, offset
        )
        return [_tenant(r) for r in rows]

    async def update(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        quotas: dict[str, Any] | None = None,
        disabled: bool | None = None,
    ) -> Tenant:
        """Change the given fields; disabling a tenant also invalidates its keys (keys_version)."""
        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [self._clock()]
        if display_name is not None:
            sets.append("display_name = ?")
            args.append(display_name)
        if quotas is not None:
            sets.append("quotas = ?")
            args.append(dumps(quotas))
        if disabled is not None:
            sets.append("disabled = ?")
            args.append(int(disabled))
        async with self._db.transaction() as tx:
            n = await tx.execute(
                f"UPDATE tenants SET {', '.join(sets)} WHERE id = ?", *args, tenant_id
            )
            if n == 0:
                raise NotFound("tenant not found")
            if disabled is not None:
                await bump_counter(tx, "keys_version")
        return await self.get(tenant_id)

    async def delete(self, tenant_id: str) -> None:
        """Delete a tenant and (by cascade) everything it owns; NotFound if absent."""
        async with self._db.transaction() as tx:
            # Children that reference templates go first: the template FKs don't cascade.
            for table in ("agents", "template_tag_history", "template_tags"):
                await tx.execute(f"DELETE FROM {table} WHERE tenant_id = ?", tenant_id)
            n = await tx.execute("DELETE FROM tenants WHERE id = ?", tenant_id)
            if n == 0:
                raise NotFound("tenant not found")
            await bump_counter(tx, "keys_version")


class ApiKeyRepo(ScopedRepo):
    """API keys of one tenant. Every write bumps `keys_version` in the same transaction."""

    async def insert(
        self,
        *,
        key_id: str,
        name: str,
        sha256: str,
        prefix: str,
        roles: Sequence[str],
        expires_at: float | None = None,
    ) -> ApiKey:
        """Store a new key (hash only); the tenant must exist (else NotFound)."""
        async with self._db.transaction() as tx:
            await self._insert(tx, key_id, name, sha256, prefix, roles, expires_at, None)
            await bump_counter(tx, "keys_version")
        return await self.get(key_id)

    async def _insert(
        self,
        tx: Any,
        key_id: str,
        name: str,
        sha256: str,
        prefix: str,
        roles: Sequence[str],
        expires_at: float | None,
        rotated_from: str | None,
    ) -> None:
        await tx.execute(
            f"INSERT INTO api_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
            key_id,
            self._tenant,
            name,
            sha256,
            prefix,
            dumps(list(roles)),
            self._clock(),
            expires_at,
            rotated_from,
        )

    async def rotate(
        self,
        old_key_id: str,
        *,
        key_id: str,
        sha256: str,
        prefix: str,
        overlap_until: float,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, ApiKey]:
        """Atomically add a successor key (same name, roles) and end the old one at overlap_until.

        Returns (old, new). The old key must be this tenant's and not revoked (else NotFound).
        """
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ? AND tenant_id = ? "
                "AND revoked_at IS NULL",
                old_key_id,
                self._tenant,
            )
            old = _key(need(row, "api key"))
            await self._insert(tx, key_id, old.name, sha256, prefix, old.roles, expires_at, old.id)
            await tx.execute(
                "UPDATE api_keys SET overlap_until = ? WHERE id = ? AND tenant_id = ?",
                overlap_until,
                old.id,
                self._tenant,
            )
            await bump_counter(tx, "keys_version")
        return await self.get(old_key_id), await self.get(key_id)

    async def get(self, key_id: str) -> ApiKey:
        """A key of this tenant by id, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ? AND tenant_id = ?",
            key_id,
            self._tenant,
        )
        return _key(need(row, "api key"))

    async def list(self) -> builtins.list[ApiKey]:
        """This tenant's keys, oldest first (revoked and expired included)."""
        rows = await self._db.fetch(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id",
            self._tenant,
        )
        return [_key(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke now (idempotent: the first revocation time is kept); NotFound if absent."""
        async with self._db.transaction() as tx:
            n = await tx.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) "
                "WHERE id = ? AND tenant_id = ?",
                self._clock(),
                key_id,
                self._tenant,
            )
            if n == 0:
                raise NotFound("api key not found")
            await bump_counter(tx, "keys_version")
        return await self.get(key_id)

    async def delete(self, key_id: str) -> None:
        """Delete a key row; NotFound if absent."""
        async with self._db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM api_keys WHERE id = ? AND tenant_id = ?", key_id, self._tenant
            )
            if n == 0:
                raise NotFound("api key not found")
            await bump_counter(tx, "keys_version")


class SystemApiKeyRepo:
    """The cross-tenant key lookups authentication and the data-plane snapshot need."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key_id: str) -> ApiKey | None:
        """A key by id across tenants (authentication parses the id from the secret)."""
        row = await self._db.fetchrow(f"SELECT {_KEY_COLS} FROM api_keys WHERE id = ?", key_id)
        return None if row is None else _key(row)

    async def candidates(self, now: float) -> builtins.list[tuple[ApiKey, bool]]:
        """Unrevoked keys not yet expired at `now`, each with its tenant's `disabled` flag."""
        cols = ", ".join(f"k.{c.strip()}" for c in _KEY_COLS.split(","))
        rows = await self._db.fetch(
            f"SELECT {cols}, t.disabled AS tenant_disabled FROM api_keys k "
            "JOIN tenants t ON t.id = k.tenant_id "
            "WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?) "
            "AND (k.overlap_until IS NULL OR k.overlap_until > ?) ORDER BY k.id",
            now,
            now,
        )
        return [(_key(r), bool(r["tenant_disabled"])) for r in rows]

    async def tenant_disabled(self, tenant_id: str) -> bool:
        """Whether the tenant is disabled (a missing tenant counts as disabled)."""
        row = await self._db.fetchrow("SELECT disabled FROM tenants WHERE id = ?", tenant_id)
        return row is None or bool(row["disabled"])

    async def version(self) -> int:
        """`keys_version`: increases on every key or tenant-status change."""
        row = await self._db.fetchrow("SELECT value FROM counters WHERE name = 'keys_version'")
        return int(need(row, "keys_version counter")["value"])
