"""One replica: its directory, sockets, logs, cgroup and the process behind it.

Layout under the runtime's root (`<root>/replicas/<id>/`, owned by root, 0755):
- `run/` (owned by the replica's uid, 0700, the only writable place besides scratch): the
  replica's socket `run/agent.sock` (`AGENTGATE_SOCKET`);
- `state.sock`: the state API the supervisor serves for this replica (`AGENTGATE_STATE_URL`),
  connectable only by the replica's uid;
- `scratch/`: a private tmpfs inside the replica's mount namespace (`TMPDIR`, `HOME`).
Logs live outside it, in `<root>/logs/<id>/`, so the replica cannot rewrite them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentgate.runtime.logs import LogFiles

__all__ = ["CommandProc", "Proc", "Replica", "ZygoteProc"]


class Proc(Protocol):
    """A running replica process, wherever it was forked from."""

    pid: int

    async def wait(self) -> int:
        """Its exit status (negative: killed by that signal)."""
        ...

    def send(self, sig: int) -> None:
        """Send a signal (no error if it is gone)."""
        ...


class CommandProc:
    """A launcher subprocess (`command` agents)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    async def wait(self) -> int:
        """Exit status."""
        return await self.proc.wait()

    def send(self, sig: int) -> None:
        """Signal the process group too: the command may have children."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)


class ZygoteProc:
    """A child of a fork server; its exit is reported by the fork server."""

    def __init__(self, pid: int, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self._exited = exited

    async def wait(self) -> int:
        """Exit status."""
        return await asyncio.shield(self._exited)

    def send(self, sig: int) -> None:
        """Signal it (and its session: children it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


@dataclass(eq=False)
class Replica:
    """A replica slot: its files stay for its whole life; the process behind it may restart."""

    id: str
    key: str
    dir: Path
    logs: LogFiles
    uid: int | None = None
    cgroup: str | None = None
    proc: Proc | None = None
    state: str = "starting"  # starting|idle|ready|draining|crashed|crash_loop|stopped|failed
    agent_id: str | None = None
    restarts: int = 0
    failures: int = 0  # consecutive crashes (reset once it stays up)
    started_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    isolation: list[str] = field(default_factory=list)
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None
    last_exit: int | None = None
    bound: asyncio.Event = field(default_factory=asyncio.Event)

    def bind(self, agent_id: str) -> None:
        """The replica now serves `agent_id` (its state API requests may proceed)."""
        self.agent_id = agent_id
        self.bound.set()

    @property
    def run_dir(self) -> Path:
        """Writable directory of the replica (holds its socket)."""
        return self.dir / "run"

    @property
    def socket(self) -> Path:
        """The replica's HTTP socket."""
        return self.run_dir / "agent.sock"

    @property
    def state_socket(self) -> Path:
        """The state API socket served for this replica."""
        return self.dir / "state.sock"

    @property
    def scratch(self) -> Path:
        """The private scratch mount point."""
        return self.dir / "scratch"

    @property
    def endpoint(self) -> str:
        """`unix:/…/agent.sock`: how the gateway reaches it."""
        return f"unix:{self.socket}"

    @property
    def pid(self) -> int | None:
        """The current process id."""
        return None if self.proc is None else self.proc.pid

    def prepare(self) -> None:
        """Create the directories with the right owners."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for d in (self.run_dir, self.scratch):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)
            if self.uid is not None:
                os.chown(d, self.uid, self.uid)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def remove_files(self) -> None:
        """Delete the directory and logs (after the process is gone)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.logs.remove()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Signal the current process, if any."""
        if self.proc is not None:
            self.proc.send(sig)

    def info(self, stats: Any = None) -> dict[str, Any]:
        """JSON-ready view for `GET /api/agents/{name}/replicas`."""
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "pid": self.pid,
            "socket": str(self.socket),
            "endpoint": self.endpoint,
            "restarts": self.restarts,
            "uid": self.uid,
            "isolation": list(self.isolation),
            "uptime": None if self.ready_at is None else round(time.monotonic() - self.ready_at, 3),
            "cpu_seconds": None,
            "memory_bytes": None,
            "oom_kills": 0,
        }
        if stats is not None:
            out["cpu_seconds"] = stats.cpu_seconds
            out["memory_bytes"] = stats.memory
            out["oom_kills"] = stats.oom_kills
        return out
