"""Consistent snapshots of the store to a local file, while the gateway serves and writes.

- SQLite: the online backup API (`sqlite3.Connection.backup`) from a separate connection in one
  step: it reads one consistent state (WAL mode: writers are not blocked) into a new file.
- PostgreSQL: `pg_dump --format=custom --compress=0` (one transaction snapshot; compression is
  ours, after chunking, so unchanged tables dedupe).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

__all__ = ["SnapshotError", "pg_dump", "pg_restore", "sqlite_snapshot"]


class SnapshotError(Exception):
    """A snapshot or restore tool failed (the message has its stderr, never credentials)."""


def sqlite_snapshot(src: Path, dst: Path) -> None:
    """Copy a live SQLite database into `dst` through the online backup API."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _tool(name: str) -> str:
    from glob import glob

    found = shutil.which(name)
    if found:
        return found
    for d in sorted(glob("/usr/lib/postgresql/*/bin"), reverse=True):
        p = Path(d) / name
        if p.exists():
            return str(p)
    raise SnapshotError(f"{name} not found (install the postgresql client)")


def _run(argv: list[str], what: str) -> None:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise SnapshotError(f"{what} failed: {p.stderr.strip()[:500]}")


def pg_dump(url: str, dst: Path) -> None:
    """Dump a PostgreSQL database (custom format, uncompressed) into `dst`."""
    _run(
        [_tool("pg_dump"), "--format=custom", "--compress=0", "--no-owner", "-f", str(dst), url],
        "pg_dump",
    )


def pg_restore(dump: Path, url: str) -> None:
    """Restore a custom-format dump into the (empty) database at `url`."""
    _run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", url, str(dump)], "pg_restore")
