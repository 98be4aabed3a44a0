"""DSSE envelopes over in-toto Statements naming a template digest, signed with Ed25519.

Signing: the in-toto Statement v1 (`subject: [{name: "<name>@<version>", digest: {sha256}}]`,
predicate: publisher, time, parent) is serialised as canonical JSON, wrapped with the DSSE
pre-authentication encoding (PAE) and signed through `agentgate.crypto` (the Rust core).

Verification checks, in order: the envelope parses; some signature is by a key the tenant
trusts *at the signing time* and verifies over the PAE; the statement's subject names the
template and carries the digest recomputed from the template. Each failure is its own
`SignatureError` subclass, so the API and policy can tell "unsigned" from "tampered".
Times are epoch seconds (float); the predicate carries the time as RFC 3339 UTC as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import orjson

from agentgate import crypto
from agentgate.errors import Invalid
from agentgate.registry.digest import canonical_json, parse_digest

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "BadSignature",
    "DigestMismatch",
    "ExpiredKey",
    "KeyResolver",
    "MalformedEnvelope",
    "SignatureError",
    "StaleStatement",
    "StaticKeys",
    "TrustedKey",
    "UntrustedKey",
    "VerifiedStatement",
    "key_id",
    "pae",
    "sign_envelope",
    "sign_template",
    "verify_envelope",
    "verify_template",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://agentgate.dev/template/v1"
DEFAULT_MAX_SKEW = 300.0


class SignatureError(Invalid):
    """A signature or envelope was refused; `reason` is a stable machine-readable code."""

    reason: ClassVar[str] = "signature"

    def __init__(self, detail: str, path: str = "$.signature") -> None:
        super().__init__(detail, path)

    def problem(self) -> dict[str, Any]:
        """Problem members plus the refusal reason."""
        return {**super().problem(), "reason": self.reason}


class MalformedEnvelope(SignatureError):
    """The envelope or its statement is not the expected JSON shape."""

    reason = "malformed-envelope"


class UntrustedKey(SignatureError):
    """No signature is by a key the tenant trusts."""

    reason = "untrusted-key"


class ExpiredKey(SignatureError):
    """The key is known but was not valid (expired, revoked or not yet valid) at that time."""

    reason = "expired-key"


class BadSignature(SignatureError):
    """A trusted key's signature does not verify over the envelope."""

    reason = "bad-signature"


class StaleStatement(SignatureError):
    """The statement's own signing time is too far from the time it is verified for."""

    reason = "stale-statement"


class DigestMismatch(SignatureError):
    """The statement names another template or digest than the one being verified."""

    reason = "digest-mismatch"


def key_id(public_key: crypto.PublicKeyInput) -> str:
    """The key id of an Ed25519 public key: hex SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(crypto.raw_public_key(public_key)).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: `DSSEv1 <len> <type> <len> <payload>`."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key trusted from `valid_from` until `valid_until` (None: no end), epoch secs."""

    keyid: str
    public_key: bytes
    valid_from: float = 0.0
    valid_until: float | None = None

    def valid_at(self, t: float) -> bool:
        """True when `t` lies in [valid_from, valid_until)."""
        return self.valid_from <= t and (self.valid_until is None or t < self.valid_until)


class KeyResolver(Protocol):
    """Finds the key a tenant trusted under `keyid` at time `at`."""

    def resolve(self, keyid: str, at: float) -> TrustedKey:
        """The key; raises `UntrustedKey` (unknown id) or `ExpiredKey` (not valid at `at`)."""
        ...


