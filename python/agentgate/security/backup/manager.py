"""Backups 3-2-1: create (full or incremental), list, verify, restore, prune, status.

    mgr = BackupManager(config.backup, kek, database_url=None, data_dir=Path(".agentgate"))
    m = await mgr.create()                       # snapshot → chunks → every destination
    report = await mgr.verify(m.id)              # checksums, decrypt, scratch restore, audit verify
    await mgr.restore(m.id, Path("/srv/restore")) # verified first, then an atomic rename
    await mgr.prune()                            # keep daily/weekly/monthly, then drop chunks

A backup is content-defined chunks (FastCDC), each compressed once with zstd and then encrypted
for each destination's repository; only chunks a destination lacks are uploaded (incremental),
unless `full=True`. The manifest goes last on every destination: an interrupted backup leaves
no manifest, so nothing claims to be complete; its orphaned chunks go at the next prune.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from agentgate.config_security import BackupConfig
from agentgate.security.audit import verify_store
from agentgate.security.backup.chunker import chunks
from agentgate.security.backup.destinations import Destination, open_destination
from agentgate.security.backup.keep import select_keep
from agentgate.security.backup.manifest import ChunkRef, Manifest, ManifestError
from agentgate.security.backup.repository import ChunkError, Repository, open_repository
from agentgate.security.backup.snapshot import SnapshotError, pg_dump, pg_restore, sqlite_snapshot
from agentgate.security.keys import Kek

__all__ = ["BackupError", "BackupManager", "BackupStatus", "VerifyReport"]

_WINDOW = 8  # chunks in flight in the compression pool


class BackupError(Exception):
    """A backup, verification or restore that failed; the message says where and why."""


@dataclass(slots=True)
class VerifyReport:
    """Per destination: ok, the chunks checked, damaged chunks by id, the restore check."""

    id: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every destination that holds the backup verified."""
        return bool(self.results) and all(r["ok"] for r in self.results.values())


@dataclass(slots=True)
class BackupStatus:
    """The 3-2-1 state of the newest backup and the free-space check."""

    copies: int
    media: list[str]
    offsite: bool
    warnings: list[str]
    disk: dict[str, Any]
    last: Manifest | None


def _sqlite_path(database_url: str | None, data_dir: Path) -> Path:
    if database_url and database_url.startswith("sqlite:///"):
        return Path(database_url.removeprefix("sqlite:///"))
    return Path(data_dir) / "agentgate.db"


def _is_pg(database_url: str | None) -> bool:
    return bool(database_url) and str(database_url).startswith(("postgresql://", "postgres://"))


