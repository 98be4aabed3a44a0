"""Encrypted secrets (metadata + sealed versions) and the local key ring's state row.

Only ciphertext reaches these tables: the repository stores what `security.envelope.seal`
returns (base64 text columns, the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
import builtins
from dataclasses import dataclass

from agentgate.errors import NotFound
from agentgate.store._base import Clock, ScopedRepo, need
from agentgate.store._base import opt_float as _f
from agentgate.store.db import Database, Executor, Row

__all__ = [
    "KekStateRepo",
    "KekStateRow",
    "SecretRecord",
    "SecretRepo",
    "SecretVersionRow",
    "SystemSecretRepo",
]

_COLS = (
    "tenant_id, name, class, description, version, rotate_every, overlap, next_rotation_at, "
    "created_at, updated_at, rotated_at"
)
_VCOLS = (
    "tenant_id, name, version, wrapped_key, kek_version, nonce, ciphertext, created_at, valid_until"
)


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A secret's metadata (never its value)."""

    tenant_id: str
    name: str
    cls: str
    description: str
    version: int
    rotate_every: float | None
    overlap: float
    next_rotation_at: float | None
    created_at: float
    updated_at: float
    rotated_at: float | None


@dataclass(frozen=True, slots=True)
class SecretVersionRow:
    """One sealed version of a value."""

    tenant_id: str
    name: str
    version: int
    wrapped_key: str
    kek_version: int
    nonce: bytes
    ciphertext: bytes
    created_at: float
    valid_until: float | None


@dataclass(frozen=True, slots=True)
class KekStateRow:
    """The key ring's persisted state."""

    salt: bytes
    latest_version: int
    min_decryption_version: int


