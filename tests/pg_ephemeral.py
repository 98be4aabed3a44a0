"""A throwaway PostgreSQL server for tests: initdb into a temp dir, start on a free port, stop.

Uses Debian's `postgresql` package binaries (`/usr/lib/postgresql/*/bin`, or on PATH). As root it
runs initdb and the server as the `postgres` system user (postgres refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["PgUnavailable", "ephemeral_postgres", "find_pg_bin"]


class PgUnavailable(RuntimeError):
    """PostgreSQL binaries are missing or the server did not start."""


def find_pg_bin() -> Path | None:
    """The directory holding initdb/postgres, newest version first, or None."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "postgres")):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to the `postgres` user (created if missing)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
    # setuid in the child (not runuser/su): terminate() then signals postgres itself.
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


@contextlib.contextmanager
def ephemeral_postgres(timeout: float = 30.0) -> Iterator[str]:
    """Start a fresh server; yields a URL of its `postgres` database (user `postgres`, trust)."""
    bindir = find_pg_bin()
    if bindir is None:
        raise PgUnavailable("PostgreSQL is not installed (apt-get install -y postgresql)")
    drop = _as_user()
    tmp = Path(tempfile.mkdtemp(prefix="agentgate-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if drop:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **drop,
        )
        port = _free_port()
        log = open(tmp / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-k",
                str(sock),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **drop,
        )
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PgUnavailable(
                    "postgres did not start: " + (tmp / "server.log").read_text(errors="replace")
                )
            time.sleep(0.05)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