class StaticKeys:
    """A fixed set of trusted keys (e.g. the tenant's registered publisher keys)."""

    def __init__(self, keys: Iterable[TrustedKey]) -> None:
        self._keys: dict[str, TrustedKey] = {k.keyid: k for k in keys}

    def resolve(self, keyid: str, at: float) -> TrustedKey:
        """The key valid at `at`, or `UntrustedKey` / `ExpiredKey`."""
        key = self._keys.get(keyid)
        if key is None:
            raise UntrustedKey(f"key {keyid!r} is not trusted")
        if not key.valid_at(at):
            raise ExpiredKey(f"key {keyid!r} was not valid at {_rfc3339(at)}")
        return key


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedEnvelope(f"{what} must be a base64 string")
    try:
        # DSSE allows standard or URL-safe alphabets, with or without padding.
        norm = text.replace("-", "+").replace("_", "/")
        return base64.b64decode(norm + "=" * (-len(norm) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope(f"{what} is not valid base64") from None


def sign_envelope(
    payload: bytes,
    private_key: crypto.PrivateKeyInput,
    *,
    payload_type: str = PAYLOAD_TYPE,
    keyid: str | None = None,
) -> dict[str, Any]:
    """A DSSE envelope with one Ed25519 signature over PAE(payload_type, payload)."""
    sig = crypto.sign(private_key, pae(payload_type, payload))
    kid = keyid if keyid is not None else key_id(crypto.public_key_of(private_key))
    return {
        "payload": _b64(payload),
        "payloadType": payload_type,
        "signatures": [{"keyid": kid, "sig": _b64(sig)}],
    }


def _parse_envelope(envelope: object) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    if isinstance(envelope, str | bytes):
        try:
            envelope = orjson.loads(envelope)
        except orjson.JSONDecodeError:
            raise MalformedEnvelope("envelope is not JSON") from None
    if not isinstance(envelope, Mapping):
        raise MalformedEnvelope("envelope must be a JSON object")
    ptype = envelope.get("payloadType")
    if not isinstance(ptype, str):
        raise MalformedEnvelope("envelope.payloadType must be a string")
    payload = _unb64(envelope.get("payload"), "envelope.payload")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise MalformedEnvelope("envelope.signatures must be a non-empty list")
    out: list[tuple[str, bytes]] = []
    for i, s in enumerate(sigs):
        if not isinstance(s, Mapping) or not isinstance(s.get("keyid", ""), str):
            raise MalformedEnvelope(f"envelope.signatures[{i}] must be {{keyid, sig}}")
        out.append((s.get("keyid", ""), _unb64(s.get("sig"), f"envelope.signatures[{i}].sig")))
    return ptype, payload, out


def verify_envelope(
    envelope: object,
    keys: KeyResolver,
    at: float,
    *,
    payload_type: str = PAYLOAD_TYPE,
    threshold: int = 1,
) -> tuple[bytes, list[str]]:
    """Checks `threshold` distinct trusted keys signed the envelope; returns (payload, keyids).

    Raises the most telling `SignatureError` when too few signatures pass: a bad signature by
    a trusted key beats an expired key, which beats an unknown one.
    """
    ptype, payload, sigs = _parse_envelope(envelope)
    if ptype != payload_type:
        raise MalformedEnvelope(f"payloadType must be {payload_type!r}, got {ptype!r}")
    message = pae(ptype, payload)
    good: list[str] = []
    worst: SignatureError | None = None
    rank = {UntrustedKey: 0, ExpiredKey: 1, BadSignature: 2}
    for kid, sig in sigs:
        if kid in good:
            continue
        try:
            key = keys.resolve(kid, at)
            if not crypto.verify(key.public_key, message, sig):
                raise BadSignature(f"signature by key {kid!r} does not verify")
        except (UntrustedKey, ExpiredKey, BadSignature) as e:
            if worst is None or rank[type(e)] > rank[type(worst)]:
                worst = e
            continue
        except ValueError:
            worst = BadSignature(f"key {kid!r} is not a valid Ed25519 public key")
            continue
        good.append(kid)
    if len(good) >= threshold:
        return payload, good
    if worst is None or good:
        raise UntrustedKey(f"{len(good)} of {threshold} required trusted signatures")
    raise worst


@dataclass(frozen=True, slots=True)
class VerifiedStatement:
    """What a verified template envelope says: who signed, when, and the lineage it claims."""

    keyids: tuple[str, ...]
    subject: str
    digest: str
    publisher: str | None
    signed_at: float
    parent: str | None
    statement: Mapping[str, Any]


def statement_for(
    ref: str, digest: str, *, publisher: str | None, signed_at: float, parent: str | None
) -> dict[str, Any]:
    """The in-toto Statement v1 naming one template `ref` (`name@version`) and its digest."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": ref, "digest": {"sha256": parse_digest(digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "publisher": publisher,
            "signed_at": signed_at,
            "time": _rfc3339(signed_at),
            "parent": parent,
        },
    }


def sign_template(
    ref: str,
    digest: str,
    private_key: crypto.PrivateKeyInput,
    *,
    signed_at: float,
    publisher: str | None = None,
    parent: str | None = None,
    keyid: str | None = None,
) -> dict[str, Any]:
    """A DSSE envelope over the in-toto statement for template `ref` with `digest`."""
    if parent is not None:
        parse_digest(parent, "$.parent")
    stmt = statement_for(ref, digest, publisher=publisher, signed_at=signed_at, parent=parent)
    return sign_envelope(canonical_json(stmt), private_key, keyid=keyid)


def _parse_statement(payload: bytes) -> tuple[Mapping[str, Any], str, str, Mapping[str, Any]]:
    try:
        stmt = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedEnvelope("payload is not a JSON in-toto statement") from None
    if not isinstance(stmt, Mapping) or stmt.get("_type") != STATEMENT_TYPE:
        raise MalformedEnvelope(f"payload must be an in-toto statement ({STATEMENT_TYPE})")
    if stmt.get("predicateType") != PREDICATE_TYPE:
        raise MalformedEnvelope(f"predicateType must be {PREDICATE_TYPE!r}")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise MalformedEnvelope("statement must name exactly one subject")
    name = subjects[0].get("name")
    dg = subjects[0].get("digest")
    if not isinstance(name, str) or not isinstance(dg, Mapping):
        raise MalformedEnvelope("subject must have a name and a digest object")
    hexd = dg.get("sha256")
    if not isinstance(hexd, str):
        raise MalformedEnvelope("subject digest must have a sha256 member")
    pred = stmt.get("predicate")
    if not isinstance(pred, Mapping):
        raise MalformedEnvelope("statement predicate must be an object")
    return stmt, name, hexd, pred


def verify_template(
    envelope: object,
    *,
    ref: str,
    digest: str,
    keys: KeyResolver,
    at: float,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> VerifiedStatement:
    """Verifies a template envelope against the template's recomputed `digest` and `ref`.

    The signing key must be trusted at `at` (the publish time the registry recorded, or now
    for a fresh publish); the statement's own `signed_at` must lie within `max_skew` of `at`,
    so a revoked key cannot backdate new signatures.
    """
    payload, good = verify_envelope(envelope, keys, at)
    stmt, name, hexd, pred = _parse_statement(payload)
    expected = parse_digest(digest)
    if name != ref:
        raise DigestMismatch(f"statement is for {name!r}, not {ref!r}")
    if hexd != expected:
        raise DigestMismatch(f"statement digest sha256:{hexd} != template digest {digest}")
    signed_at = pred.get("signed_at")
    if isinstance(signed_at, bool) or not isinstance(signed_at, int | float):
        raise MalformedEnvelope("predicate.signed_at must be epoch seconds")
    if abs(float(signed_at) - at) > max_skew:
        raise StaleStatement(
            f"statement signed at {_rfc3339(float(signed_at))}, more than {max_skew:g}s"
            f" from {_rfc3339(at)}"
        )
    publisher = pred.get("publisher")
    parent = pred.get("parent")
    if parent is not None:
        if not isinstance(parent, str):
            raise MalformedEnvelope("predicate.parent must be a digest or null")
        parse_digest(parent, "$.signature.predicate.parent")
    return VerifiedStatement(
        keyids=tuple(good),
        subject=name,
        digest=digest,
        publisher=publisher if isinstance(publisher, str) else None,
        signed_at=float(signed_at),
        parent=parent,
        statement=stmt,
    )
