"""Secrets on both store backends: envelope encryption, rotation with overlap, KEK rotation and
rewrap, a replaced master key, injection resolvers, schedules, and nothing in the clear at rest."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from leakcheck import new_secret, track

from agentgate.errors import Conflict, Invalid, NotFound
from agentgate.secret_refs import check_template, substitute
from agentgate.security.audit import verify_store
from agentgate.security.envelope import Sealed, aad, open_sealed, open_text, seal, seal_text
from agentgate.security.keyring import open_kek
from agentgate.security.keys import PBKDF2_ITERATIONS, KekError, LocalKek, MasterKey
from agentgate.security.rotation import RotationJob, retire_kek, rewrap_all, rotate_kek
from agentgate.security.secrets import SecretService
from agentgate.store import Store


def test_master_key_forms() -> None:
    raw = os.urandom(32)
    import base64

    assert MasterKey.parse(raw.hex()) == MasterKey(raw, False)
    assert MasterKey.parse("hex:" + raw.hex()).material == raw
    assert MasterKey.parse(base64.b64encode(raw).decode()) == MasterKey(raw, False)
    assert MasterKey.parse("base64:" + base64.b64encode(raw).decode()).material == raw
    p = MasterKey.parse("correct horse battery staple")
    assert p.passphrase and "staple" not in repr(p)
    with pytest.raises(KekError, match="12 characters"):
        MasterKey.parse("short")
    with pytest.raises(KekError, match="32"):
        MasterKey.parse("hex:abcd")


def test_passphrase_goes_through_pbkdf2_600k() -> None:
    import hashlib

    assert PBKDF2_ITERATIONS >= 600_000
    p = MasterKey.parse("correct horse battery staple")
    want = hashlib.pbkdf2_hmac("sha256", p.material, b"s1" * 8, 600_000, 32)
    assert p.root(b"s1" * 8) == want
    assert p.root(b"s2" * 8) != want  # the salt matters


async def test_envelope_binds_rows_and_never_reuses_nonces(kek: LocalKek) -> None:
    v = new_secret().encode()
    a = await seal(kek, v, aad("secret", "t1", "openai", "1"))
    b = await seal(kek, v, aad("secret", "t1", "openai", "1"))
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext and a.wrapped_key != b.wrapped_key
    assert await open_sealed(kek, a, aad("secret", "t1", "openai", "1")) == v
    # the same ciphertext moved to another tenant's or name's row does not decrypt
    for other in (aad("secret", "t2", "openai", "1"), aad("secret", "t1", "openai2", "1")):
        with pytest.raises(KekError):
            await open_sealed(kek, a, other)
    # swapping only the ciphertext (keeping the row's own wrapped key) fails too
    with pytest.raises(KekError):
        await open_sealed(
            kek,
            Sealed(a.wrapped_key, 1, b.nonce, b.ciphertext[:-1] + b"x"),
            aad("secret", "t1", "openai", "1"),
        )
    text = await seal_text(kek, "https://hooks.example/" + new_secret(), "alerts.webhook:1")
    assert (await open_text(kek, text, "alerts.webhook:1")).startswith("https://hooks.example/")
    with pytest.raises(KekError):
        await open_text(kek, text, "alerts.webhook:2")


def test_secret_refs() -> None:
    assert check_template("Bearer ${secret:openai} ${secret:a/b.c-d}") == ["openai", "a/b.c-d"]
    assert substitute("x $${secret:lit} ${secret:k}", lambda n: n.upper()) == "x ${secret:lit} K"
    for bad in ("${secret:}", "${env:X}", "${secret:a", "${secret:-x}"):
        with pytest.raises(ValueError, match="malformed"):
            check_template(bad)


async def _tenant(store: Store, name: str = "acme") -> str:
    return (await store.system.tenants.create(name)).id


def raw_database(dialect: str, tmp_path: Path, database_url: str | None) -> bytes:
    """Every byte the database holds, read without the master key (file, WAL, or pg_dump)."""
    if dialect == "sqlite":
        return b"".join(p.read_bytes() for p in tmp_path.glob("agentgate.db*"))
    out = subprocess.run(
        ["pg_dump", "--data-only", str(database_url)], capture_output=True, check=True
    )
    return out.stdout


async def test_crud_overlap_and_nothing_in_the_clear(
    secrets_svc: SecretService, store: Store, clock: Any, tmp_path: Path, database_url: str | None
) -> None:
    t = await _tenant(store)
    v1, v2 = new_secret("sk"), new_secret("sk")
    rec = await secrets_svc.put(t, "openai", v1, cls="api_key", description="provider key")
    assert (rec.version, rec.cls, rec.overlap) == (1, "api_key", 86400.0)
    assert rec.next_rotation_at == clock() + 30 * 86400
    with pytest.raises(Conflict):
        await secrets_svc.put(t, "openai", v2)
    with pytest.raises(Invalid):
        await secrets_svc.put(t, "bad name!", v2)
    with pytest.raises(Invalid, match="not generated"):
        await secrets_svc.rotate(t, "openai")
    clock.advance(10)
    rec = await secrets_svc.rotate(t, "openai", v2)
    assert rec.version == 2 and rec.rotated_at == clock()
    assert await secrets_svc.value(t, "openai") == v2
    assert await secrets_svc.valid_values(t, "openai") == [v2, v1]  # overlap window
    clock.advance(86401)
    assert await secrets_svc.valid_values(t, "openai") == [v2]
    # another tenant sees nothing
    other = await _tenant(store, "other")
    with pytest.raises(NotFound):
        await secrets_svc.get(other, "openai")
    raw = await asyncio.to_thread(raw_database, store.dialect, tmp_path, database_url)
    assert b"openai" in raw  # the scan does see the rows
    assert v1.encode() not in raw and v2.encode() not in raw
    await secrets_svc.delete(t, "openai")
    with pytest.raises(NotFound):
        await secrets_svc.value(t, "openai")


async def test_kek_rotation_rewraps_online_and_retires(store: Store, master_hex: str) -> None:
    kek = await open_kek(store, {"AGENTGATE_MASTER_KEY": master_hex})
    assert kek is not None
    secrets_svc = SecretService(store, kek)
    t = await _tenant(store)
    vals = {f"s{i}": new_secret() for i in range(12)}
    for n, v in vals.items():
        await secrets_svc.put(t, n, v)
    old_token = (await secrets_svc.repo(t).versions("s0", store.clock()))[0].wrapped_key
    # the old version stays readable between rotate and rewrap
    await secrets_svc.kek.rotate()
    assert await secrets_svc.value(t, "s3") == vals["s3"]
    await secrets_svc.kek.set_min_decryption_version(1)
    status, moved = await rotate_kek(secrets_svc, actor="test")
    assert status.latest_version == 3 and moved == 12
    assert await rewrap_all(secrets_svc) == 0
    for n, v in vals.items():
        assert await secrets_svc.value(t, n) == v
    status = await retire_kek(secrets_svc, 3, actor="test")
    assert status.min_decryption_version == 3
    with pytest.raises(KekError, match="retired"):
        await secrets_svc.kek.unwrap(old_token, aad("secret", t, "s0", "1"))
    # the ring's state is persisted: a new process opens it at the same versions
    reopened = await open_kek(store, {"AGENTGATE_MASTER_KEY": master_hex})
    assert await reopened.status() == status  # type: ignore[union-attr]
    actions = [e.action for e in await store.system.audit.query()]
    assert actions == ["kek.rotate", "kek.retire"]
    assert (await verify_store(store.system.audit)).ok


async def test_replaced_master_key(store: Store, tmp_path: Path) -> None:
    old_hex, new_hex = track(os.urandom(32).hex()), track(os.urandom(32).hex())
    t = await _tenant(store)
    old = await open_kek(store, {"AGENTGATE_MASTER_KEY": old_hex})
    assert old is not None
    v = new_secret()
    await SecretService(store, old).put(t, "db", v)
    new_only = await open_kek(store, {"AGENTGATE_MASTER_KEY": new_hex})
    assert new_only is not None
    with pytest.raises(KekError, match="AGENTGATE_MASTER_KEY_PREVIOUS") as ei:
        await SecretService(store, new_only).value(t, "db")
    assert old_hex not in str(ei.value) and new_hex not in str(ei.value)
    both = await open_kek(
        store, {"AGENTGATE_MASTER_KEY": new_hex, "AGENTGATE_MASTER_KEY_PREVIOUS": old_hex}
    )
    assert both is not None
    svc = SecretService(store, both)
    assert await svc.value(t, "db") == v
    assert await rewrap_all(svc) == 1
    assert await SecretService(store, new_only).value(t, "db") == v


async def test_resolvers(secrets_svc: SecretService, store: Store) -> None:
    t = await _tenant(store)
    v = new_secret("sk")
    await secrets_svc.put(t, "openai", v)
    env = await secrets_svc.resolve_env(t, {"OPENAI_API_KEY": "${secret:openai}", "MODE": "x"})
    assert env == {"OPENAI_API_KEY": v, "MODE": "x"}
    h = await secrets_svc.resolve_headers(t, {"Authorization": "Bearer ${secret:openai}"})
    assert h == {"Authorization": f"Bearer {v}"}
    with pytest.raises(NotFound, match=r"'missing' .*header X-Key"):
        await secrets_svc.resolve_headers(t, {"X-Key": "${secret:missing}"})
    with pytest.raises(Invalid, match="malformed"):
        await secrets_svc.resolve_env(t, {"A": "${secret:}"})


async def test_rotation_schedule_and_reminders(
    secrets_svc: SecretService, store: Store, clock: Any
) -> None:
    t = await _tenant(store)
    await secrets_svc.put(t, "shared", new_secret(), cls="token")
    await secrets_svc.put(t, "openai", new_secret(), cls="api_key")
    await secrets_svc.put(t, "static", new_secret())
    await store.scoped(t).publisher_keys.add("pk1", "AAAA", valid_from=0)
    job = RotationJob(secrets_svc)
    assert (await job.run_once()).rotated == []
    before = await secrets_svc.value(t, "shared")
    clock.advance(340 * 86400)  # everything 30-day is due; the publisher key is 25 days from a year
    report = await job.run_once()
    assert [r.name for r in report.rotated] == ["shared"]
    assert sorted((r.kind, r.name) for r in report.reminders) == [
        ("publisher_key", "pk1"),
        ("secret", "openai"),
    ]
    assert await secrets_svc.value(t, "shared") != before
    assert (await secrets_svc.get(t, "shared")).next_rotation_at == clock() + 30 * 86400
    actions = sorted(e.action for e in await store.system.audit.query())
    assert actions == ["publisher_key.rotation_due", "secret.rotate", "secret.rotation_due"]
    assert (await verify_store(store.system.audit)).ok
