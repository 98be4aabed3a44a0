"""A backup repository on one destination: its key, chunk objects and manifests.

`config.json` holds the repository id and its 32-byte key wrapped by the KEK (plus the local
key ring's salt, so a restore into an empty directory needs only the master key). From that key
HKDF derives the chunk encryption key, the chunk-id key and the manifest MAC key.

A chunk is stored as `AGB1 | nonce(12) | AES-256-GCM(zstd(chunk), aad=chunk id)` (synthetic
nonce, see `encrypt_packed`) under
`chunks/<id[:2]>/<id>`, where the id is HMAC-SHA256(id key, chunk): equal chunks get equal ids
(deduplication across backups) without revealing plain SHA-256 hashes of the data. The manifest
records the SHA-256 of each stored object too, so `verify` can name a damaged chunk before
decrypting anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from dataclasses import dataclass

import orjson
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentgate.security.backup.destinations import Destination
from agentgate.security.backup.manifest import Manifest
from agentgate.security.envelope import aad
from agentgate.security.keys import Kek

__all__ = ["ChunkError", "RepoConfig", "Repository", "open_repository", "read_config"]

_MAGIC = b"AGB1"
_ZSTD_MAX = 64 * 1024 * 1024


class ChunkError(Exception):
    """A chunk is missing, damaged or fails authentication (the message names it)."""


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The repository's `config.json`."""

    id: str
    wrapped_key: str
    kek_provider: str
    salt: str | None
    created_at: float

    def encode(self) -> bytes:
        """As JSON."""
        return orjson.dumps(
            {
                "format": 1,
                "id": self.id,
                "wrapped_key": self.wrapped_key,
                "kek_provider": self.kek_provider,
                "salt": self.salt,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RepoConfig:
        """From JSON."""
        d = orjson.loads(data)
        return cls(d["id"], d["wrapped_key"], d["kek_provider"], d.get("salt"), d["created_at"])


def _sub(key: bytes, info: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, None, f"agentgate backup {info}".encode()).derive(key)


def read_config(dest: Destination) -> RepoConfig | None:
    """The destination's repository config, None when it has none yet."""
    try:
        return RepoConfig.decode(dest.get("config.json"))
    except KeyError:
        return None


async def open_repository(
    dest: Destination, kek: Kek, *, salt: bytes | None = None, create: bool = True
) -> Repository:
    """Open the repository on `dest`, creating it (with a fresh key) when allowed."""
    cfg = read_config(dest)
    if cfg is None:
        if not create:
            raise KeyError(f"no backup repository on {dest.name}")
        rid = uuid.uuid4().hex
        key = os.urandom(32)
        cfg = RepoConfig(
            rid,
            await kek.wrap(key, aad("backup-repo", rid)),
            kek.provider,
            base64.b64encode(salt).decode() if salt else None,
            time.time(),
        )
        dest.put("config.json", cfg.encode())
    else:
        key = await kek.unwrap(cfg.wrapped_key, aad("backup-repo", cfg.id))
    return Repository(dest, cfg, key)


class Repository:
    """Chunk and manifest I/O on one destination (blocking; run in a worker thread)."""

    def __init__(self, dest: Destination, cfg: RepoConfig, key: bytes) -> None:
        self.dest = dest
        self.cfg = cfg
        self._aead = AESGCM(_sub(key, "chunk encryption"))
        self._id_key = _sub(key, "chunk id")
        self._nonce_key = _sub(key, "chunk nonce")
        self.mac_key = _sub(key, "manifest mac")

    def chunk_id(self, data: bytes) -> str:
        """The keyed id of a chunk."""
        return hmac.new(self._id_key, data, hashlib.sha256).hexdigest()

    @staticmethod
    def chunk_key(cid: str) -> str:
        """Where a chunk is stored."""
        return f"chunks/{cid[:2]}/{cid}"

    def encrypt_packed(self, cid: str, packed: bytes) -> bytes:
        """Encrypt an already compressed chunk.

        The nonce is a keyed hash of the compressed bytes (synthetic IV, as in AES-GCM-SIV):
        different contents never share a nonce, and uploading a chunk again (a full backup
        healing a damaged copy) writes identical bytes, so older manifests' checksums stay true.
        """
        nonce = hmac.new(self._nonce_key, packed, hashlib.sha256).digest()[:12]
        return _MAGIC + nonce + self._aead.encrypt(nonce, packed, cid.encode())

    def decode_chunk(self, cid: str, blob: bytes, dctx: zstandard.ZstdDecompressor) -> bytes:
        """Decrypt, decompress and check a stored chunk against its id."""
        if blob[:4] != _MAGIC:
            raise ChunkError(f"chunk {cid}: not a chunk object")
        try:
            packed = self._aead.decrypt(blob[4:16], blob[16:], cid.encode())
        except InvalidTag:
            raise ChunkError(f"chunk {cid}: authentication failed (damaged)") from None
        data = dctx.decompress(packed, max_output_size=_ZSTD_MAX)
        if not hmac.compare_digest(self.chunk_id(data), cid):
            raise ChunkError(f"chunk {cid}: content does not match its id")
        return data

    def manifests(self) -> list[Manifest]:
        """Every complete backup on this destination, oldest first (damaged ones skipped)."""
        out = []
        for key, _ in self.dest.list("manifests/"):
            if not key.endswith(".json"):
                continue
            try:
                out.append(Manifest.decode(self.dest.get(key), self.mac_key))
            except Exception:  # a damaged manifest is reported by verify, not listed
                continue
        return sorted(out, key=lambda m: (m.created_at, m.id))

    def manifest(self, backup_id: str) -> Manifest:
        """One manifest, authenticated (KeyError when absent)."""
        return Manifest.decode(self.dest.get(f"manifests/{backup_id}.json"), self.mac_key)

    def write_manifest(self, m: Manifest) -> None:
        """Write the manifest (last, atomically): from now on the backup exists."""
        self.dest.put(f"manifests/{m.id}.json", m.encode(self.mac_key))
