"""RFC 9421 HTTP Message Signatures (Ed25519) for agents: sign outgoing requests, verify them.

Signing a request made with aiohttp::

    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    headers |= sign_request("POST", url, headers, body, key=private_pem, keyid="agent-7")
    async with session.post(url, data=body, headers=headers) as resp: ...

or with httpx::

    headers |= sign_request("POST", url, headers, body, key=seed, keyid="agent-7")
    httpx.post(url, content=body, headers=headers)

Pass the URL exactly as it goes on the wire (already percent-encoded): the signature covers the
path and query as given. A rejected request raises `SignatureError` (the core's
`HttpSignatureError`, a ValueError) whose `kind` says why and `code` is the stable problem code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from agentgate._core import (
    ContentDigestCheck,
    ContentDigestHasher,
    DigestAlg,
    HttpSigErrorKind,
    HttpSigVerifier,
    ManualClock,
    VerifiedSignature,
    http_content_digest,
    http_sign,
    http_signature_base,
    http_verify_body_digest,
    http_verify_content_digest,
)
from agentgate._core import HttpSignatureError as SignatureError
from agentgate.crypto import PrivateKeyInput, PublicKeyInput

__all__ = [
    "ContentDigestCheck",
    "ContentDigestHasher",
    "DigestAlg",
    "HttpSigErrorKind",
    "HttpSigVerifier",
    "SignatureError",
    "VerifiedSignature",
    "content_digest",
    "sign_request",
    "signature_base",
    "verify_content_digest",
    "verify_request",
]

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


def content_digest(body: bytes, alg: DigestAlg | str = DigestAlg.Sha256) -> str:
    """RFC 9530 `Content-Digest` value of `body` (`sha-256=:base64:` or sha-512)."""
    return http_content_digest(body, alg if isinstance(alg, DigestAlg) else DigestAlg(alg))


def verify_content_digest(header: str, body: bytes) -> bool:
    """True if `body` matches a `Content-Digest` header; SignatureError if it is malformed."""
    return http_verify_content_digest(header, body)


def _pairs(headers: HeaderInput) -> list[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), str(v)) for k, v in items]


def _split(url: str) -> tuple[str, str, str, str | None]:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"url must be absolute (scheme://host/path), got {url!r}")
    authority = parts.netloc.rpartition("@")[2]
    query = parts.query if parts.query or url.endswith("?") else None
    return parts.scheme, authority, parts.path or "/", query


def sign_request(
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes | None,
    key: PrivateKeyInput,
    keyid: str,
    label: str = "sig1",
    components: Sequence[str] | None = None,
    created: int | None = None,
    expires_in: int | None = None,
    nonce: str | None = None,
    alg: bool = False,
) -> dict[str, str]:
    """Headers to add: `Signature-Input`, `Signature`, and `Content-Digest` with a body.

    Default components: `@method`, `@authority`, `@path`, `@query`, plus `content-digest` when
    there is a body and `content-type` when that header is present. `created` defaults to now;
    `expires_in` (seconds) adds `expires`; `alg=True` adds `alg="ed25519"`.
    """
    pairs = _pairs(headers)
    added: dict[str, str] = {}
    if body is not None and not any(k.lower() == "content-digest" for k, _ in pairs):
        added["Content-Digest"] = http_content_digest(body)
        pairs.append(("Content-Digest", added["Content-Digest"]))
    if components is None:
        comps = ["@method", "@authority", "@path", "@query"]
        if body is not None:
            comps.append("content-digest")
        if any(k.lower() == "content-type" for k, _ in pairs):
            comps.append("content-type")
    else:
        comps = list(components)
    scheme, authority, path, query = _split(url)
    now = int(time.time()) if created is None else created
    signed = http_sign(
        method.upper(),
        scheme,
        authority,
        path,
        query,
        pairs,
        comps,
        key,
        label,
        keyid=keyid,
        created=now,
        expires=None if expires_in is None else now + expires_in,
        nonce=nonce,
        alg="ed25519" if alg else None,
    )
    added["Signature-Input"] = signed.signature_input
    added["Signature"] = signed.signature
    return added


def signature_base(
    method: str, url: str, headers: HeaderInput, signature_input: str, label: str | None = None
) -> str:
    """The RFC 9421 signature base a `Signature-Input` member describes (for debugging)."""
    scheme, authority, path, query = _split(url)
    return http_signature_base(
        method, scheme, authority, path, query, _pairs(headers), signature_input, label
    )


def verify_request(
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes | None,
    keys: Mapping[str, PublicKeyInput],
    *,
    label: str | None = None,
    verifier: HttpSigVerifier | None = None,
    max_age: int | None = 300,
    clock: ManualClock | None = None,
    now: float | None = None,
) -> VerifiedSignature:
    """Verifies a signed request (and its body against `Content-Digest`); raises SignatureError.

    Pass a long-lived `verifier` to get replay detection across calls (its nonce cache) and to
    avoid re-parsing keys; otherwise a one-off verifier is built from `keys` and `max_age`.
    """
    pairs = _pairs(headers)
    scheme, authority, path, query = _split(url)
    has_body = bool(body)
    if verifier is None:
        verifier = HttpSigVerifier(
            dict(keys), max_age=max_age, clock=clock, now=now, nonce_capacity=None
        )
    verified = verifier.verify(
        method, scheme, authority, path, query, pairs, has_body=has_body, label=label
    )
    if has_body and body is not None:
        http_verify_body_digest(pairs, body)
    return verified
