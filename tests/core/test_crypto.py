"""agentgate.crypto through the real extension: vectors, key formats, interop, batch, threads."""

from __future__ import annotations

import base64
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey as CryptoPrivateKey,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey as CryptoPublicKey,
)

from agentgate import crypto

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"


def _load(name: str) -> Any:
    path = TESTDATA / name
    if not path.exists():
        raise FileNotFoundError(f"test vectors missing: {path}")
    return json.loads(path.read_text())


RFC8032 = _load("rfc8032_ed25519_vectors.json")
WYCHEPROOF = _load("wycheproof_ed25519_test.json")
WYCHE_CASES = [
    (bytes.fromhex(g["publicKey"]["pk"]), t) for g in WYCHEPROOF["testGroups"] for t in g["tests"]
]


@pytest.mark.parametrize("vector", RFC8032, ids=[v["name"] for v in RFC8032])
def test_rfc8032(vector: dict[str, str]) -> None:
    seed = bytes.fromhex(vector["secret_key"])
    public = bytes.fromhex(vector["public_key"])
    msg = bytes.fromhex(vector["message"])
    assert crypto.public_key_of(seed) == public
    sig = crypto.sign(seed, msg)
    assert sig.hex() == vector["signature"]
    assert crypto.verify(public, msg, sig)
    assert not crypto.verify(public, msg + b"x", sig)


def test_wycheproof_all() -> None:
    assert len(WYCHE_CASES) == WYCHEPROOF["numberOfTests"] == 151
    wrong = [
        t["tcId"]
        for pk, t in WYCHE_CASES
        if crypto.verify(pk, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]))
        != (t["result"] == "valid")
    ]
    assert wrong == []


def test_wycheproof_batch_equals_expected() -> None:
    items = [(pk, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])) for pk, t in WYCHE_CASES]
    expected = [t["result"] == "valid" for _, t in WYCHE_CASES]
    assert crypto.verify_batch(items) == expected
    assert crypto.verify_batch(items, mode=crypto.BatchMode.ExactBatched) == expected
    assert crypto.verify_batch(items, mode=crypto.BatchMode.Fast) == expected
    assert crypto.verify_batch(items, mode="fast") == expected, "names still work"
    assert str(crypto.BatchMode.ExactBatched) == "exact-batched"
    with pytest.raises(ValueError, match="mode must be"):
        crypto.verify_batch(items, mode="sloppy")
    rng = random.Random(7)
    for _ in range(20):
        picks = [rng.randrange(len(items)) for _ in range(rng.randrange(1, 40))]
        sub = [items[i] for i in picks]
        assert crypto.verify_batch(sub) == [crypto.verify(*it) for it in sub]


def test_batch_equals_singles_with_tampering_and_parsed_keys() -> None:
    pairs = [crypto.generate_keypair() for _ in range(10)]
    items: list[tuple[crypto.PublicKeyInput, bytes, bytes]] = []
    for i in range(80):
        kp = pairs[i % len(pairs)]
        msg = f"message {i}".encode()
        sig = bytearray(crypto.sign(kp.private_key, msg))
        if i % 7 == 3:
            sig[i % 64] ^= 0x40
        key: crypto.PublicKeyInput = kp.public_key
        if i % 3 == 0:
            key = crypto.load_public_key(kp.public_key)
        elif i % 3 == 1:
            key = kp.public_b64()
        items.append((key, msg, bytes(sig)))
    singles = [crypto.verify(k, m, s) for k, m, s in items]
    for mode in ("exact", "exact-batched", "fast"):
        assert crypto.verify_batch(items, mode=mode) == singles, mode
    assert singles.count(False) == len([i for i in range(80) if i % 7 == 3])
    assert crypto.verify_batch([]) == []


def test_key_formats_round_trip() -> None:
    kp = crypto.generate_keypair()
    assert len(kp.private_key) == 32 and len(kp.public_key) == 32
    msg = b"round trip"
    sig = crypto.sign(kp.private_pem(), msg)
    assert sig == crypto.sign(kp.private_key, msg) == crypto.sign(kp.private_pem().encode(), msg)
    b64 = kp.public_b64()
    urlsafe = base64.urlsafe_b64encode(kp.public_key).decode().rstrip("=")
    for form in (
        kp.public_key,
        b64,
        b64.encode(),
        urlsafe,
        kp.public_pem(),
        kp.public_pem().encode(),
    ):
        assert crypto.verify(form, msg, sig), form
    pk = crypto.load_public_key(kp.public_pem())
    assert pk.raw == kp.public_key
    assert pk.to_pem() == kp.public_pem()
    assert pk.to_base64() == b64
    assert pk.verify(msg, sig)
    sk = crypto.load_private_key(kp.private_pem())
    assert sk.seed == kp.private_key
    assert sk.public_key().raw == kp.public_key
    assert kp.private_pem() not in repr(sk)


