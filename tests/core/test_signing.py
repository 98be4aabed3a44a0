"""agentgate.signing (RFC 9421 / RFC 9530) through the real extension."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentgate import crypto, signing
from agentgate._core import ManualClock, SettingError

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"


def _vector() -> Any:
    path = TESTDATA / "rfc9421_b26_ed25519.json"
    if not path.exists():
        raise FileNotFoundError(f"test vector missing: {path}")
    return json.loads(path.read_text())


B26 = _vector()
URL = B26["request"]["url"]
HEADERS: list[tuple[str, str]] = [(k, v) for k, v in B26["request"]["headers"]]
BODY = B26["request"]["body"].encode()
KEYS = {B26["params"]["keyid"]: B26["public_key_pem"]}
SIGNED = [*HEADERS, ("Signature-Input", B26["signature_input_header"])]
SIGNED.append(("Signature", B26["signature_header"]))


def _verify(
    method: str = "POST",
    url: str = URL,
    headers: list[tuple[str, str]] = SIGNED,
    **kw: Any,
) -> signing.VerifiedSignature:
    # The vector dates from 2021: check the signature with a clock anchored at its creation.
    # B.2.6 does not cover content-digest, so this verifier does not demand it.
    verifier = signing.HttpSigVerifier(
        KEYS, clock=ManualClock(), now=B26["params"]["created"] + 1, require_digest_with_body=False
    )
    return signing.verify_request(method, url, headers, BODY, KEYS, verifier=verifier, **kw)


def test_b26_signature_base_is_byte_exact() -> None:
    base = signing.signature_base("POST", URL, HEADERS, B26["signature_input_header"], "sig-b26")
    assert base == B26["signature_base"]


def test_b26_resign_reproduces_headers() -> None:
    out = signing.sign_request(
        "POST",
        URL,
        dict(HEADERS),
        BODY,
        key=B26["private_key_pem"],
        keyid=B26["params"]["keyid"],
        label=B26["label"],
        components=B26["components"],
        created=B26["params"]["created"],
    )
    assert out["Signature-Input"] == B26["signature_input_header"]
    assert out["Signature"] == B26["signature_header"]
    assert "Content-Digest" not in out  # the request already carries one


def test_b26_given_signature_verifies() -> None:
    v = _verify()
    assert v.label == "sig-b26"
    assert v.keyid == "test-key-ed25519"
    assert v.created == 1618884473
    assert v.components == B26["components"]


@pytest.mark.parametrize(
    ("method", "url", "header", "value"),
    [
        ("PUT", URL, None, None),
        ("POST", URL.replace("example.com", "example.org"), None, None),
        ("POST", URL.replace("/foo", "/bar"), None, None),
        ("POST", URL, "Date", "Tue, 20 Apr 2021 02:07:56 GMT"),
        ("POST", URL, "Content-Type", "text/plain"),
        ("POST", URL, "Content-Length", "19"),
    ],
)
def test_b26_any_covered_change_fails(
    method: str, url: str, header: str | None, value: str | None
) -> None:
    headers = [(k, value if k == header and value is not None else v) for k, v in SIGNED]
    with pytest.raises(signing.SignatureError) as info:
        _verify(method, url, headers)
    assert info.value.kind == signing.HttpSigErrorKind.BadSignature
    assert info.value.code == "bad-signature" == str(info.value.kind)


def test_b26_param_change_fails() -> None:
    changed = B26["signature_input_header"].replace("1618884473", "1618884474")
    headers = [(k, changed if k == "Signature-Input" else v) for k, v in SIGNED]
    with pytest.raises(signing.SignatureError) as info:
        _verify(headers=headers)
    assert info.value.code == "bad-signature"


def test_b26_digest_checked_against_body() -> None:
    assert signing.content_digest(BODY, "sha-512") == dict(HEADERS)["Content-Digest"]
    assert signing.content_digest(BODY, signing.DigestAlg.Sha512) == dict(HEADERS)["Content-Digest"]
    assert signing.verify_content_digest(dict(HEADERS)["Content-Digest"], BODY)
    assert not signing.verify_content_digest(dict(HEADERS)["Content-Digest"], BODY + b" ")
    # B.2.6 does not cover content-digest; the default policy requires it when there is a body.
    clock = ManualClock()
    with pytest.raises(signing.SignatureError) as info:
        verifier = signing.HttpSigVerifier(KEYS, clock=clock, now=1618884474)
        signing.verify_request("POST", URL, SIGNED, BODY, KEYS, verifier=verifier)
    assert info.value.code == "component-not-covered"


def _signed(
    body: bytes | None = b'{"a": 1}',
    **kw: Any,
) -> tuple[crypto.KeyPair, list[tuple[str, str]]]:
    kp = crypto.generate_keypair()
    headers = {"Content-Type": "application/json"}
    headers |= signing.sign_request(
        "POST", "https://agents.example:443/v1/run?x=1", headers, body, kp.private_key, "k1", **kw
    )
    return kp, list(headers.items())


def test_sign_then_verify_round_trip_with_body() -> None:
    kp, headers = _signed(nonce="n-1", expires_in=60, alg=True, created=10_000)
    clock = ManualClock()
    v = signing.verify_request(
        "POST",
        "https://AGENTS.example/v1/run?x=1",  # default port and case do not matter for @authority
        headers,
        b'{"a": 1}',
        {"k1": kp.public_b64()},
        clock=clock,
        now=10_005,
    )
    assert v.nonce == "n-1"
    assert v.alg == "ed25519"
    assert v.expires == 10_060
    assert "content-digest" in v.components
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request(
            "POST",
            "https://agents.example/v1/run?x=1",
            headers,
            b'{"a": 2}',
            {"k1": kp.public_key},
            clock=ManualClock(),
            now=10_005,
        )
    assert info.value.kind == signing.HttpSigErrorKind.DigestMismatch


def test_policy_errors_have_codes() -> None:
    kp, headers = _signed(body=None, created=1_000, expires_in=30)
    url = "https://agents.example/v1/run?x=1"
    keys = {"k1": kp.public_key}

    def code(now: float, **kw: Any) -> str:
        with pytest.raises(signing.SignatureError) as info:
            signing.verify_request(
                "POST", url, headers, None, keys, clock=ManualClock(), now=now, **kw
            )
        return info.value.code

    assert code(1_100) == "expired"
    assert code(800) == "created-in-future"
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request(
            "POST", url, headers, None, {"other": kp.public_key}, clock=ManualClock(), now=1_010
        )
    assert info.value.code == "unknown-keyid"
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("POST", url, headers[:1], None, keys)
    assert info.value.code == "missing-signature"
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request(
            "POST", url, headers, None, keys, label="nope", clock=ManualClock(), now=1_010
        )
    assert info.value.code == "label-not-found"


def test_required_components_enforced() -> None:
    kp = crypto.generate_keypair()
    url = "https://h.example/p"
    headers = signing.sign_request(
        "GET", url, {}, None, kp.private_key, "k", components=["@method", "@path"], created=50
    )
    verifier = signing.HttpSigVerifier({"k": kp.public_key}, clock=ManualClock(), now=50)
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("GET", url, headers, None, {}, verifier=verifier)
    assert info.value.code == "component-not-covered"
    assert '"@authority"' in str(info.value)


def test_verifier_detects_replay_and_time_moves_with_clock() -> None:
    kp = crypto.generate_keypair()
    url = "https://h.example/p"
    headers = signing.sign_request(
        "GET", url, {}, None, kp.private_key, "k", created=1_000, nonce="abc"
    )
    clock = ManualClock()
    verifier = signing.HttpSigVerifier(
        {"k": kp.public_key}, clock=clock, now=1_000, max_age=30, skew=0
    )
    assert signing.verify_request("GET", url, headers, None, {}, verifier=verifier).nonce == "abc"
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("GET", url, headers, None, {}, verifier=verifier)
    assert info.value.code == "replayed-nonce"
    clock.advance(31)
    assert verifier.now() == 1_031
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("GET", url, headers, None, {}, verifier=verifier)
    assert info.value.code == "too-old"


def test_verifier_key_updates() -> None:
    kp = crypto.generate_keypair()
    url = "https://h.example/p"
    headers = signing.sign_request("GET", url, {}, None, kp.private_key, "k", created=5)
    verifier = signing.HttpSigVerifier({}, clock=ManualClock(), now=5, nonce_capacity=None)
    with pytest.raises(signing.SignatureError):
        signing.verify_request("GET", url, headers, None, {}, verifier=verifier)
    verifier.set_key("k", kp.public_pem())
    assert signing.verify_request("GET", url, headers, None, {}, verifier=verifier).keyid == "k"
    assert verifier.remove_key("k")
    with pytest.raises(signing.SignatureError):
        signing.verify_request("GET", url, headers, None, {}, verifier=verifier)


def test_malformed_inputs_raise_value_error() -> None:
    kp = crypto.generate_keypair()
    with pytest.raises(ValueError, match="public key"):
        signing.HttpSigVerifier({"k": "not a key"})
    with pytest.raises(ValueError, match="url must be absolute"):
        signing.sign_request("GET", "/relative", {}, None, kp.private_key, "k")
    with pytest.raises(ValueError, match="unsupported component"):
        signing.sign_request(
            "GET", "https://h/p", {}, None, kp.private_key, "k", components=["@status"]
        )
    with pytest.raises(ValueError, match="label"):
        signing.sign_request("GET", "https://h/p", {}, None, kp.private_key, "k", label="Bad Label")
    headers = [("Signature-Input", 'sig1=("@method";created=1'), ("Signature", "sig1=:AA==:")]
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("GET", "https://h/p", headers, None, {"k": kp.public_key})
    assert info.value.code == "malformed-signature"
    assert info.value.kind == signing.HttpSigErrorKind.Malformed
    with pytest.raises(ValueError, match="sha-256"):
        signing.content_digest(b"x", "md5")
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_content_digest("not a digest", b"x")
    assert info.value.kind == signing.HttpSigErrorKind.Malformed
    with pytest.raises(SettingError) as s:
        signing.HttpSigVerifier({}, now=5.0)
    assert s.value.field == "now"


def test_streaming_digest_helpers() -> None:
    body = b"chunked body " * 100
    hasher = signing.ContentDigestHasher(signing.DigestAlg.Sha512)
    for i in range(0, len(body), 97):
        hasher.update(body[i : i + 97])
    header = hasher.header_value()
    assert header == signing.content_digest(body, signing.DigestAlg.Sha512)
    check = signing.ContentDigestCheck(header)
    check.update(body[:10])
    check.update(body[10:])
    assert check.finish()
    bad = signing.ContentDigestCheck(header)
    bad.update(body[:-1])
    assert not bad.finish()
    with pytest.raises(ValueError):
        hasher.update(b"more")


def test_body_without_a_digest_is_refused_after_the_signature() -> None:
    kp = crypto.generate_keypair()
    url = "https://h.example/p"
    added = signing.sign_request(
        "POST", url, {}, b"{}", kp.private_key, "k", components=["@method", "@path"], created=7
    )
    headers = {k: v for k, v in added.items() if k != "Content-Digest"}
    verifier = signing.HttpSigVerifier(
        {"k": kp.public_key},
        clock=ManualClock(),
        now=7,
        require_digest_with_body=False,
        required_components=["@method", "@path"],
    )
    with pytest.raises(signing.SignatureError) as info:
        signing.verify_request("POST", url, headers, b"{}", {}, verifier=verifier)
    assert info.value.kind == signing.HttpSigErrorKind.MissingDigest
    assert info.value.code == "missing-digest"
