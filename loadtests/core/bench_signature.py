"""Ed25519 verification: agentgate against `cryptography` (OpenSSL) and PyNaCl (libsodium)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as CryptoKey
from nacl.signing import SigningKey as NaclSigningKey

from agentgate import crypto
from loadtests.core.harness import Case

MESSAGE = b"agentgate bench message, 40 bytes long."
BATCH = 64


def cases() -> list[Case]:
    """Single verify vs peers (pre-parsed keys); batch of 64 (exact and fast) vs 64 singles."""
    kp = crypto.generate_keypair()
    ours = crypto.load_public_key(kp.public_key)
    sig = crypto.sign(kp.private_key, MESSAGE)

    theirs = CryptoKey.from_private_bytes(kp.private_key)
    their_pub = theirs.public_key()
    their_sig = theirs.sign(MESSAGE)

    nacl_key = NaclSigningKey(kp.private_key)
    nacl_verify = nacl_key.verify_key
    nacl_sig = nacl_key.sign(MESSAGE).signature

    # Same signatures everywhere: Ed25519 is deterministic.
    assert sig == their_sig == nacl_sig

    def agentgate_verify() -> object:
        return ours.verify(MESSAGE, sig)

    def cryptography_verify() -> object:
        their_pub.verify(their_sig, MESSAGE)
        return True

    def pynacl_verify() -> object:
        return nacl_verify.verify(MESSAGE, nacl_sig)

    pairs = [crypto.generate_keypair() for _ in range(BATCH)]
    keys = [crypto.load_public_key(p.public_key) for p in pairs]
    msgs = [MESSAGE + i.to_bytes(2, "big") for i in range(BATCH)]
    items = [
        (k, m, crypto.sign(p.private_key, m)) for k, m, p in zip(keys, msgs, pairs, strict=True)
    ]

    def agentgate_batch() -> object:
        return crypto.verify_batch(items)

    def agentgate_batch_fast() -> object:
        return crypto.verify_batch(items, mode="fast")

    def agentgate_singles() -> object:
        return [k.verify(m, s) for k, m, s in items]

    assert agentgate_batch() == agentgate_batch_fast() == agentgate_singles() == [True] * BATCH

    return [
        Case("ed25519-verify", "agentgate", agentgate_verify, baseline=True),
        Case("ed25519-verify", "cryptography", cryptography_verify),
        Case("ed25519-verify", "pynacl", pynacl_verify),
        Case("ed25519-batch64", "agentgate-batch", agentgate_batch, per=BATCH, baseline=True),
        Case("ed25519-batch64", "agentgate-batch-fast", agentgate_batch_fast, per=BATCH),
        Case("ed25519-batch64", "agentgate-singles", agentgate_singles, per=BATCH),
    ]


if __name__ == "__main__":
    import timeit

    for case in cases():
        n = 200 if case.per == 1 else 10
        t = min(timeit.repeat(case.fn, number=n, repeat=5)) / n / case.per
        print(f"{case.group:16} {case.name:18} {t * 1e6:8.2f} µs/op")
