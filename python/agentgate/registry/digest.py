"""Content digests: SHA-256 over the RFC 8785 (JCS) canonical JSON of a document.

Two documents that are equal as JSON values (same members in any order, same numbers however
written) have the same digest, so a template's digest names its content, not its formatting.
Canonicalisation is Trail of Bits' `rfc8785` (pure Python, UTF-16 key order, ECMAScript number
form); integers a double cannot hold exactly, NaN, infinities and lone surrogates are refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import rfc8785

from agentgate.errors import Invalid

__all__ = ["ALGORITHM", "canonical_json", "digest", "digest_hex", "parse_digest"]

ALGORITHM = "sha256"
_SAFE_INT = 2**53 - 1
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def canonical_json(document: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-compatible value (raises `Invalid`)."""
    try:
        try:
            return rfc8785.dumps(document)
        except rfc8785.IntegerDomainError:
            # JSON numbers are doubles: an integer that names a double is a fine number;
            # one that a double would silently round (2**53 + 1) is refused.
            return rfc8785.dumps(_exact_floats(document))
    except rfc8785.CanonicalizationError as e:
        raise Invalid(f"document cannot be canonicalised (RFC 8785): {e}") from None
    except UnicodeEncodeError:
        raise Invalid("document contains a lone UTF-16 surrogate in a string") from None
    except RecursionError:
        raise Invalid("document is nested too deeply to canonicalise") from None


def _exact_floats(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            try:
                as_float = float(value)
            except OverflowError:
                raise rfc8785.IntegerDomainError(value) from None
            # Accept the double's exact value, or the decimal JCS itself writes for that
            # double (so canonical output read back by a JSON parser canonicalises again).
            if int(as_float) != value and rfc8785.dumps(as_float) != str(value).encode():
                raise rfc8785.IntegerDomainError(value)
            return as_float
        return value
    if isinstance(value, list | tuple):
        return [_exact_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _exact_floats(v) for k, v in value.items()}
    return value


def digest_hex(document: Any) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of `document`."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def digest(document: Any) -> str:
    """`sha256:<hex>` content digest of `document`."""
    return f"{ALGORITHM}:{digest_hex(document)}"


def parse_digest(text: str, path: str = "$.digest") -> str:
    """The hex part of a `sha256:<64 lowercase hex>` digest; `Invalid` names `path` otherwise."""
    m = _DIGEST.match(text) if isinstance(text, str) else None
    if m is None:
        raise Invalid(f"digest must look like 'sha256:<64 lowercase hex>', got {text!r}", path)
    return m.group(1)
