"""Envelope encryption: every value gets its own AES-256-GCM data key, wrapped by the KEK.

A fresh random data key per sealed value means each key encrypts exactly one message, so a
(key, nonce) pair can never repeat. The associated data names where the ciphertext belongs
(tenant, secret name, version …, built with `aad`): a ciphertext copied into another row fails
to decrypt instead of answering with the other row's value. The wrapped data key is bound to
the same associated data.

`seal_text` / `open_text` pack everything into one string for a single column (webhook URLs,
SMTP passwords and other sensitive fields of other modules).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentgate.security.keys import Kek, KekError

__all__ = ["Sealed", "aad", "open_sealed", "open_text", "seal", "seal_text"]

_TEXT_PREFIX = "agenc1."


def aad(*parts: str) -> bytes:
    """Unambiguous associated data from parts (length-prefixed, so `a|b` ≠ `a` + `|b`)."""
    out = bytearray(b"agentgate/v1")
    for p in parts:
        b = p.encode()
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value: the wrapped data key, its KEK version, nonce and ciphertext."""

    wrapped_key: str
    kek_version: int
    nonce: bytes
    ciphertext: bytes


async def seal(kek: Kek, plaintext: bytes, ad: bytes) -> Sealed:
    """Encrypt under a fresh data key and wrap that key with the KEK."""
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    ct = AESGCM(dek).encrypt(nonce, plaintext, ad)
    wrapped = await kek.wrap(dek, ad)
    return Sealed(wrapped, kek.version_of(wrapped), nonce, ct)


async def open_sealed(kek: Kek, sealed: Sealed, ad: bytes) -> bytes:
    """Decrypt; KekError when the key or the associated data does not match."""
    dek = await kek.unwrap(sealed.wrapped_key, ad)
    try:
        return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, ad)
    except InvalidTag:
        raise KekError("ciphertext failed authentication (tampered or moved)") from None


def _b(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ub(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def seal_text(kek: Kek, value: str, context: str) -> str:
    """One-column ciphertext of `value`; `context` (e.g. `alerts.webhook:<id>`) is its AAD."""
    s = await seal(kek, value.encode(), aad("field", context))
    return f"{_TEXT_PREFIX}{s.wrapped_key}.{_b(s.nonce)}.{_b(s.ciphertext)}"


async def open_text(kek: Kek, text: str, context: str) -> str:
    """The value sealed by `seal_text` under the same `context`."""
    if not text.startswith(_TEXT_PREFIX):
        raise KekError("not a sealed field")
    wrapped, _, rest = text[len(_TEXT_PREFIX) :].rpartition(".")
    wrapped, _, nonce = wrapped.rpartition(".")
    s = Sealed(wrapped, 0, _ub(nonce), _ub(rest))
    return (await open_sealed(kek, s, aad("field", context))).decode()
