"""Ed25519 keys and signatures: strict verification, exact batch verification, key formats.

Keys may be given as raw bytes (32-byte public key or seed), base64 text (standard or URL-safe,
padded or not) or PEM (SPKI ``PUBLIC KEY`` / PKCS#8 ``PRIVATE KEY``), as ``str`` or ``bytes``.
A malformed key raises ``Ed25519KeyError`` (a ``ValueError``) whose ``kind``, ``format`` and
``problem`` say which key, which encoding and what is wrong; a wrong signature only makes
``verify`` return ``False``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from agentgate._core import (
    BatchMode,
    Ed25519KeyError,
    KeyFormat,
    KeyKind,
    KeyProblem,
    ed25519_private_pem,
    ed25519_public_b64,
    ed25519_public_from_private,
    ed25519_public_pem,
    ed25519_public_raw,
    ed25519_sign,
    ed25519_verify,
    ed25519_verify_batch,
)
from agentgate._core import (
    Ed25519PrivateKey as PrivateKey,
)
from agentgate._core import (
    Ed25519PublicKey as PublicKey,
)

__all__ = [
    "BatchMode",
    "Ed25519KeyError",
    "KeyFormat",
    "KeyKind",
    "KeyPair",
    "KeyProblem",
    "PrivateKey",
    "PrivateKeyInput",
    "PublicKey",
    "PublicKeyInput",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_key_of",
    "sign",
    "verify",
    "verify_batch",
]

PublicKeyInput = bytes | str | PublicKey
PrivateKeyInput = bytes | str | PrivateKey


class KeyPair(NamedTuple):
    """A raw Ed25519 key pair: 32-byte seed and 32-byte public key, with export helpers."""

    private_key: bytes
    public_key: bytes

    def private_pem(self) -> str:
        """The private key as PEM PKCS#8."""
        return ed25519_private_pem(self.private_key)

    def public_pem(self) -> str:
        """The public key as PEM SPKI."""
        return ed25519_public_pem(self.public_key)

    def public_b64(self) -> str:
        """The public key as standard base64 of its 32 bytes."""
        return ed25519_public_b64(self.public_key)


def generate_keypair() -> KeyPair:
    """A fresh key pair from the operating system's RNG."""
    key = PrivateKey.generate()
    return KeyPair(key.seed, key.public_key().raw)


def load_public_key(key: PublicKeyInput) -> PublicKey:
    """Parses a public key once, for repeated `verify` calls."""
    return key if isinstance(key, PublicKey) else PublicKey(key)


def load_private_key(key: PrivateKeyInput) -> PrivateKey:
    """Parses a private key once, for repeated `sign` calls."""
    return key if isinstance(key, PrivateKey) else PrivateKey(key)


def public_key_of(private_key: PrivateKeyInput) -> bytes:
    """The raw 32-byte public key matching a private key."""
    return ed25519_public_from_private(private_key)


def raw_public_key(key: PublicKeyInput) -> bytes:
    """Any public key input normalised to its raw 32 bytes."""
    return ed25519_public_raw(key)


def sign(private_key: PrivateKeyInput, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `message` (deterministic)."""
    return ed25519_sign(private_key, message)


def verify(public_key: PublicKeyInput, message: bytes, signature: bytes) -> bool:
    """Strict verification: False for a bad signature, Ed25519KeyError for a malformed key."""
    return ed25519_verify(public_key, message, signature)


def verify_batch(
    items: Iterable[tuple[PublicKeyInput, bytes, bytes]],
    *,
    mode: BatchMode | str = BatchMode.Exact,
) -> list[bool]:
    """Verifies many (key, message, signature) items without holding the GIL.

    Exact (default) and ExactBatched give the same answer as `verify` for every item. Fast uses
    the batch equation (about 2x faster) and may additionally accept a signature whose R has a
    small-order component, which only the private key holder can make. `mode` may also be the
    mode's name ("exact", "exact-batched", "fast").
    """
    m = mode if isinstance(mode, BatchMode) else BatchMode(mode)
    return ed25519_verify_batch(list(items), m)
