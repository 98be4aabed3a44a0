"""A throwaway redis-server for tests: a temp dir, a Unix socket (no port to race for), AOF on.

Uses Debian's `redis-server` (scripts/services.sh installs it). `appendfsync always` makes
every acknowledged write durable, so the broker-restart tests can check that nothing acked is
lost. `restart()` stops and starts the same server on the same socket and data.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from service_check import terminate

__all__ = ["RedisServer", "RedisUnavailable", "ephemeral_redis"]


class RedisUnavailable(RuntimeError):
    """redis-server is missing or did not start."""


class RedisServer:
    """One redis-server process on a Unix socket in `dir`."""

    def __init__(self, binary: str, dir: Path, fsync: str = "always") -> None:
        self.binary = binary
        self.fsync = fsync
        self.dir = dir
        self.sock = dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A redis-py URL of the server."""
        return f"unix://{self.sock}"

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until it answers PING."""
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--maxclients",
                "1000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._ping():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RedisUnavailable("redis-server did not start: " + self.log())
            time.sleep(0.01)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.sock))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def log(self) -> str:
        """The server's log so far."""
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        terminate(self.proc, 10)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same socket and data."""
        self.stop()
        self.start()


@contextlib.contextmanager
def ephemeral_redis(fsync: str = "always") -> Iterator[RedisServer]:
    """A started server in a temp dir, removed afterwards (`fsync`: the AOF's appendfsync)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not installed (apt-get install -y redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="agentgate-redis-"))
    server = RedisServer(binary, tmp, fsync)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