async def _verify_sqlite_file(path: Path) -> dict[str, Any]:
    """integrity_check and the audit chain of a SQLite file (opened without migrating)."""
    from agentgate.store import Store
    from agentgate.store.db import SqliteDatabase

    def integrity() -> str:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return str(con.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            con.close()

    check = await asyncio.to_thread(integrity)
    if check != "ok":
        return {"ok": False, "error": f"sqlite integrity_check: {check}"}
    db = await SqliteDatabase.open(path)
    try:
        res = await verify_store(Store(db).system.audit)
    finally:
        await db.close()
    await asyncio.to_thread(_drop_side_files, path)
    return {
        "ok": res.ok,
        "audit": {"ok": res.ok, "checked": res.checked, "reason": res.reason},
        **({} if res.ok else {"error": f"audit chain: {res.reason}"}),
    }


def _drop_side_files(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Move the verified file into place: one rename; the previous file (and its WAL) is kept
    aside as `….before-restore-<time>`."""
    if target.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{target}{suffix}")
            if old.exists():
                os.replace(old, target.with_name(f"{target.name}.before-restore-{stamp}{suffix}"))
    os.replace(tmp, target)


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class BackupManager:
    """Backups of one store to the configured destinations, under one KEK."""

    def __init__(
        self,
        cfg: BackupConfig,
        kek: Kek,
        *,
        database_url: str | None,
        data_dir: Path,
        salt: bytes | None = None,
        env: dict[str, str] | None = None,
        destinations: list[Destination] | None = None,
    ) -> None:
        self.cfg = cfg
        self.kek = kek
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.salt = salt
        self.destinations = destinations or [open_destination(d, env) for d in cfg.destinations]
        self._repos: dict[str, Repository] = {}
        self._lock = asyncio.Lock()

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`: what the backups hold."""
        return "postgresql" if _is_pg(self.database_url) else "sqlite"

    def _dest(self, name: str) -> Destination:
        for d in self.destinations:
            if d.name == name:
                return d
        raise BackupError(f"no destination named {name!r}")

    async def repo(self, dest: Destination, *, create: bool = True) -> Repository:
        """The repository on a destination (opened once)."""
        r = self._repos.get(dest.name)
        if r is None:
            r = await open_repository(dest, self.kek, salt=self.salt, create=create)
            self._repos[dest.name] = r
        return r

    def _scratch(self) -> Path:
        base = self.cfg.scratch_dir
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="agentgate-backup-", dir=base))

    # --- create -------------------------------------------------------------------------------

    async def create(self, *, full: bool = False) -> Manifest:
        """Snapshot the store and write it to every destination; returns the first manifest."""
        async with self._lock:
            repos = [await self.repo(d) for d in self.destinations]
            scratch = self._scratch()
            try:
                return await asyncio.to_thread(self._create, repos, scratch, full)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    def _snapshot(self, scratch: Path) -> tuple[Path, str, tuple[int, str] | None]:
        if _is_pg(self.database_url):
            snap = scratch / "agentgate.pgdump"
            pg_dump(str(self.database_url), snap)
            return snap, "agentgate.pgdump", None
        src = _sqlite_path(self.database_url, self.data_dir)
        if not src.exists():
            raise BackupError(f"no store at {src}")
        snap = scratch / "agentgate.db"
        sqlite_snapshot(src, snap)
        con = sqlite3.connect(snap)
        try:
            row = con.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        except sqlite3.Error:
            row = None
        finally:
            con.close()
        return snap, "agentgate.db", (int(row[0]), str(row[1])) if row else None

    def _create(self, repos: list[Repository], scratch: Path, full: bool) -> Manifest:
        try:
            snap, file, head = self._snapshot(scratch)
        except (SnapshotError, sqlite3.Error) as e:
            raise BackupError(f"snapshot failed: {e}") from None
        bid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        level = self.cfg.compression_level
        # chunks a destination already holds, with their stored checksums, as its manifests
        # record them (orphans of an interrupted backup are not trusted: uploaded again)
        present: list[dict[str, str]] = [
            {}
            if full or r.dest.kind == "offline"
            else {c.id: c.stored_sha256 for m in r.manifests() for c in m.chunks}
            for r in repos
        ]
        manifests = [
            Manifest(bid, time.time(), "full" if full else "incremental", self.dialect, file, 0, "")
            for _ in repos
        ]
        whole = hashlib.sha256()
        local = __import__("threading").local()

        def compress(data: bytes) -> tuple[bytes, bytes]:
            c = getattr(local, "cctx", None)
            if c is None:
                c = local.cctx = zstandard.ZstdCompressor(level=level)
            return data, c.compress(data)

        for r in repos:
            r.dest.begin(bid)
        try:
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="agentgate-zstd") as pool:
                for data, packed in self._window(pool, compress, chunks(snap, self.cfg.chunk_size)):
                    whole.update(data)
                    for r, m, have in zip(repos, manifests, present, strict=True):
                        cid = r.chunk_id(data)
                        stored = have.get(cid)
                        if stored is None:
                            blob = r.encrypt_packed(cid, packed)
                            stored = have[cid] = hashlib.sha256(blob).hexdigest()
                            # a full backup rewrites only what is missing or damaged (the same
                            # chunk always encrypts to the same bytes)
                            if not (full and self._intact(r, cid, stored)):
                                r.dest.put(r.chunk_key(cid), blob)
                            m.stored_new += len(blob)
                            m.new_chunks += 1
                        m.chunks.append(ChunkRef(cid, len(data), stored))
                        m.size += len(data)
            for r, m in zip(repos, manifests, strict=True):
                m.sha256 = whole.hexdigest()
                m.audit_head = head
                m.compression_level = level
                r.write_manifest(m)
                r.dest.commit()
        except BaseException:
            for r in repos:
                r.dest.abort()
            raise
        return manifests[0]

    @staticmethod
    def _intact(r: Repository, cid: str, stored: str) -> bool:
        try:
            return hashlib.sha256(r.dest.get(r.chunk_key(cid))).hexdigest() == stored
        except KeyError:
            return False

    @staticmethod
    def _window(
        pool: ThreadPoolExecutor, fn: Any, items: Iterator[bytes]
    ) -> Iterator[tuple[bytes, bytes]]:
        """`pool.map` with at most `_WINDOW` items in memory, in order."""
        q: deque[Future[tuple[bytes, bytes]]] = deque()
        for it in items:
            q.append(pool.submit(fn, it))
            if len(q) >= _WINDOW:
                yield q.popleft().result()
        while q:
            yield q.popleft().result()

    # --- list ---------------------------------------------------------------------------------

    async def list(self) -> list[tuple[Manifest, list[str]]]:
        """Every backup (newest first) with the destinations holding it."""
        seen: dict[str, tuple[Manifest, list[str]]] = {}
        for d in self.destinations:
            try:
                r = await self.repo(d, create=False)
            except KeyError:
                continue
            for m in await asyncio.to_thread(r.manifests):
                seen.setdefault(m.id, (m, []))[1].append(d.name)
        return sorted(seen.values(), key=lambda x: (x[0].created_at, x[0].id), reverse=True)

    # --- verify and restore -------------------------------------------------------------------

    def _assemble(self, r: Repository, m: Manifest, out: Path) -> dict[str, Any]:
        """Check every chunk and write the snapshot to `out`; names every damaged chunk."""
        dctx = zstandard.ZstdDecompressor()
        damaged: list[str] = []
        whole = hashlib.sha256()
        with open(out, "wb") as f:
            for c in m.chunks:
                try:
                    blob = r.dest.get(r.chunk_key(c.id))
                except KeyError:
                    damaged.append(f"{c.id}: missing")
                    continue
                if hashlib.sha256(blob).hexdigest() != c.stored_sha256:
                    damaged.append(f"{c.id}: checksum mismatch")
                    continue
                try:
                    data = r.decode_chunk(c.id, blob, dctx)
                except (ChunkError, zstandard.ZstdError) as e:
                    damaged.append(f"{c.id}: {e}")
                    continue
                whole.update(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        res: dict[str, Any] = {"chunks": len(m.chunks), "damaged": damaged}
        if damaged:
            res.update(ok=False, error=f"{len(damaged)} damaged chunk(s): {damaged[0]}")
        elif whole.hexdigest() != m.sha256:
            res.update(ok=False, error="snapshot checksum mismatch")
        else:
            res["ok"] = True
        return res

    async def _check_restored(self, m: Manifest, path: Path) -> dict[str, Any]:
        if m.dialect == "sqlite":
            return await _verify_sqlite_file(path)
        return await self._check_pg_dump(path)

    async def _check_pg_dump(self, dump: Path) -> dict[str, Any]:
        """Restore a dump into a scratch database on the configured server, verify, drop it."""
        if not _is_pg(self.database_url):
            return {"ok": False, "error": "verifying a PostgreSQL backup needs database_url"}
        import asyncpg  # type: ignore[import-untyped]

        from agentgate.store import Store
        from agentgate.store.db import PostgresDatabase

        url = str(self.database_url)
        base, _, _ = url.rpartition("/")
        name = f"agentgate_verify_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        try:
            await asyncio.to_thread(pg_restore, dump, f"{base}/{name}")
            db = await PostgresDatabase.open(f"{base}/{name}", max_size=2)
            try:
                res = await verify_store(Store(db).system.audit)
            finally:
                await db.close()
            out: dict[str, Any] = {
                "ok": res.ok,
                "audit": {"ok": res.ok, "checked": res.checked, "reason": res.reason},
            }
            if not res.ok:
                out["error"] = f"audit chain: {res.reason}"
            return out
        except SnapshotError as e:
            return {"ok": False, "error": str(e)}
        finally:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

    async def verify(self, backup_id: str, *, restore_check: bool = True) -> VerifyReport:
        """Recompute every checksum on every destination holding the backup, restore it into a
        scratch store and verify the audit chain there."""
        report = VerifyReport(backup_id)
        for d in self.destinations:
            try:
                r = await self.repo(d, create=False)
                m = await asyncio.to_thread(r.manifest, backup_id)
            except KeyError:
                continue
            except ManifestError as e:
                report.results[d.name] = {"ok": False, "error": str(e)}
                continue
            scratch = self._scratch()
            try:
                out = scratch / m.file
                res = await asyncio.to_thread(self._assemble, r, m, out)
                if res["ok"] and restore_check:
                    res.update(await self._check_restored(m, out))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            report.results[d.name] = res
        if not report.results:
            raise BackupError(f"no destination holds backup {backup_id}")
        return report

    async def restore(self, backup_id: str, into: Path, *, source: str | None = None) -> Path:
        """Restore into directory `into`: assemble next to the target, verify (checksums, SQLite
        integrity, audit chain), then rename into place. A backup that fails is refused and
        nothing at the target changes. Returns the restored file."""
        into = Path(into)
        await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
        order = [self._dest(source)] if source else list(self.destinations)
        errors: list[str] = []
        for d in order:
            try:
                r = await self.repo(d, create=False)
                m = await asyncio.to_thread(r.manifest, backup_id)
            except KeyError:
                continue
            except ManifestError as e:
                errors.append(f"{d.name}: {e}")
                continue
            tmp = into / f".{m.file}.restore-{backup_id}"
            try:
                res = await asyncio.to_thread(self._assemble, r, m, tmp)
                if res["ok"]:
                    res.update(await self._check_restored(m, tmp))
                if not res["ok"]:
                    errors.append(f"{d.name}: {res['error']}")
                    continue
                target = into / m.file
                await asyncio.to_thread(_swap_in, tmp, target)
                return target
            finally:
                await asyncio.to_thread(_drop_side_files, tmp)
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
        if errors:
            raise BackupError(
                f"backup {backup_id} failed verification, not restored: {'; '.join(errors)}"
            )
        raise BackupError(f"no destination holds backup {backup_id}")

    # --- prune and status ---------------------------------------------------------------------

    async def prune(self, *, grace: float = 3600.0) -> dict[str, dict[str, int]]:
        """Forget backups the keep policy drops, then delete chunks no kept backup uses
        (chunks younger than `grace` stay: a running backup may be about to reference them)."""
        out: dict[str, dict[str, int]] = {}
        async with self._lock:
            for d in self.destinations:
                try:
                    r = await self.repo(d, create=False)
                except KeyError:
                    continue
                out[d.name] = await asyncio.to_thread(self._prune_one, r, grace)
        return out

    def _prune_one(self, r: Repository, grace: float) -> dict[str, int]:
        ms = r.manifests()
        keep = select_keep(ms, self.cfg.keep)
        forgotten = 0
        for m in ms:
            if m.id not in keep:
                r.dest.delete(f"manifests/{m.id}.json")
                forgotten += 1
        used = {c.id for m in ms if m.id in keep for c in m.chunks}
        now, removed = time.time(), 0
        if r.dest.kind != "offline":
            for key, mtime in r.dest.list("chunks/"):
                if key.rsplit("/", 1)[-1] not in used and now - mtime >= grace:
                    r.dest.delete(key)
                    removed += 1
        return {"forgotten": forgotten, "chunks_removed": removed}

    def _free(self) -> dict[str, int | None]:
        free: dict[str, int | None] = {d.name: d.free_space() for d in self.destinations}
        scratch = Path(self.cfg.scratch_dir or tempfile.gettempdir())
        free["scratch"] = shutil.disk_usage(scratch if scratch.exists() else Path("/")).free
        return free

    async def status(self) -> BackupStatus:
        """3-2-1: copies (the live store counts as one), media, off-site; and free space
        against the next backup's estimate (the live store's size)."""
        items = await self.list()
        last = items[0][0] if items else None
        holders = [self._dest(n) for n in items[0][1]] if items else []
        media = sorted({"disk", *(d.medium for d in holders)})
        offsite = any(d.offsite for d in holders)
        copies = 1 + len(holders)
        warnings = []
        if copies < 3:
            warnings.append(f"only {copies} copies of the data (3-2-1 wants 3)")
        if len(media) < 2:
            warnings.append(f"only {len(media)} kind of media (3-2-1 wants 2)")
        if not offsite:
            warnings.append("no copy off site (3-2-1 wants 1)")
        if _is_pg(self.database_url):
            estimate = last.size if last else 0
        else:
            estimate = await asyncio.to_thread(
                _file_size, _sqlite_path(self.database_url, self.data_dir)
            )
        free = await asyncio.to_thread(self._free)
        low = [n for n, f in free.items() if f is not None and f < estimate]
        if low:
            warnings.append(f"free space below the next backup's estimate on {', '.join(low)}")
        disk = {"estimate": estimate, "free": free, "low": low}
        return BackupStatus(copies, media, offsite, warnings, disk, last)


def salt_b64(salt: bytes | None) -> str | None:
    """The key ring's salt as stored in repository configs."""
    return base64.b64encode(salt).decode() if salt else None
