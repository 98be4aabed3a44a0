"""Replica stdout/stderr: files the replica writes directly, rotated by the supervisor.

The replica's fds 1 and 2 are files opened with O_APPEND before isolation, outside its writable
directories, so it cannot rewrite its past output. Rotation copies the file to `.1` (shifting
`.1` → `.2` …) and truncates it in place (logrotate's `copytruncate`): the replica keeps its fd
and the next append lands at the new end. Lines written during the copy can be lost; that is
the price of never signalling the replica.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import deque
from pathlib import Path

__all__ = ["LogFiles", "tail"]


class LogFiles:
    """The `stdout.log` / `stderr.log` pair of one replica, with size-based rotation."""

    def __init__(self, directory: Path, max_bytes: int = 10 * 2**20, keep: int = 3) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True)
        self.stdout = directory / "stdout.log"
        self.stderr = directory / "stderr.log"

    def open(self) -> tuple[int, int]:
        """Append-mode fds for a child's stdout and stderr (the caller closes them)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        return os.open(self.stdout, flags, 0o640), os.open(self.stderr, flags, 0o640)

    def rotate(self) -> int:
        """Rotate each file past `max_bytes`; returns how many were rotated."""
        n = 0
        for f in (self.stdout, self.stderr):
            try:
                size = f.stat().st_size
            except OSError:
                continue
            if size < self.max_bytes:
                continue
            for i in range(self.keep - 1, 0, -1):
                older = f.with_name(f"{f.name}.{i}")
                if older.exists():
                    older.replace(f.with_name(f"{f.name}.{i + 1}"))
            # `.1` appears only once the live file is truncated: a reader never sees the same
            # lines in both
            staged = f.with_name(f"{f.name}.1.tmp")
            shutil.copyfile(f, staged)
            with open(f, "r+b") as h:
                h.truncate(0)
            staged.replace(f.with_name(f"{f.name}.1"))
            n += 1
        return n

    def stderr_tail(self, lines: int = 50) -> str:
        """The last `lines` lines of stderr."""
        return tail(self.stderr, lines)

    def remove(self) -> None:
        """Delete the files (the replica is gone for good)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def tail(path: Path, lines: int = 50, max_bytes: int = 256 * 1024) -> str:
    """The last `lines` lines of a text file (reads at most `max_bytes` from its end)."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read().decode("utf-8", errors="replace")
        return "\n".join(deque(data.splitlines(), maxlen=lines))
    return ""
