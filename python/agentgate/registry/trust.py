"""Per-tenant versioned trust roots (a minimal TUF-style root of publisher keys).

A root is `{version, issued_at, threshold, keys: {keyid: {public_key, valid_from,
valid_until}}}`. Version N+1 is accepted only when `threshold` keys of version N sign it (it is
authorised) and `threshold` of its own keys sign it too (its new keys are really held). Each
signature is Ed25519 over the DSSE PAE of the root's canonical JSON, so a root signature can
never be replayed as a template signature (different payload type).

Rotation is a new version that adds a key and later one that drops the old one. Revocation is a
new version without the key: the history answers "which key was trusted at time t" from the
root in force at t, so signatures made before the revocation stay valid and later ones do not.
Chains are verified from a pinned initial root. Times are epoch seconds (float).
"""

from __future__ import annotations

import base64
import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentgate import crypto
from agentgate.errors import Invalid
from agentgate.registry.digest import canonical_json
from agentgate.registry.signing import (
    ExpiredKey,
    SignatureError,
    StaticKeys,
    TrustedKey,
    UntrustedKey,
    key_id,
    pae,
    verify_envelope,
)

__all__ = [
    "ROOT_PAYLOAD_TYPE",
    "RootVersionError",
    "SignedRoot",
    "TrustHistory",
    "TrustRoot",
    "sign_root",
]

ROOT_PAYLOAD_TYPE = "application/vnd.agentgate.trust-root+json"


class RootVersionError(Invalid):
    """A root does not follow its predecessor (version gap, time going back)."""


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """One version of a tenant's trust root."""

    version: int
    issued_at: float
    threshold: int
    keys: Mapping[str, TrustedKey]

    @classmethod
    def create(
        cls,
        version: int,
        keys: Iterable[TrustedKey],
        *,
        threshold: int = 1,
        issued_at: float,
    ) -> TrustRoot:
        """A root from its parts (validated like a parsed one)."""
        return cls.from_json(
            {
                "version": version,
                "issued_at": issued_at,
                "threshold": threshold,
                "keys": {k.keyid: _key_json(k) for k in keys},
            }
        )

    @classmethod
    def from_json(cls, body: object, path: str = "$.root") -> TrustRoot:
        """Parses and checks a root body; `Invalid` names the JSON path of the bad field."""
        if not isinstance(body, Mapping):
            raise Invalid(f"{path} must be an object", path)
        extra = set(body) - {"version", "issued_at", "threshold", "keys"}
        if extra:
            raise Invalid(f"{path}: unknown member {sorted(extra)[0]!r}", f"{path}.{min(extra)}")
        version = _int(body.get("version"), f"{path}.version", minimum=1)
        threshold = _int(body.get("threshold"), f"{path}.threshold", minimum=1)
        issued_at = _num(body.get("issued_at"), f"{path}.issued_at")
        raw_keys = body.get("keys")
        if not isinstance(raw_keys, Mapping) or not raw_keys:
            raise Invalid(f"{path}.keys must be a non-empty object", f"{path}.keys")
        keys: dict[str, TrustedKey] = {}
        for kid, k in raw_keys.items():
            kp = f'{path}.keys["{kid}"]'
            if not isinstance(k, Mapping) or not isinstance(k.get("public_key"), str):
                raise Invalid(f"{kp} must be {{public_key, valid_from, valid_until}}", kp)
            try:
                raw = crypto.raw_public_key(k["public_key"])
            except ValueError as e:
                raise Invalid(f"{kp}.public_key: {e}", f"{kp}.public_key") from None
            if key_id(raw) != kid:
                raise Invalid(f"{kp}: keyid must be the key's id {key_id(raw)!r}", kp)
            vf = _num(k.get("valid_from", 0.0), f"{kp}.valid_from")
            vu_raw = k.get("valid_until")
            vu = None if vu_raw is None else _num(vu_raw, f"{kp}.valid_until")
            if vu is not None and vu <= vf:
                raise Invalid(f"{kp}: valid_until must be after valid_from", f"{kp}.valid_until")
            keys[kid] = TrustedKey(kid, raw, vf, vu)
        if threshold > len(keys):
            raise Invalid(
                f"{path}.threshold ({threshold}) exceeds the number of keys ({len(keys)})",
                f"{path}.threshold",
            )
        return cls(version, issued_at, threshold, keys)

    def to_json(self) -> dict[str, Any]:
        """The JSON body that gets signed (canonicalised) and stored."""
        return {
            "version": self.version,
            "issued_at": self.issued_at,
            "threshold": self.threshold,
            "keys": {kid: _key_json(k) for kid, k in self.keys.items()},
        }

    def signed_bytes(self) -> bytes:
        """The DSSE PAE bytes each root signature covers."""
        return pae(ROOT_PAYLOAD_TYPE, canonical_json(self.to_json()))