def _rec(r: Row) -> SecretRecord:
    return SecretRecord(
        tenant_id=r["tenant_id"],
        name=r["name"],
        cls=r["class"],
        description=r["description"],
        version=int(r["version"]),
        rotate_every=_f(r["rotate_every"]),
        overlap=float(r["overlap"]),
        next_rotation_at=_f(r["next_rotation_at"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        rotated_at=_f(r["rotated_at"]),
    )


def _ver(r: Row) -> SecretVersionRow:
    return SecretVersionRow(
        tenant_id=r["tenant_id"],
        name=r["name"],
        version=int(r["version"]),
        wrapped_key=r["wrapped_key"],
        kek_version=int(r["kek_version"]),
        nonce=base64.b64decode(r["nonce"]),
        ciphertext=base64.b64decode(r["ciphertext"]),
        created_at=float(r["created_at"]),
        valid_until=_f(r["valid_until"]),
    )


def _enc(b: bytes) -> str:
    return base64.b64encode(b).decode()


class SecretRepo(ScopedRepo):
    """One tenant's secrets."""

    async def _insert_version(
        self,
        tx: Executor,
        name: str,
        version: int,
        wrapped_key: str,
        kek_version: int,
        nonce: bytes,
        ciphertext: bytes,
        now: float,
    ) -> None:
        await tx.execute(
            f"INSERT INTO secret_versions ({_VCOLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            self._tenant,
            name,
            version,
            wrapped_key,
            kek_version,
            _enc(nonce),
            _enc(ciphertext),
            now,
        )

    async def create(
        self,
        name: str,
        *,
        cls: str,
        description: str,
        rotate_every: float | None,
        overlap: float,
        wrapped_key: str,
        kek_version: int,
        nonce: bytes,
        ciphertext: bytes,
    ) -> SecretRecord:
        """Store a new secret with its first version (Conflict when the name is taken)."""
        now = self._clock()
        nxt = None if rotate_every is None else now + rotate_every
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO secrets ({_COLS}) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, NULL)",
                self._tenant,
                name,
                cls,
                description,
                rotate_every,
                overlap,
                nxt,
                now,
                now,
            )
            await self._insert_version(
                tx, name, 1, wrapped_key, kek_version, nonce, ciphertext, now
            )
        return await self.get(name)

    async def add_version(
        self,
        name: str,
        *,
        expected_version: int,
        wrapped_key: str,
        kek_version: int,
        nonce: bytes,
        ciphertext: bytes,
    ) -> SecretRecord:
        """Make a new current version; the previous one stays valid for the overlap window.

        Conflict when somebody else rotated first (`expected_version` is stale).
        """
        from agentgate.errors import Conflict

        now = self._clock()
        async with self._db.transaction() as tx:
            row = need(
                await tx.fetchrow(
                    f"SELECT {_COLS} FROM secrets WHERE tenant_id = ? AND name = ?",
                    self._tenant,
                    name,
                ),
                "secret",
            )
            cur = _rec(row)
            if cur.version != expected_version:
                raise Conflict(f"secret {name!r} changed meanwhile (version {cur.version})")
            new = cur.version + 1
            await tx.execute(
                "UPDATE secret_versions SET valid_until = ? "
                "WHERE tenant_id = ? AND name = ? AND valid_until IS NULL",
                now + cur.overlap,
                self._tenant,
                name,
            )
            await self._insert_version(
                tx, name, new, wrapped_key, kek_version, nonce, ciphertext, now
            )
            nxt = None if cur.rotate_every is None else now + cur.rotate_every
            await tx.execute(
                "UPDATE secrets SET version = ?, updated_at = ?, rotated_at = ?, "
                "next_rotation_at = ? WHERE tenant_id = ? AND name = ?",
                new,
                now,
                now,
                nxt,
                self._tenant,
                name,
            )
            # versions past their overlap are of no use to anyone: drop their ciphertext
            await tx.execute(
                "DELETE FROM secret_versions WHERE tenant_id = ? AND name = ? "
                "AND valid_until IS NOT NULL AND valid_until <= ?",
                self._tenant,
                name,
                now,
            )
        return await self.get(name)

    async def get(self, name: str) -> SecretRecord:
        """A secret's metadata, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM secrets WHERE tenant_id = ? AND name = ?", self._tenant, name
        )
        return _rec(need(row, "secret"))

    async def list(self) -> builtins.list[SecretRecord]:
        """This tenant's secrets by name."""
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM secrets WHERE tenant_id = ? ORDER BY name", self._tenant
        )
        return [_rec(r) for r in rows]

    async def versions(self, name: str, now: float) -> builtins.list[SecretVersionRow]:
        """Versions still valid at `now`, newest first (the current one first)."""
        rows = await self._db.fetch(
            f"SELECT {_VCOLS} FROM secret_versions WHERE tenant_id = ? AND name = ? "
            "AND (valid_until IS NULL OR valid_until > ?) ORDER BY version DESC",
            self._tenant,
            name,
            now,
        )
        if not rows:
            raise NotFound("secret not found")
        return [_ver(r) for r in rows]

    async def delete(self, name: str) -> None:
        """Delete a secret and every version; NotFound if absent."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM secret_versions WHERE tenant_id = ? AND name = ?", self._tenant, name
            )
            n = await tx.execute(
                "DELETE FROM secrets WHERE tenant_id = ? AND name = ?", self._tenant, name
            )
            if n == 0:
                raise NotFound("secret not found")


class SystemSecretRepo:
    """Cross-tenant scans: rotation schedules and KEK rewraps."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, now: float, *, limit: int = 1000) -> builtins.list[SecretRecord]:
        """Secrets whose next rotation is at or before `now`, oldest due first."""
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM secrets WHERE next_rotation_at IS NOT NULL "
            "AND next_rotation_at <= ? ORDER BY next_rotation_at LIMIT ?",
            now,
            limit,
        )
        return [_rec(r) for r in rows]

    async def versions_page(
        self, after: tuple[str, str, int] | None, limit: int
    ) -> builtins.list[SecretVersionRow]:
        """Every stored version in key order, `limit` at a time after `after`."""
        if after is None:
            rows = await self._db.fetch(
                f"SELECT {_VCOLS} FROM secret_versions ORDER BY tenant_id, name, version LIMIT ?",
                limit,
            )
        else:
            t, n, v = after
            rows = await self._db.fetch(
                f"SELECT {_VCOLS} FROM secret_versions WHERE tenant_id > ? "
                "OR (tenant_id = ? AND name > ?) OR (tenant_id = ? AND name = ? AND version > ?) "
                "ORDER BY tenant_id, name, version LIMIT ?",
                t,
                t,
                n,
                t,
                n,
                v,
                limit,
            )
        return [_ver(r) for r in rows]

    async def replace_key(self, row: SecretVersionRow, wrapped_key: str, kek_version: int) -> bool:
        """Swap one version's wrapped key if it is still the one read (False when it changed)."""
        n = await self._db.execute(
            "UPDATE secret_versions SET wrapped_key = ?, kek_version = ? "
            "WHERE tenant_id = ? AND name = ? AND version = ? AND wrapped_key = ?",
            wrapped_key,
            kek_version,
            row.tenant_id,
            row.name,
            row.version,
            row.wrapped_key,
        )
        return n == 1

    async def count_below(self, kek_version: int) -> int:
        """How many versions are wrapped under a KEK version below `kek_version`."""
        row = await self._db.fetchrow(
            "SELECT COUNT(*) AS n FROM secret_versions WHERE kek_version < ?", kek_version
        )
        return int(need(row, "count")["n"])


class KekStateRepo:
    """The single key-ring state row."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get_or_create(self, salt: bytes) -> KekStateRow:
        """The stored state; first use stores `salt` with versions 1/1."""
        row = await self._db.fetchrow(
            "SELECT salt, latest_version, min_decryption_version FROM kek_state WHERE id = 1"
        )
        if row is None:
            async with self._db.transaction() as tx:
                existing = await tx.fetchrow("SELECT id FROM kek_state WHERE id = 1")
                if existing is None:
                    await tx.execute(
                        "INSERT INTO kek_state (id, salt, latest_version, "
                        "min_decryption_version, updated_at) VALUES (1, ?, 1, 1, ?)",
                        _enc(salt),
                        self._clock(),
                    )
            row = await self._db.fetchrow(
                "SELECT salt, latest_version, min_decryption_version FROM kek_state WHERE id = 1"
            )
        r = need(row, "kek state")
        return KekStateRow(
            base64.b64decode(r["salt"]), int(r["latest_version"]), int(r["min_decryption_version"])
        )

    async def save(self, latest_version: int, min_decryption_version: int) -> None:
        """Persist the ring's versions."""
        await self._db.execute(
            "UPDATE kek_state SET latest_version = ?, min_decryption_version = ?, updated_at = ? "
            "WHERE id = 1",
            latest_version,
            min_decryption_version,
            self._clock(),
        )
