"""Where backups go. Each destination is a small object store with atomic puts:

- `LocalDir`: files under a directory, written to a temp name, fsynced, renamed.
- `S3`: an S3-compatible bucket (boto3; tests run a real moto server). A PUT is atomic.
- `Offline`: one self-contained tar archive per backup for removable media, built as
  `….tar.partial` and renamed when its manifest is in: a tar with a manifest is complete.

Keys look like `config.json`, `chunks/ab/<id>`, `manifests/<id>.json`. Calls are blocking: the
backup manager runs them in a worker thread.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Protocol

from agentgate.config_security import BackupDestination

__all__ = ["S3", "Destination", "LocalDir", "Offline", "open_destination"]


class Destination(Protocol):
    """An object store for one repository."""

    name: str
    medium: str
    offsite: bool
    kind: str

    def get(self, key: str) -> bytes:
        """The object's bytes (KeyError when missing)."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Store atomically (replacing)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists (for this backup, on offline media)."""
        ...

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """(key, modification time) of every object under `prefix`."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object (missing is fine)."""
        ...

    def begin(self, backup_id: str) -> None:
        """A backup starts writing."""
        ...

    def commit(self) -> None:
        """The backup's manifest is in: make it visible as complete."""
        ...

    def abort(self) -> None:
        """The backup failed: drop what only it needed."""
        ...

    def free_space(self) -> int | None:
        """Free bytes where the data goes (None when unknown, e.g. object storage)."""
        ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the whole file system holding `path` (Linux syncfs: one call instead of an fsync
    per chunk file and directory, which costs ~10 ms each on a VM disk)."""
    import ctypes

    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
    except AttributeError:  # not Linux: fall back to syncing everything
        os.sync()
    finally:
        os.close(fd)


class LocalDir:
    """A directory on a local or mounted disk."""

    kind = "local"

    def __init__(
        self, name: str, path: str, *, medium: str = "disk", offsite: bool = False
    ) -> None:
        self.name = name
        self.root = Path(path)
        self.medium = medium
        self.offsite = offsite
        self._dirs: set[Path] = set()

    def _p(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        try:
            return self._p(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        """Write to a temp file and rename over the key. Chunks are made durable together by
        `commit` (one syncfs before the manifest); everything else is fsynced at once."""
        p = self._p(key)
        if p.parent not in self._dirs:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(p.parent)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if not key.startswith("chunks/"):
                f.flush()
                os.fsync(f.fileno())
        if key.startswith("manifests/"):
            # the manifest may only become visible once every chunk it names is on disk
            _syncfs(self.root)
        os.replace(tmp, p)
        if not key.startswith("chunks/"):
            _fsync_dir(p.parent)

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._p(key).exists()

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """Files under the prefix (temp files excluded)."""
        base = self._p(prefix)
        if not base.exists():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                out.append((str(p.relative_to(self.root)), p.stat().st_mtime))
        return sorted(out)

    def delete(self, key: str) -> None:
        """Remove the file."""
        self._p(key).unlink(missing_ok=True)

    def begin(self, backup_id: str) -> None:
        """Nothing to prepare."""
        self.root.mkdir(parents=True, exist_ok=True)

    def commit(self) -> None:
        """The manifest's rename made it complete."""

    def abort(self) -> None:
        """Orphaned chunks are removed by the next prune."""

    def free_space(self) -> int | None:
        """Free bytes on the directory's file system."""
        p = self.root
        while not p.exists():
            p = p.parent
        return shutil.disk_usage(p).free


class S3:
    """An S3-compatible bucket (AWS, MinIO, Ceph, moto …) under a key prefix."""

    kind = "s3"

    def __init__(
        self,
        name: str,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        medium: str = "object-storage",
        offsite: bool = True,
    ) -> None:
        import boto3

        self.name = name
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.medium = medium
        self.offsite = offsite
        self._s3: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )

    def get(self, key: str) -> bytes:
        """GET the object."""
        try:
            r = self._s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._s3.exceptions.NoSuchKey:
            raise KeyError(key) from None
        return bytes(r["Body"].read())

    def put(self, key: str, data: bytes) -> None:
        """PUT the object (atomic in S3)."""
        self._s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._s3.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """Every object under the prefix (paginated)."""
        out = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            for o in page.get("Contents", []):
                out.append((o["Key"][len(self.prefix) :], o["LastModified"].timestamp()))
        return sorted(out)

    def delete(self, key: str) -> None:
        """DELETE the object."""
        self._s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def begin(self, backup_id: str) -> None:
        """Nothing to prepare."""

    def commit(self) -> None:
        """The manifest's PUT made it complete."""

    def abort(self) -> None:
        """Orphaned chunks are removed by the next prune."""

    def free_space(self) -> int | None:
        """Unknown for object storage."""
        return None


