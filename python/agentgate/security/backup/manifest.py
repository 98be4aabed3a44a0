"""Backup manifests: what one backup is, written last, authenticated, checksummed.

The manifest lists the snapshot's chunks in order (keyed id, plaintext size, SHA-256 of the
stored object). Its body is canonical JSON; `body_sha256` is the SHA-256 of that body and `mac`
an HMAC-SHA256 under the repository's key, so neither a damaged nor a forged manifest is taken
for a backup. A backup exists exactly when its manifest does.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["ChunkRef", "Manifest", "ManifestError"]

FORMAT = 1


class ManifestError(Exception):
    """A manifest that is damaged, forged or of an unknown format."""


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of the snapshot: keyed id, plaintext size, SHA-256 of the stored object."""

    id: str
    size: int
    stored_sha256: str


@dataclass(slots=True)
class Manifest:
    """One backup."""

    id: str
    created_at: float
    kind: str  # "full" | "incremental"
    dialect: str  # "sqlite" | "postgresql"
    file: str  # what the snapshot restores as (agentgate.db, agentgate.pgdump)
    size: int
    sha256: str  # of the whole snapshot
    chunks: list[ChunkRef] = field(default_factory=list)
    stored_new: int = 0  # bytes this backup uploaded (the rest was already there)
    new_chunks: int = 0
    audit_head: tuple[int, str] | None = None
    compression_level: int = 3

    def body(self) -> dict[str, Any]:
        """The manifest as plain data (without the checksums)."""
        return {
            "format": FORMAT,
            "id": self.id,
            "created_at": self.created_at,
            "kind": self.kind,
            "dialect": self.dialect,
            "file": self.file,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": [[c.id, c.size, c.stored_sha256] for c in self.chunks],
            "stored_new": self.stored_new,
            "new_chunks": self.new_chunks,
            "audit_head": list(self.audit_head) if self.audit_head else None,
            "compression_level": self.compression_level,
        }

    def summary(self, destinations: list[str]) -> dict[str, Any]:
        """What the API and CLI show of a backup (`BackupOut`)."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "kind": self.kind,
            "dialect": self.dialect,
            "size": self.size,
            "stored_new": self.stored_new,
            "chunks": len(self.chunks),
            "destinations": destinations,
        }

    def encode(self, mac_key: bytes) -> bytes:
        """The file's bytes: body, its SHA-256 and MAC."""
        body = orjson.dumps(self.body(), option=orjson.OPT_SORT_KEYS)
        return orjson.dumps(
            {
                "body": orjson.Fragment(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "mac": hmac.new(mac_key, body, hashlib.sha256).hexdigest(),
            }
        )

    @classmethod
    def decode(cls, data: bytes, mac_key: bytes) -> Manifest:
        """Parse and authenticate a manifest file (ManifestError naming the problem)."""
        try:
            outer = orjson.loads(data)
            b = outer["body"]
            body = orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ManifestError("not a manifest (damaged?)") from None
        if hashlib.sha256(body).hexdigest() != outer.get("body_sha256"):
            raise ManifestError("manifest checksum mismatch (damaged)")
        want = hmac.new(mac_key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, str(outer.get("mac", ""))):
            raise ManifestError("manifest authentication failed (forged, or another key)")
        if b.get("format") != FORMAT:
            raise ManifestError(f"unknown manifest format {b.get('format')!r}")
        head = b.get("audit_head")
        return cls(
            id=b["id"],
            created_at=float(b["created_at"]),
            kind=b["kind"],
            dialect=b["dialect"],
            file=b["file"],
            size=int(b["size"]),
            sha256=b["sha256"],
            chunks=[ChunkRef(c[0], int(c[1]), c[2]) for c in b["chunks"]],
            stored_new=int(b["stored_new"]),
            new_chunks=int(b["new_chunks"]),
            audit_head=(int(head[0]), str(head[1])) if head else None,
            compression_level=int(b.get("compression_level", 3)),
        )