def test_interop_with_cryptography() -> None:
    theirs = CryptoPrivateKey.generate()
    their_pem = theirs.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    their_pub_pem = theirs.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    their_raw = theirs.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    msg = b"interop"
    # Their signature verifies with us, in every key format.
    sig = theirs.sign(msg)
    for form in (their_pub_pem, their_pub_pem.decode(), their_raw):
        assert crypto.verify(form, msg, sig)
    # Their private PEM loads into us and signs identically (Ed25519 is deterministic).
    assert crypto.sign(their_pem, msg) == sig
    # Our keys load into cryptography and verify our signatures.
    kp = crypto.generate_keypair()
    ours = crypto.sign(kp.private_key, msg)
    pub = serialization.load_pem_public_key(kp.public_pem().encode())
    assert isinstance(pub, CryptoPublicKey)
    pub.verify(ours, msg)
    priv = serialization.load_pem_private_key(kp.private_pem().encode(), password=None)
    assert isinstance(priv, CryptoPrivateKey)
    assert priv.sign(msg) == ours


@pytest.mark.parametrize(
    ("key", "fmt", "problem"),
    [
        (b"abc", crypto.KeyFormat.Base64, crypto.KeyProblem.Length),
        ("!!!! not base64 !!!!", crypto.KeyFormat.Base64, crypto.KeyProblem.Base64),
        (b"\xff" * 33, crypto.KeyFormat.Raw, crypto.KeyProblem.NotText),
        (
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
            crypto.KeyFormat.Pem,
            crypto.KeyProblem.PemLabel,
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAA\n",
            crypto.KeyFormat.Pem,
            crypto.KeyProblem.PemStructure,
        ),
        (
            "MCowBQYDK2VuAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=",
            crypto.KeyFormat.Der,
            crypto.KeyProblem.NotEd25519,
        ),
        (bytes([2] + [0] * 31), crypto.KeyFormat.Raw, crypto.KeyProblem.NotOnCurve),
    ],
)
def test_malformed_public_keys_raise(
    key: bytes | str, fmt: crypto.KeyFormat, problem: crypto.KeyProblem
) -> None:
    with pytest.raises(crypto.Ed25519KeyError) as info:
        crypto.verify(key, b"m", b"\x00" * 64)
    e = info.value
    assert (e.kind, e.format, e.problem) == (crypto.KeyKind.Public, fmt, problem), str(e)
    assert isinstance(e, ValueError), "callers that catch ValueError keep working"
    with pytest.raises(crypto.Ed25519KeyError):
        crypto.load_public_key(key)


def test_malformed_private_keys_and_types() -> None:
    with pytest.raises(crypto.Ed25519KeyError) as info:
        crypto.sign(b"shortkey", b"m")
    assert (info.value.kind, info.value.problem) == (
        crypto.KeyKind.Private,
        crypto.KeyProblem.Length,
    )
    kp = crypto.generate_keypair()
    with pytest.raises(crypto.Ed25519KeyError) as info:
        crypto.sign(kp.public_pem(), b"m")
    assert info.value.problem == crypto.KeyProblem.PemLabel
    assert "bad PEM label 'PUBLIC KEY', expected 'PRIVATE KEY'" in str(info.value)
    with pytest.raises(TypeError, match="public_key must be bytes or str"):
        crypto.verify(123, b"m", b"s")  # type: ignore[arg-type]
    with pytest.raises(crypto.Ed25519KeyError, match=r"^item 1: ") as info:
        crypto.verify_batch([(kp.public_key, b"m", b"s"), (b"bad", b"m", b"s")])
    assert info.value.problem == crypto.KeyProblem.Base64


def test_bad_signatures_are_false_not_errors() -> None:
    kp = crypto.generate_keypair()
    sig = crypto.sign(kp.private_key, b"m")
    assert crypto.verify(kp.public_key, b"m", sig)
    assert not crypto.verify(kp.public_key, b"m", b"")
    assert not crypto.verify(kp.public_key, b"m", sig[:63])
    assert not crypto.verify(kp.public_key, b"m", sig + b"\x00")
    assert not crypto.verify(kp.public_key, b"n", sig)


def test_verify_from_8_threads() -> None:
    pairs = [crypto.generate_keypair() for _ in range(8)]
    keys = [crypto.load_public_key(kp.public_key) for kp in pairs]

    def work(i: int) -> list[bool]:
        kp, key = pairs[i], keys[i]
        out = []
        for j in range(60):
            msg = f"{i}-{j}".encode()
            sig = crypto.sign(kp.private_key, msg)
            bad = sig[:-1] + bytes([sig[-1] ^ 1])
            out.append(key.verify(msg, sig) and crypto.verify(kp.public_key, msg, sig))
            out.append(not crypto.verify(kp.public_b64(), msg, bad))
        out.extend(crypto.verify_batch([(key, b"x", crypto.sign(kp.private_key, b"x"))] * 8))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert all(all(r) for r in results)
    assert sum(len(r) for r in results) == 8 * 128
