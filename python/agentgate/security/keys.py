"""Key-encryption keys (KEKs): where the master key comes from and how data keys are wrapped.

The model is HashiCorp Vault's transit engine: a KEK is a *key ring* of numbered versions;
`wrap` always uses the latest version, `unwrap` accepts every version from
`min_decryption_version` up, `rotate` adds a version and `rewrap` moves a wrapped key to the
latest version without exposing it. Two providers implement the `Kek` protocol:

- `LocalKek`: the ring is derived from one master key (`AGENTGATE_MASTER_KEY`, or the file named
  by `AGENTGATE_MASTER_KEY_FILE`). Version n is HKDF-SHA256(root, info="agentgate kek v<n>"),
  so new versions need no new secret material and a key file never changes. A raw key
  (32+ bytes as hex/base64) goes through HKDF; anything else is a passphrase and goes through
  PBKDF2-HMAC-SHA256 with 600,000 iterations (OWASP 2023) and a per-installation random salt.
  `AGENTGATE_MASTER_KEY_PREVIOUS` keeps a replaced master key readable until everything is
  rewrapped under the new one.
- `security.vault.VaultTransitKek`: the same operations against Vault's transit HTTP API.

A wrapped key is a self-describing text token, so the store needs one column for it:
`agk1:<root fingerprint>:v<version>:<base64url(nonce | AES-256-GCM ciphertext)>` locally,
Vault's own `vault:v<version>:…` for Vault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentgate.errors import AgentgateError

__all__ = [
    "ENV_MASTER_KEY",
    "ENV_MASTER_KEY_FILE",
    "ENV_MASTER_KEY_PREVIOUS",
    "PBKDF2_ITERATIONS",
    "Kek",
    "KekError",
    "KekStatus",
    "LocalKek",
    "MasterKey",
    "master_key_from_env",
]

ENV_MASTER_KEY = "AGENTGATE_MASTER_KEY"
ENV_MASTER_KEY_FILE = "AGENTGATE_MASTER_KEY_FILE"
ENV_MASTER_KEY_PREVIOUS = "AGENTGATE_MASTER_KEY_PREVIOUS"
PBKDF2_ITERATIONS = 600_000
"""OWASP's 2023 minimum for PBKDF2-HMAC-SHA256."""

_TOKEN = re.compile(r"^agk1:([0-9a-f]{8}):v([1-9][0-9]{0,8}):([A-Za-z0-9_-]+)$")


class KekError(AgentgateError):
    """A key cannot be wrapped or unwrapped (wrong master key, version retired, tampering,
    KMS unreachable): the API answers 503. The message never contains key material."""

    status = 503
    title = "Key ring unavailable"


@dataclass(frozen=True, slots=True)
class KekStatus:
    """The key ring's public state."""

    provider: str
    latest_version: int
    min_decryption_version: int


