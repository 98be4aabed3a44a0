"""DSSE envelopes over in-toto statements: signing through the Rust core, every refusal."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from agentgate import crypto
from agentgate.registry.digest import canonical_json, digest
from agentgate.registry.signing import (
    PAYLOAD_TYPE,
    BadSignature,
    DigestMismatch,
    ExpiredKey,
    MalformedEnvelope,
    StaleStatement,
    StaticKeys,
    TrustedKey,
    UntrustedKey,
    key_id,
    pae,
    sign_envelope,
    sign_template,
    verify_envelope,
    verify_template,
)

T0 = 1_700_000_000.0
DOC = {"name": "t", "version": "1.0.0"}
DIGEST = digest(DOC)
PARENT = digest({"name": "t", "version": "0.9.0"})


@pytest.fixture(scope="module")
def kp() -> crypto.KeyPair:
    return crypto.generate_keypair()


def keys_for(kp: crypto.KeyPair, **kw: Any) -> StaticKeys:
    return StaticKeys([TrustedKey(key_id(kp.public_key), kp.public_key, **kw)])


def test_pae_matches_the_dsse_spec_example() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world").
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_and_verify_roundtrip(kp: crypto.KeyPair) -> None:
    env = sign_template(
        "t@1.0.0", DIGEST, kp.private_key, signed_at=T0, publisher="alice", parent=PARENT
    )
    assert env["payloadType"] == PAYLOAD_TYPE
    stmt = json.loads(base64.b64decode(env["payload"]))
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"] == [{"name": "t@1.0.0", "digest": {"sha256": DIGEST[7:]}}]
    assert stmt["predicate"]["time"] == "2023-11-14T22:13:20Z"
    # The signature is a plain Ed25519 signature over the PAE bytes.
    sig = base64.b64decode(env["signatures"][0]["sig"])
    payload = base64.b64decode(env["payload"])
    assert crypto.verify(kp.public_key, pae(PAYLOAD_TYPE, payload), sig)
    v = verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0 + 5)
    assert v.publisher == "alice" and v.parent == PARENT and v.signed_at == T0
    assert v.keyids == (key_id(kp.public_key),)
    # Also accepted as JSON text.
    verify_template(json.dumps(env), ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)


def test_untrusted_key(kp: crypto.KeyPair) -> None:
    other = crypto.generate_keypair()
    env = sign_template("t@1.0.0", DIGEST, other.private_key, signed_at=T0)
    with pytest.raises(UntrustedKey) as info:
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)
    assert info.value.problem()["reason"] == "untrusted-key"
    assert info.value.status == 422


def test_key_outside_validity_window(kp: crypto.KeyPair) -> None:
    env = sign_template("t@1.0.0", DIGEST, kp.private_key, signed_at=T0)
    late = keys_for(kp, valid_from=T0 - 100, valid_until=T0)
    with pytest.raises(ExpiredKey):
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=late, at=T0)
    early = keys_for(kp, valid_from=T0 + 1)
    with pytest.raises(ExpiredKey):
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=early, at=T0)
    ok = keys_for(kp, valid_from=T0 - 100, valid_until=T0 + 1)
    verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=ok, at=T0)


def test_backdated_or_stale_statement(kp: crypto.KeyPair) -> None:
    env = sign_template("t@1.0.0", DIGEST, kp.private_key, signed_at=T0 - 3600)
    with pytest.raises(StaleStatement):
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)


def test_digest_mismatch(kp: crypto.KeyPair) -> None:
    env = sign_template("t@1.0.0", DIGEST, kp.private_key, signed_at=T0)
    other = digest({**DOC, "description": "changed"})
    with pytest.raises(DigestMismatch):
        verify_template(env, ref="t@1.0.0", digest=other, keys=keys_for(kp), at=T0)
    with pytest.raises(DigestMismatch):
        verify_template(env, ref="t@1.0.1", digest=DIGEST, keys=keys_for(kp), at=T0)


def test_tampered_payload_is_a_bad_signature(kp: crypto.KeyPair) -> None:
    env = sign_template("t@1.0.0", DIGEST, kp.private_key, signed_at=T0)
    stmt = json.loads(base64.b64decode(env["payload"]))
    stmt["predicate"]["publisher"] = "mallory"
    forged = {**env, "payload": base64.b64encode(canonical_json(stmt)).decode()}
    with pytest.raises(BadSignature):
        verify_template(forged, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)
    # Changing the payload type changes the PAE, so the signature no longer verifies either.
    retyped = sign_envelope(b"{}", kp.private_key, payload_type="text/plain")
    retyped["payloadType"] = PAYLOAD_TYPE
    with pytest.raises(BadSignature):
        verify_envelope(retyped, keys_for(kp), T0)


def _env(kp: crypto.KeyPair) -> dict[str, Any]:
    return sign_template("t@1.0.0", DIGEST, kp.private_key, signed_at=T0)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda e: "not json",
        lambda e: [],
        lambda e: e.pop("payloadType"),
        lambda e: e.update(payloadType="text/plain"),
        lambda e: e.update(payload="***"),
        lambda e: e.update(signatures=[]),
        lambda e: e.update(signatures=[{"keyid": 1, "sig": "AA=="}]),
        lambda e: e["signatures"][0].update(sig=None),
    ],
)
def test_malformed_envelopes(kp: crypto.KeyPair, mangle: Any) -> None:
    env: Any = copy.deepcopy(_env(kp))
    out = mangle(env)
    if isinstance(out, str | list):
        env = out
    with pytest.raises(MalformedEnvelope):
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)


@pytest.mark.parametrize(
    "stmt",
    [
        {"_type": "https://in-toto.io/Statement/v0.1"},
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x"},
        {
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://agentgate.dev/template/v1",
            "subject": [],
        },
    ],
)
def test_signed_but_wrong_statement_shape(kp: crypto.KeyPair, stmt: dict[str, Any]) -> None:
    env = sign_envelope(canonical_json(stmt), kp.private_key)
    with pytest.raises(MalformedEnvelope):
        verify_template(env, ref="t@1.0.0", digest=DIGEST, keys=keys_for(kp), at=T0)


def test_threshold_counts_distinct_trusted_keys(kp: crypto.KeyPair) -> None:
    kp2 = crypto.generate_keypair()
    e1 = sign_envelope(b"x", kp.private_key)
    e2 = sign_envelope(b"x", kp2.private_key)
    both = {**e1, "signatures": e1["signatures"] + e2["signatures"]}
    trusted = StaticKeys([TrustedKey(key_id(k.public_key), k.public_key) for k in (kp, kp2)])
    payload, ids = verify_envelope(both, trusted, T0, threshold=2)
    assert payload == b"x" and len(ids) == 2
    dup = {**e1, "signatures": e1["signatures"] * 2}
    with pytest.raises(UntrustedKey, match="1 of 2"):
        verify_envelope(dup, trusted, T0, threshold=2)
