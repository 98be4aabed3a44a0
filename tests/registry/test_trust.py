"""Trust roots: threshold-signed successors, rotation, revocation as of a time, pinning."""

from __future__ import annotations

import pytest

from agentgate import crypto
from agentgate.errors import Invalid
from agentgate.registry.digest import digest
from agentgate.registry.signing import (
    BadSignature,
    ExpiredKey,
    TrustedKey,
    UntrustedKey,
    key_id,
    sign_template,
    verify_template,
)
from agentgate.registry.trust import (
    RootVersionError,
    SignedRoot,
    TrustHistory,
    TrustRoot,
    sign_root,
)

T0 = 1_700_000_000.0


def tk(kp: crypto.KeyPair, **kw: float | None) -> TrustedKey:
    return TrustedKey(key_id(kp.public_key), kp.public_key, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys() -> list[crypto.KeyPair]:
    return [crypto.generate_keypair() for _ in range(4)]


def test_root_json_roundtrip(keys: list[crypto.KeyPair]) -> None:
    root = TrustRoot.create(1, [tk(keys[0]), tk(keys[1], valid_until=T0 + 10)], issued_at=T0)
    assert TrustRoot.from_json(root.to_json()) == root


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda b: b.update(version=0), "$.root.version"),
        (lambda b: b.update(threshold=3), "$.root.threshold"),
        (lambda b: b.update(issued_at="now"), "$.root.issued_at"),
        (lambda b: b.update(keys={}), "$.root.keys"),
        (lambda b: b.update(extra=1), "$.root.extra"),
    ],
)
def test_invalid_roots(keys: list[crypto.KeyPair], mutate: object, path: str) -> None:
    body = TrustRoot.create(1, [tk(keys[0])], issued_at=T0).to_json()
    mutate(body)  # type: ignore[operator]
    with pytest.raises(Invalid) as info:
        TrustRoot.from_json(body)
    assert info.value.path == path


def test_keyid_must_match_key(keys: list[crypto.KeyPair]) -> None:
    body = TrustRoot.create(1, [tk(keys[0])], issued_at=T0).to_json()
    body["keys"] = {key_id(keys[1].public_key): next(iter(body["keys"].values()))}
    with pytest.raises(Invalid, match="keyid must be"):
        TrustRoot.from_json(body)


def test_rotation_and_revocation(keys: list[crypto.KeyPair]) -> None:
    a, b, c, _ = keys
    v1 = TrustRoot.create(1, [tk(a), tk(b), tk(c)], threshold=2, issued_at=T0)
    history = TrustHistory(v1)
    # v2 revokes c at T0 + 100: signed by two v1 keys (a, b), which are v2's keys too.
    v2 = TrustRoot.create(2, [tk(a), tk(b)], threshold=2, issued_at=T0 + 100)
    history.append(sign_root(v2, [a.private_key, b.private_key]))
    assert history.current.version == 2

    d = digest({"x": 1})
    before = sign_template("t@1.0.0", d, c.private_key, signed_at=T0 + 50)
    verify_template(before, ref="t@1.0.0", digest=d, keys=history, at=T0 + 50)
    after = sign_template("t@1.0.0", d, c.private_key, signed_at=T0 + 150)
    with pytest.raises(ExpiredKey, match="rotated or revoked"):
        verify_template(after, ref="t@1.0.0", digest=d, keys=history, at=T0 + 150)
    stranger = sign_template("t@1.0.0", d, keys[3].private_key, signed_at=T0 + 150)
    with pytest.raises(UntrustedKey):
        verify_template(stranger, ref="t@1.0.0", digest=d, keys=history, at=T0 + 150)
    with pytest.raises(ExpiredKey, match="no trust root"):
        history.resolve(key_id(a.public_key), T0 - 1)


def test_successor_needs_threshold_of_old_keys(keys: list[crypto.KeyPair]) -> None:
    a, b, c, d = keys
    v1 = TrustRoot.create(1, [tk(a), tk(b)], threshold=2, issued_at=T0)
    v2 = TrustRoot.create(2, [tk(c)], threshold=1, issued_at=T0 + 1)
    history = TrustHistory(v1)
    with pytest.raises(UntrustedKey, match="1 of 2"):
        history.append(sign_root(v2, [a.private_key, c.private_key]))
    # A key outside v1 cannot authorise a successor on its own.
    with pytest.raises(UntrustedKey):
        TrustHistory(TrustRoot.create(1, [tk(a)], issued_at=T0)).append(
            sign_root(v2, [d.private_key, c.private_key])
        )
    history.append(sign_root(v2, [a.private_key, b.private_key, c.private_key]))
    assert list(history.current.keys) == [key_id(c.public_key)]


def test_successor_must_be_signed_by_its_own_keys(keys: list[crypto.KeyPair]) -> None:
    a, _, c, _ = keys
    v1 = TrustRoot.create(1, [tk(a)], issued_at=T0)
    v2 = TrustRoot.create(2, [tk(c)], issued_at=T0 + 1)
    with pytest.raises(UntrustedKey):
        TrustHistory(v1).append(sign_root(v2, [a.private_key]))


def test_tampered_root_and_version_rules(keys: list[crypto.KeyPair]) -> None:
    a = keys[0]
    v1 = TrustRoot.create(1, [tk(a)], issued_at=T0)
    v2 = sign_root(TrustRoot.create(2, [tk(a)], threshold=1, issued_at=T0 + 1), [a.private_key])
    forged = SignedRoot({**v2.body, "issued_at": T0 + 2}, v2.signatures)
    with pytest.raises(BadSignature):
        TrustHistory(v1).append(forged)
    v3 = sign_root(TrustRoot.create(3, [tk(a)], issued_at=T0 + 2), [a.private_key])
    with pytest.raises(RootVersionError):
        TrustHistory(v1).append(v3)
    back = sign_root(TrustRoot.create(2, [tk(a)], issued_at=T0 - 1), [a.private_key])
    with pytest.raises(RootVersionError):
        TrustHistory(v1).append(back)


def test_verify_chain_from_pinned_root(keys: list[crypto.KeyPair]) -> None:
    a, b, c, _ = keys
    r1 = TrustRoot.create(1, [tk(a)], issued_at=T0)
    r2 = TrustRoot.create(2, [tk(a), tk(b)], issued_at=T0 + 10)
    r3 = TrustRoot.create(3, [tk(b), tk(c)], threshold=2, issued_at=T0 + 20)
    chain = [
        sign_root(r1, [a.private_key]),
        sign_root(r2, [a.private_key, b.private_key]),
        sign_root(r3, [a.private_key, b.private_key, c.private_key]),
    ]
    history = TrustHistory.verify_chain(r1, chain)
    assert [r.version for r in history.roots] == [1, 2, 3]
    assert history.root_at(T0 + 15) == r2
    # a was rotated out at v3: trusted at T0 + 15, not at T0 + 25.
    history.resolve(key_id(a.public_key), T0 + 15)
    with pytest.raises(ExpiredKey):
        history.resolve(key_id(a.public_key), T0 + 25)
    # Pinning a different first root refuses the chain.
    with pytest.raises(UntrustedKey):
        TrustHistory.verify_chain(TrustRoot.create(1, [tk(c)], issued_at=T0), chain)