class Kek(Protocol):
    """A key-encryption key ring (local or external KMS)."""

    @property
    def provider(self) -> str:
        """`local` or `vault`."""
        ...

    async def wrap(self, dek: bytes, aad: bytes) -> str:
        """Encrypt a data key under the latest version; returns the token to store."""
        ...

    async def unwrap(self, token: str, aad: bytes) -> bytes:
        """Decrypt a wrapped data key (KekError when it cannot)."""
        ...

    async def rewrap(self, token: str, aad: bytes) -> str:
        """The same data key wrapped under the latest version."""
        ...

    def version_of(self, token: str) -> int:
        """The key version a token was wrapped with."""
        ...

    async def rotate(self) -> KekStatus:
        """Add a key version; new wraps use it, old versions stay readable."""
        ...

    async def set_min_decryption_version(self, version: int) -> KekStatus:
        """Retire versions below `version` (after a rewrap moved everything off them)."""
        ...

    async def status(self) -> KekStatus:
        """Latest and minimum decryptable versions."""
        ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _pbkdf2(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    # cached: 600k iterations cost ~0.3 s and a process derives the same root many times
    return hashlib.pbkdf2_hmac("sha256", passphrase, salt, iterations, 32)


def _hkdf(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


@dataclass(frozen=True, slots=True)
class MasterKey:
    """Master key material: a raw key or a passphrase (never printed: repr hides it)."""

    material: bytes
    passphrase: bool

    def __repr__(self) -> str:
        return f"MasterKey(passphrase={self.passphrase}, material=<redacted>)"

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """Raw key: `hex:…`, `base64:…`, 64+ hex digits or base64 of 32 bytes; else passphrase."""
        t = text.strip()
        if not t:
            raise KekError("the master key is empty")
        for prefix, decode in (("hex:", bytes.fromhex), ("base64:", base64.b64decode)):
            if t.startswith(prefix):
                try:
                    raw = decode(t[len(prefix) :])
                except (ValueError, binascii.Error):
                    raise KekError(f"the master key after {prefix!r} does not decode") from None
                if len(raw) < 32:
                    raise KekError(f"a raw master key needs 32+ bytes, this one has {len(raw)}")
                return cls(raw, False)
        if re.fullmatch(r"[0-9a-fA-F]{64,}", t) and len(t) % 2 == 0:
            return cls(bytes.fromhex(t), False)
        if re.fullmatch(r"[A-Za-z0-9+/]{43}=?", t):
            # `openssl rand -base64 32`: exactly 32 bytes of base64 is a raw key
            return cls(base64.b64decode(t + "=" * (-len(t) % 4)), False)
        if len(t) < 12:
            raise KekError("a master passphrase needs at least 12 characters")
        return cls(t.encode(), True)

    def root(self, salt: bytes) -> bytes:
        """The 32-byte root of the key ring (PBKDF2 for a passphrase, HKDF for a raw key)."""
        if self.passphrase:
            return _pbkdf2(self.material, salt, PBKDF2_ITERATIONS)
        return _hkdf(self.material, b"agentgate master root")


def master_key_from_env(
    env: Mapping[str, str] | None = None,
) -> tuple[MasterKey | None, MasterKey | None]:
    """(current, previous) master keys from the environment; current None when unset."""
    e = os.environ if env is None else env
    current: MasterKey | None = None
    if e.get(ENV_MASTER_KEY):
        current = MasterKey.parse(e[ENV_MASTER_KEY])
    elif e.get(ENV_MASTER_KEY_FILE):
        path = Path(e[ENV_MASTER_KEY_FILE])
        try:
            current = MasterKey.parse(path.read_text())
        except OSError as err:
            raise KekError(f"{ENV_MASTER_KEY_FILE}: cannot read {path}: {err.strerror}") from None
    previous = (
        MasterKey.parse(e[ENV_MASTER_KEY_PREVIOUS]) if e.get(ENV_MASTER_KEY_PREVIOUS) else None
    )
    return current, previous


def _fingerprint(root: bytes) -> str:
    return hmac.new(root, b"agentgate kek fingerprint", hashlib.sha256).hexdigest()[:8]


class LocalKek:
    """A key ring derived from the master key; versions are HKDF outputs of its root."""

    provider = "local"

    def __init__(
        self,
        master: MasterKey,
        salt: bytes,
        *,
        latest_version: int = 1,
        min_decryption_version: int = 1,
        previous: MasterKey | None = None,
    ) -> None:
        self._root = master.root(salt)
        self.fingerprint = _fingerprint(self._root)
        self._roots = {self.fingerprint: self._root}
        if previous is not None:
            old = previous.root(salt)
            self._roots.setdefault(_fingerprint(old), old)
        self.latest_version = latest_version
        self.min_decryption_version = min_decryption_version
        self._keys: dict[tuple[str, int], AESGCM] = {}

    def __repr__(self) -> str:
        return f"LocalKek(fingerprint={self.fingerprint}, latest={self.latest_version})"

    def _aead(self, fp: str, version: int) -> AESGCM:
        k = self._keys.get((fp, version))
        if k is None:
            k = AESGCM(_hkdf(self._roots[fp], f"agentgate kek v{version}".encode()))
            self._keys[(fp, version)] = k
        return k

    def wrap_sync(self, dek: bytes, aad: bytes) -> str:
        """`wrap` without the event loop (CPU only)."""
        nonce = os.urandom(12)
        ct = self._aead(self.fingerprint, self.latest_version).encrypt(nonce, dek, aad)
        return f"agk1:{self.fingerprint}:v{self.latest_version}:{_b64(nonce + ct)}"

    def unwrap_sync(self, token: str, aad: bytes) -> bytes:
        """`unwrap` without the event loop (CPU only)."""
        m = _TOKEN.match(token)
        if m is None:
            raise KekError("not a wrapped key of the local key ring")
        fp, version, body = m.group(1), int(m.group(2)), m.group(3)
        if fp not in self._roots:
            raise KekError(
                f"wrapped under another master key (fingerprint {fp}; this process has "
                f"{self.fingerprint}): set {ENV_MASTER_KEY_PREVIOUS} to read it"
            )
        if fp == self.fingerprint and version < self.min_decryption_version:
            raise KekError(
                f"key version {version} is retired (min_decryption_version "
                f"{self.min_decryption_version})"
            )
        raw = _unb64(body)
        try:
            return self._aead(fp, version).decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            raise KekError("wrapped key failed authentication (tampered or moved)") from None

    async def wrap(self, dek: bytes, aad: bytes) -> str:
        """Encrypt a data key under the latest version."""
        return self.wrap_sync(dek, aad)

    async def unwrap(self, token: str, aad: bytes) -> bytes:
        """Decrypt a wrapped data key."""
        return self.unwrap_sync(token, aad)

    async def rewrap(self, token: str, aad: bytes) -> str:
        """The same data key under the latest version of the current master key."""
        return self.wrap_sync(self.unwrap_sync(token, aad), aad)

    def version_of(self, token: str) -> int:
        """The version in a token (0 when it belongs to a previous master key)."""
        m = _TOKEN.match(token)
        if m is None:
            raise KekError("not a wrapped key of the local key ring")
        return int(m.group(2)) if m.group(1) == self.fingerprint else 0

    async def rotate(self) -> KekStatus:
        """Add a version (derived, no new secret material)."""
        self.latest_version += 1
        return await self.status()

    async def set_min_decryption_version(self, version: int) -> KekStatus:
        """Refuse versions below `version` from now on."""
        if not 1 <= version <= self.latest_version:
            raise KekError(f"min_decryption_version must be in 1..{self.latest_version}")
        self.min_decryption_version = version
        return await self.status()

    async def status(self) -> KekStatus:
        """Latest and minimum decryptable versions."""
        return KekStatus("local", self.latest_version, self.min_decryption_version)
