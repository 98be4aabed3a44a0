"""Template signatures, publisher keys and trust roots (tenant-scoped, storage only).

Verification, thresholds and key rotation rules live in registry/ (`signing.py`, `trust.py`).
"""

from __future__ import annotations

import builtins
from typing import Any

from agentgate.errors import NotFound
from agentgate.store._base import ScopedRepo, dumps, loads, need
from agentgate.store._base import opt_float as _f
from agentgate.store.db import Row
from agentgate.store.models import PublisherKey, Signature, TrustRoot

__all__ = ["PublisherKeyRepo", "SignatureRepo", "TrustRootRepo"]

_SIG = "tenant_id, digest, keyid, envelope, verified_at, created_at"
_PK = "tenant_id, keyid, public_key, algorithm, valid_from, valid_until, revoked_at, created_at"
_TR = "tenant_id, version, body, signatures, created_at"


def _sig(r: Row) -> Signature:
    return Signature(
        tenant_id=r["tenant_id"],
        digest=r["digest"],
        keyid=r["keyid"],
        envelope=loads(r["envelope"]),
        verified_at=_f(r["verified_at"]),
        created_at=float(r["created_at"]),
    )


def _pk(r: Row) -> PublisherKey:
    return PublisherKey(
        tenant_id=r["tenant_id"],
        keyid=r["keyid"],
        public_key=r["public_key"],
        algorithm=r["algorithm"],
        valid_from=float(r["valid_from"]),
        valid_until=_f(r["valid_until"]),
        revoked_at=_f(r["revoked_at"]),
        created_at=float(r["created_at"]),
    )


def _tr(r: Row) -> TrustRoot:
    return TrustRoot(
        tenant_id=r["tenant_id"],
        version=int(r["version"]),
        body=loads(r["body"]),
        signatures=loads(r["signatures"]),
        created_at=float(r["created_at"]),
    )


class SignatureRepo(ScopedRepo):
    """DSSE envelopes over template digests, one per (digest, keyid)."""

    async def add(
        self,
        digest: str,
        keyid: str,
        envelope: dict[str, Any],
        *,
        verified_at: float | None = None,
    ) -> Signature:
        """Store a signature; the template must be this tenant's (NotFound), once per key
        (Conflict)."""
        await self._db.execute(
            f"INSERT INTO template_signatures ({_SIG}) VALUES (?, ?, ?, ?, ?, ?)",
            self._tenant,
            digest,
            keyid,
            dumps(envelope),
            verified_at,
            self._clock(),
        )
        return await self.get(digest, keyid)

    async def get(self, digest: str, keyid: str) -> Signature:
        """One signature, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_SIG} FROM template_signatures "
            "WHERE tenant_id = ? AND digest = ? AND keyid = ?",
            self._tenant,
            digest,
            keyid,
        )
        return _sig(need(row, "signature"))

    async def list(self, digest: str) -> builtins.list[Signature]:
        """All signatures of a digest."""
        rows = await self._db.fetch(
            f"SELECT {_SIG} FROM template_signatures WHERE tenant_id = ? AND digest = ? "
            "ORDER BY keyid",
            self._tenant,
            digest,
        )
        return [_sig(r) for r in rows]

    async def mark_verified(self, digest: str, keyid: str, at: float) -> Signature:
        """Record when the signature was last verified."""
        n = await self._db.execute(
            "UPDATE template_signatures SET verified_at = ? "
            "WHERE tenant_id = ? AND digest = ? AND keyid = ?",
            at,
            self._tenant,
            digest,
            keyid,
        )
        if n == 0:
            raise NotFound("signature not found")
        return await self.get(digest, keyid)

    async def delete(self, digest: str, keyid: str) -> None:
        """Remove a signature; NotFound if absent."""
        n = await self._db.execute(
            "DELETE FROM template_signatures WHERE tenant_id = ? AND digest = ? AND keyid = ?",
            self._tenant,
            digest,
            keyid,
        )
        if n == 0:
            raise NotFound("signature not found")


class PublisherKeyRepo(ScopedRepo):
    """Publisher public keys of one tenant with validity windows."""

    async def add(
        self,
        keyid: str,
        public_key: str,
        *,
        valid_from: float | None = None,
        valid_until: float | None = None,
        algorithm: str = "ed25519",
    ) -> PublisherKey:
        """Register a key (Conflict if the keyid exists in this tenant)."""
        now = self._clock()
        await self._db.execute(
            f"INSERT INTO publisher_keys ({_PK}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
            self._tenant,
            keyid,
            public_key,
            algorithm,
            now if valid_from is None else valid_from,
            valid_until,
            now,
        )
        return await self.get(keyid)

    async def get(self, keyid: str) -> PublisherKey:
        """One key, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_PK} FROM publisher_keys WHERE tenant_id = ? AND keyid = ?",
            self._tenant,
            keyid,
        )
        return _pk(need(row, f"publisher key {keyid}"))

    async def list(self) -> builtins.list[PublisherKey]:
        """All keys of the tenant (revoked included)."""
        rows = await self._db.fetch(
            f"SELECT {_PK} FROM publisher_keys WHERE tenant_id = ? ORDER BY keyid", self._tenant
        )
        return [_pk(r) for r in rows]

    async def set_valid_until(self, keyid: str, valid_until: float | None) -> PublisherKey:
        """Move the end of the validity window (rotation)."""
        n = await self._db.execute(
            "UPDATE publisher_keys SET valid_until = ? WHERE tenant_id = ? AND keyid = ?",
            valid_until,
            self._tenant,
            keyid,
        )
        if n == 0:
            raise NotFound(f"publisher key {keyid} not found")
        return await self.get(keyid)

    async def revoke(self, keyid: str) -> PublisherKey:
        """Revoke now (idempotent)."""
        n = await self._db.execute(
            "UPDATE publisher_keys SET revoked_at = COALESCE(revoked_at, ?) "
            "WHERE tenant_id = ? AND keyid = ?",
            self._clock(),
            self._tenant,
            keyid,
        )
        if n == 0:
            raise NotFound(f"publisher key {keyid} not found")
        return await self.get(keyid)


class TrustRootRepo(ScopedRepo):
    """Versioned trust roots of one tenant (1, 2, … ; versions are immutable)."""

    async def add(
        self, version: int, body: dict[str, Any], signatures: builtins.list[Any]
    ) -> TrustRoot:
        """Store a new version (Conflict if it exists)."""
        await self._db.execute(
            f"INSERT INTO trust_roots ({_TR}) VALUES (?, ?, ?, ?, ?)",
            self._tenant,
            version,
            dumps(body),
            dumps(signatures),
            self._clock(),
        )
        return await self.get(version)

    async def get(self, version: int) -> TrustRoot:
        """One version, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_TR} FROM trust_roots WHERE tenant_id = ? AND version = ?",
            self._tenant,
            version,
        )
        return _tr(need(row, f"trust root v{version}"))

    async def latest(self) -> TrustRoot | None:
        """The highest version, or None before the first one."""
        row = await self._db.fetchrow(
            f"SELECT {_TR} FROM trust_roots WHERE tenant_id = ? ORDER BY version DESC LIMIT 1",
            self._tenant,
        )
        return None if row is None else _tr(row)

    async def list(self) -> builtins.list[TrustRoot]:
        """All versions, oldest first."""
        rows = await self._db.fetch(
            f"SELECT {_TR} FROM trust_roots WHERE tenant_id = ? ORDER BY version", self._tenant
        )
        return [_tr(r) for r in rows]