def _key_json(k: TrustedKey) -> dict[str, Any]:
    return {
        "public_key": _b64(k.public_key),
        "valid_from": k.valid_from,
        "valid_until": k.valid_until,
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int(v: object, path: str, *, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise Invalid(f"{path} must be an integer >= {minimum}, got {v!r}", path)
    return v


def _num(v: object, path: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Invalid(f"{path} must be epoch seconds, got {v!r}", path)
    return float(v)


@dataclass(frozen=True, slots=True)
class SignedRoot:
    """A root body with its detached signatures `[{keyid, sig}]` (base64 Ed25519)."""

    body: Mapping[str, Any]
    signatures: Sequence[Mapping[str, Any]]

    def envelope(self) -> dict[str, Any]:
        """The same signatures as a DSSE envelope over the canonical root JSON."""
        return {
            "payload": _b64(canonical_json(dict(self.body))),
            "payloadType": ROOT_PAYLOAD_TYPE,
            "signatures": [dict(s) for s in self.signatures],
        }


def sign_root(root: TrustRoot, private_keys: Iterable[crypto.PrivateKeyInput]) -> SignedRoot:
    """Signs a root with each of `private_keys` (old and new keys alike)."""
    msg = root.signed_bytes()
    sigs = [
        {"keyid": key_id(crypto.public_key_of(k)), "sig": _b64(crypto.sign(k, msg))}
        for k in private_keys
    ]
    return SignedRoot(root.to_json(), sigs)


class _RootKeys:
    """Resolves keys listed in one root, ignoring validity windows (roots sign roots)."""

    def __init__(self, root: TrustRoot) -> None:
        self._root = root

    def resolve(self, keyid: str, at: float) -> TrustedKey:
        key = self._root.keys.get(keyid)
        if key is None:
            raise UntrustedKey(f"key {keyid!r} is not in trust root v{self._root.version}")
        if not key.valid_at(at):
            raise ExpiredKey(f"key {keyid!r} of root v{self._root.version} not valid then")
        return key


class TrustHistory:
    """A verified chain of roots from a pinned first root; resolves keys as of any time."""

    def __init__(self, pinned: TrustRoot) -> None:
        self._roots: list[TrustRoot] = [pinned]
        self._times: list[float] = [pinned.issued_at]

    @property
    def current(self) -> TrustRoot:
        """The newest verified root."""
        return self._roots[-1]

    @property
    def roots(self) -> tuple[TrustRoot, ...]:
        """Every verified root, oldest first."""
        return tuple(self._roots)

    def check_next(self, signed: SignedRoot) -> TrustRoot:
        """Verifies `signed` as the successor of `current` without adding it."""
        new = TrustRoot.from_json(signed.body)
        cur = self.current
        if new.version != cur.version + 1:
            raise RootVersionError(
                f"root version must be {cur.version + 1}, got {new.version}", "$.root.version"
            )
        if new.issued_at < cur.issued_at:
            raise RootVersionError("root issued_at goes back in time", "$.root.issued_at")
        env = signed.envelope()
        try:
            # Authorised by the current root, at the moment the new one is issued …
            verify_envelope(
                env,
                _RootKeys(cur),
                new.issued_at,
                payload_type=ROOT_PAYLOAD_TYPE,
                threshold=cur.threshold,
            )
            # … and its own keys prove possession (a typo'd key cannot lock the tenant out).
            verify_envelope(
                env,
                StaticKeys(TrustedKey(k.keyid, k.public_key) for k in new.keys.values()),
                new.issued_at,
                payload_type=ROOT_PAYLOAD_TYPE,
                threshold=new.threshold,
            )
        except SignatureError as e:
            raise type(e)(f"trust root v{new.version}: {e.detail}", "$.root.signatures") from None
        return new

    def append(self, signed: SignedRoot) -> TrustRoot:
        """Verifies and adds the next root."""
        new = self.check_next(signed)
        self._roots.append(new)
        self._times.append(new.issued_at)
        return new

    @classmethod
    def verify_chain(cls, pinned: TrustRoot, chain: Iterable[SignedRoot]) -> TrustHistory:
        """Verifies every root after the pinned one in order (skip those at or below it)."""
        history = cls(pinned)
        for signed in chain:
            version = signed.body.get("version") if isinstance(signed.body, Mapping) else None
            if isinstance(version, int) and version <= pinned.version:
                continue
            history.append(signed)
        return history

    def root_at(self, t: float) -> TrustRoot | None:
        """The root in force at `t` (the newest issued at or before `t`)."""
        i = bisect.bisect_right(self._times, t)
        return self._roots[i - 1] if i else None

    def resolve(self, keyid: str, at: float) -> TrustedKey:
        """The key trusted under `keyid` at `at`, or `UntrustedKey` / `ExpiredKey`."""
        root = self.root_at(at)
        if root is None:
            raise ExpiredKey(f"no trust root was in force at {at}")
        key = root.keys.get(keyid)
        if key is None:
            if any(keyid in r.keys for r in self._roots):
                raise ExpiredKey(f"key {keyid!r} was not trusted at {at} (rotated or revoked)")
            raise UntrustedKey(f"key {keyid!r} is not in the tenant's trust root")
        if not key.valid_at(at):
            raise ExpiredKey(f"key {keyid!r} was not valid at {at}")
        return key
