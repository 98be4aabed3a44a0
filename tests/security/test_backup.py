"""Backups against real parts: a SQLite store under writes, PostgreSQL through pg_dump, a local
directory, a real S3 server (moto) and offline archives. Faults: a corrupted chunk is named, an
interrupted backup leaves no manifest, a backup taken during writes restores consistently."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import pytest_asyncio
from leakcheck import new_secret

from agentgate.config_security import BackupConfig, BackupKeep
from agentgate.security.audit import seal, verify_store
from agentgate.security.backup import BackupError, BackupManager
from agentgate.security.backup.destinations import LocalDir
from agentgate.security.backup.keep import select_keep
from agentgate.security.backup.manifest import Manifest
from agentgate.security.keyring import kek_state, open_kek
from agentgate.security.keys import Kek
from agentgate.security.secrets import SecretService
from agentgate.store import Store, open_store

MARK = b"PLAINTEXT-MARK-4b1d"


async def _fill(store: Store, rows: int = 300) -> None:
    for i in range(rows):
        await store.system.audit.append(
            actor="test", action="fill", target=f"row:{i}", outcome="ok", seal=seal,
            details={"note": MARK.decode() + f"-{i}", "pad": "x" * 300},
        )  # fmt: skip


def _cfg(tmp: Path, bucket: tuple[str, str] | None, **kw: Any) -> BackupConfig:
    dests: list[dict[str, Any]] = [{"name": "local", "type": "local", "path": str(tmp / "bk")}]
    if bucket is not None:
        dests.append(
            {"name": "s3", "type": "s3", "bucket": bucket[1], "endpoint_url": bucket[0],
             "prefix": "agentgate"}
        )  # fmt: skip
        dests.append({"name": "usb", "type": "offline", "path": str(tmp / "usb")})
    return BackupConfig.model_validate(
        {"destinations": dests, "chunk_size": 16384, "scratch_dir": str(tmp / "scratch"), **kw}
    )


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(None, tmp_path / "data")
    try:
        yield s
    finally:
        await s.close()


async def _manager(store: Store, cfg: BackupConfig, master_hex: str, data: Path) -> BackupManager:
    kek = await open_kek(store, {"AGENTGATE_MASTER_KEY": master_hex})
    assert kek is not None
    salt = (await kek_state(store)).salt
    return BackupManager(cfg, kek, database_url=None, data_dir=data, salt=salt)


def _all_bytes(tmp: Path, bucket: tuple[str, str]) -> bytes:
    out = b"".join(p.read_bytes() for p in (tmp / "bk").rglob("*") if p.is_file())
    out += b"".join(p.read_bytes() for p in (tmp / "usb").rglob("*") if p.is_file())
    s3 = boto3.client("s3", endpoint_url=bucket[0], region_name="us-east-1")
    for o in s3.list_objects_v2(Bucket=bucket[1]).get("Contents", []):
        out += s3.get_object(Bucket=bucket[1], Key=o["Key"])["Body"].read()
    return out


def _rows(path: Path) -> list[Any]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT seq, target, details, hash FROM audit ORDER BY seq").fetchall()
    finally:
        con.close()


@pytest.mark.timeout(180)
async def test_three_destinations_verify_restore_incremental(
    sqlite_store: Store, tmp_path: Path, s3_bucket: tuple[str, str], master_hex: str
) -> None:
    store = sqlite_store
    await _fill(store)
    for i in range(300):
        await store.system.tenants.create(f"t{i:03d}", display_name=f"tenant {i} " + "z" * 400)
    kek = await open_kek(store, {"AGENTGATE_MASTER_KEY": master_hex})
    assert kek is not None
    secret = new_secret()
    t = await store.system.tenants.create("acme")
    await SecretService(store, kek).put(t.id, "k", secret)
    mgr = await _manager(store, _cfg(tmp_path, s3_bucket), master_hex, tmp_path / "data")
    m1 = await mgr.create()
    listed = await mgr.list()
    assert [(m.id, d) for m, d in listed] == [(m1.id, ["local", "s3", "usb"])]
    assert m1.kind == "incremental" and m1.new_chunks == len({c.id for c in m1.chunks})
    # 3-2-1: the live store + 3 copies, 3 media, off site
    st = await mgr.status()
    assert (st.copies, st.offsite, st.warnings) == (4, True, [])
    assert st.media == ["disk", "object-storage", "removable"]
    # encrypted and compressed everywhere: no plaintext of the store reaches a destination
    raw = await asyncio.to_thread(_all_bytes, tmp_path, s3_bucket)
    assert MARK not in raw and secret.encode() not in raw
    assert list((tmp_path / "usb").glob("*.tar")) and not list((tmp_path / "usb").glob("*.partial"))
    rep = await mgr.verify(m1.id)
    assert rep.ok, rep.results
    assert all(r["audit"]["checked"] == 300 for r in rep.results.values())
    # incremental: change 1 % of the rows; only the chunks around them are uploaded again
    await store.db.execute(
        "UPDATE tenants SET display_name = 'changed' WHERE name IN ('t010', 't150', 't290')"
    )
    m2 = await mgr.create()
    assert 0 < m2.new_chunks <= len(m2.chunks) // 2 and m2.stored_new < m1.stored_new / 1.5
    m3 = await mgr.create(full=True)
    assert m3.kind == "full" and m3.new_chunks == len({c.id for c in m3.chunks})
    # restore into a new directory from S3 only: the same rows as the store at m2
    target = await mgr.restore(m2.id, tmp_path / "restored", source="s3")
    assert _rows(target) == _rows(tmp_path / "data" / "agentgate.db")
    con = sqlite3.connect(target)
    assert con.execute(
        "SELECT COUNT(*) FROM tenants WHERE display_name = 'changed'"
    ).fetchone() == (3,)
    con.close()
    # the offline archive alone restores too (self-contained)
    only_usb = BackupManager(
        mgr.cfg, mgr.kek, database_url=None, data_dir=tmp_path, destinations=[mgr.destinations[2]]
    )
    t2 = await only_usb.restore(m1.id, tmp_path / "from-usb")
    assert len(_rows(t2)) == 300


async def test_corrupted_chunk_is_named_and_restore_refused(
    sqlite_store: Store, tmp_path: Path, master_hex: str
) -> None:
    await _fill(sqlite_store, 100)
    mgr = await _manager(sqlite_store, _cfg(tmp_path, None), master_hex, tmp_path / "data")
    m = await mgr.create()
    victim = m.chunks[len(m.chunks) // 2].id
    p = tmp_path / "bk" / "chunks" / victim[:2] / victim
    blob = bytearray(p.read_bytes())
    blob[40] ^= 0x01
    p.write_bytes(bytes(blob))
    rep = await mgr.verify(m.id)
    assert not rep.ok
    r = rep.results["local"]
    assert r["damaged"] == [f"{victim}: checksum mismatch"] and victim in r["error"]
    into = tmp_path / "restore"
    into.mkdir()
    (into / "agentgate.db").write_bytes(b"previous")
    with pytest.raises(BackupError, match=f"failed verification.*{victim}"):
        await mgr.restore(m.id, into)
    assert [x.name for x in into.iterdir()] == ["agentgate.db"]
    assert (into / "agentgate.db").read_bytes() == b"previous"
    # a damaged manifest is refused as such
    mp = tmp_path / "bk" / "manifests" / f"{m.id}.json"
    mp.write_bytes(mp.read_bytes().replace(b'"incremental"', b'"full"'))
    rep = await mgr.verify(m.id)
    assert "manifest" in rep.results["local"]["error"]


class _FailingDir(LocalDir):
    """A real directory whose disk 'fills up' after some chunks."""

    def __init__(self, *a: Any, fail_after: int, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.left = fail_after

    def put(self, key: str, data: bytes) -> None:
        if key.startswith("chunks/"):
            if self.left == 0:
                raise OSError(28, "No space left on device")
            self.left -= 1
        super().put(key, data)


async def test_interrupted_backup_leaves_no_manifest(
    sqlite_store: Store, tmp_path: Path, master_hex: str
) -> None:
    await _fill(sqlite_store, 100)
    cfg = _cfg(tmp_path, None)
    base = await _manager(sqlite_store, cfg, master_hex, tmp_path / "data")
    from agentgate.security.backup.destinations import Offline

    usb = Offline("usb", str(tmp_path / "usb"))
    failing = _FailingDir("local", str(tmp_path / "bk"), fail_after=3)
    mgr = BackupManager(
        cfg, base.kek, database_url=None, data_dir=tmp_path / "data", salt=base.salt,
        destinations=[usb, failing],
    )  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        await mgr.create()
    assert await mgr.list() == []
    assert not list((tmp_path / "bk").glob("manifests/*"))
    assert len(list((tmp_path / "bk").glob("chunks/*/*"))) == 3
    assert not list((tmp_path / "usb").iterdir()) or not list((tmp_path / "usb").glob("*.tar*"))
    # the store changes (the first page always does), the next backup completes, and prune
    # drops the orphans it did not reuse
    await _fill(sqlite_store, 20)
    failing.left = 10_000
    m = await mgr.create()
    assert [x.id for x, _ in await mgr.list()] == [m.id]
    pruned = await mgr.prune(grace=0)
    assert pruned["local"]["chunks_removed"] >= 1 and pruned["local"]["forgotten"] == 0
    local = (await mgr.repo(failing)).manifest(m.id)
    on_disk = {p.name for p in (tmp_path / "bk").glob("chunks/*/*")}
    assert on_disk == {c.id for c in local.chunks}
    assert (await mgr.verify(m.id)).ok


async def test_backup_during_writes_restores_consistently(
    sqlite_store: Store, tmp_path: Path, master_hex: str
) -> None:
    store = sqlite_store
    await _fill(store, 50)
    mgr = await _manager(store, _cfg(tmp_path, None), master_hex, tmp_path / "data")
    stop, warm = asyncio.Event(), asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        while not stop.is_set():
            await store.system.audit.append(
                actor="w", action="write", target=f"w:{written}", outcome="ok", seal=seal,
                details={"pad": "y" * 500},
            )  # fmt: skip
            written += 1
            if written == 20:
                warm.set()

    task = asyncio.create_task(writer())
    try:
        await warm.wait()
        ms = [await mgr.create() for _ in range(3)]
        seen = written
    finally:
        stop.set()
        await task
    assert seen > 20
    for m in ms:
        target = await mgr.restore(m.id, tmp_path / f"r-{m.id}")
        db = await open_store(f"sqlite:///{target}", tmp_path)
        try:
            res = await verify_store(db.system.audit)
            assert res.ok, res
            assert res.checked == res.head_seq == m.audit_head[0]  # type: ignore[index]
        finally:
            await db.close()
    assert ms[0].audit_head[0] < ms[-1].audit_head[0] <= 50 + written  # type: ignore[index]


async def test_postgres_backup_through_pg_dump(
    pg_url: str, tmp_path: Path, master_hex: str
) -> None:
    store = await open_store(pg_url, tmp_path)
    try:
        await _fill(store, 40)
        kek = await open_kek(store, {"AGENTGATE_MASTER_KEY": master_hex})
        assert kek is not None
        mgr = BackupManager(
            _cfg(tmp_path, None), kek, database_url=pg_url, data_dir=tmp_path,
            salt=(await kek_state(store)).salt,
        )  # fmt: skip
        m = await mgr.create()
        assert m.dialect == "postgresql" and m.file == "agentgate.pgdump"
        rep = await mgr.verify(m.id)  # restored into a scratch database, chain verified there
        assert rep.ok, rep.results
        assert rep.results["local"]["audit"]["checked"] == 40
        target = await mgr.restore(m.id, tmp_path / "out")
        assert target.name == "agentgate.pgdump" and target.stat().st_size > 0
    finally:
        await store.close()


def test_keep_policy() -> None:
    day = 86400.0
    base = 1_700_000_000.0  # a Tuesday
    ms = [
        Manifest(f"b{i}", base + i * day / 2, "incremental", "sqlite", "f", 0, "")
        for i in range(80)  # two a day for 40 days
    ]
    kept = select_keep(ms, BackupKeep(daily=3, weekly=2, monthly=2))
    newest = ms[-1]
    assert newest.id in kept
    import datetime as dt

    def newest_per(fmt: str, n: int) -> set[str]:
        out: dict[str, str] = {}
        for m in reversed(ms):
            out.setdefault(dt.datetime.fromtimestamp(m.created_at, dt.UTC).strftime(fmt), m.id)
        return set(list(out.values())[:n])

    want = newest_per("%Y-%m-%d", 3) | newest_per("%G-%V", 2) | newest_per("%Y-%m", 2)
    assert kept == want and len(want) >= 4
    assert select_keep(ms, BackupKeep(daily=0, weekly=0, monthly=0)) == {"b79"}


async def test_kek_from_a_repository_salt(tmp_path: Path, master_hex: str) -> None:
    """A restore with only the master key and the destination (no store) opens the repository."""
    from agentgate.security.backup.repository import open_repository, read_config
    from agentgate.security.keyring import kek_for_salt

    dest = LocalDir("d", str(tmp_path / "repo"))
    kek: Kek = kek_for_salt(os.urandom(16), {"AGENTGATE_MASTER_KEY": master_hex})  # type: ignore[assignment]
    await open_repository(dest, kek, salt=b"0123456789abcdef")
    cfg = read_config(dest)
    assert cfg is not None and cfg.salt is not None