class Offline:
    """Self-contained tar archives, one per backup, for removable media."""

    kind = "offline"

    def __init__(
        self, name: str, path: str, *, medium: str = "removable", offsite: bool = True
    ) -> None:
        self.name = name
        self.root = Path(path)
        self.medium = medium
        self.offsite = offsite
        self._tar: tarfile.TarFile | None = None
        self._tar_path: Path | None = None
        self._members: set[str] = set()
        self._index: dict[str, Path] | None = None

    def _archives(self) -> list[Path]:
        return sorted(self.root.glob("agentgate-backup-*.tar")) if self.root.exists() else []

    def _lookup(self) -> dict[str, Path]:
        if self._index is None:
            idx: dict[str, Path] = {}
            for a in self._archives():
                with tarfile.open(a) as t:
                    for m in t.getmembers():
                        idx.setdefault(m.name, a)
            self._index = idx
        return self._index

    def get(self, key: str) -> bytes:
        """Read a member from whichever archive holds it."""
        if key == "config.json" and (self.root / key).exists():
            return (self.root / key).read_bytes()
        arch = self._lookup().get(key)
        if arch is None:
            raise KeyError(key)
        with tarfile.open(arch) as t:
            f = t.extractfile(key)
            if f is None:
                raise KeyError(key)
            return f.read()

    def put(self, key: str, data: bytes) -> None:
        """Append to the archive being written (config.json also beside the archives)."""
        if key == "config.json":
            self.root.mkdir(parents=True, exist_ok=True)
            LocalDir(self.name, str(self.root)).put(key, data)
            if self._tar is None:
                return
        if self._tar is None:
            raise RuntimeError("offline destination: put outside a backup")
        info = tarfile.TarInfo(key)
        info.size = len(data)
        info.mtime = int(time.time())
        self._tar.addfile(info, io.BytesIO(data))
        self._members.add(key)

    def exists(self, key: str) -> bool:
        """Within the archive being written (each archive is self-contained)."""
        if self._tar is not None:
            return key in self._members
        return key in self._lookup() or (key == "config.json" and (self.root / key).exists())

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """Members of the complete archives under the prefix."""
        out: list[tuple[str, float]] = []
        for a in self._archives():
            mtime = a.stat().st_mtime
            with tarfile.open(a) as t:
                out.extend((n, mtime) for n in t.getnames() if n.startswith(prefix))
        return sorted(out)

    def delete(self, key: str) -> None:
        """Deleting a manifest deletes its archive; chunks live and die with their archive."""
        if key.startswith("manifests/"):
            bid = key.removeprefix("manifests/").removesuffix(".json")
            (self.root / f"agentgate-backup-{bid}.tar").unlink(missing_ok=True)
            self._index = None

    def begin(self, backup_id: str) -> None:
        """Open `agentgate-backup-<id>.tar.partial` with the repository config in it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._tar_path = self.root / f"agentgate-backup-{backup_id}.tar"
        self._tar = tarfile.open(self._tar_path.with_suffix(".tar.partial"), "w")  # noqa: SIM115
        self._members = set()
        cfg = self.root / "config.json"
        if cfg.exists():
            self.put("config.json", cfg.read_bytes())

    def commit(self) -> None:
        """Close, fsync and rename the archive: now it counts."""
        assert self._tar is not None and self._tar_path is not None
        self._tar.close()
        partial = self._tar_path.with_suffix(".tar.partial")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, self._tar_path)
        _fsync_dir(self.root)
        self._tar, self._index = None, None

    def abort(self) -> None:
        """Drop the partial archive."""
        if self._tar is not None and self._tar_path is not None:
            self._tar.close()
            self._tar_path.with_suffix(".tar.partial").unlink(missing_ok=True)
        self._tar = None

    def free_space(self) -> int | None:
        """Free bytes on the medium."""
        p = self.root
        while not p.exists():
            p = p.parent
        return shutil.disk_usage(p).free


def open_destination(cfg: BackupDestination, env: dict[str, str] | None = None) -> Destination:
    """The destination a config entry describes (credentials from the named env variables)."""
    e = dict(os.environ if env is None else env)
    if cfg.type == "local":
        assert cfg.path is not None
        return LocalDir(cfg.name, cfg.path, medium=cfg.medium or "disk", offsite=bool(cfg.offsite))
    if cfg.type == "offline":
        assert cfg.path is not None
        off = True if cfg.offsite is None else cfg.offsite
        return Offline(cfg.name, cfg.path, medium=cfg.medium or "removable", offsite=off)
    assert cfg.bucket is not None
    return S3(
        cfg.name,
        cfg.bucket,
        prefix=cfg.prefix,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        access_key_id=e.get(cfg.access_key_id_env) if cfg.access_key_id_env else None,
        secret_access_key=e.get(cfg.secret_access_key_env) if cfg.secret_access_key_env else None,
        medium=cfg.medium or "object-storage",
        offsite=True if cfg.offsite is None else cfg.offsite,
    )
