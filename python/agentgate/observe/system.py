"""System monitoring with psutil: the host, the gateway's processes and the agents' processes.

Processes are found from the `agentgate serve` process down (it runs the data plane's threads,
the admin listener and the control plane; its children are the demo agent and the runtime's
replicas), classified by command line; agent processes started by the runtime can be added
with `SystemMonitor.track(pid, role, name)`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

__all__ = ["SystemMonitor"]


def _role(cmd: list[str]) -> str:
    line = " ".join(cmd)
    if "agentgate.gateway.demo" in line:
        return "agent"
    if "agentgate" in line and "serve" in line:
        return "gateway"
    return "other"


class SystemMonitor:
    """Samples host and process figures; cheap enough to call on every dashboard refresh."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._tracked: dict[int, tuple[str, str]] = {}
        psutil.cpu_percent(None)  # prime: the first reading is measured against this call

    def track(self, pid: int, role: str, name: str) -> None:
        """Report this process too (e.g. an agent replica the runtime started)."""
        self._tracked[pid] = (role, name)

    def _root(self) -> psutil.Process:
        me = psutil.Process(os.getpid())
        for p in [me, *me.parents()]:
            try:
                if _role(p.cmdline()) == "gateway":
                    return p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return me

    def _proc(self, pid: int) -> psutil.Process:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
            p.cpu_percent(None)
        return p

    def processes(self) -> list[dict[str, Any]]:
        """Each gateway worker, admin, supervisor and agent process: CPU %, RSS, threads, fds."""
        root = self._root()
        seen: dict[int, tuple[str, str]] = {}
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = [psutil.Process(os.getpid())]
        for p in family:
            try:
                cmd = p.cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            role = _role(cmd)
            if role == "other" and p.pid == os.getpid():
                role = "admin"
            seen[p.pid] = (role, os.path.basename(cmd[0]) if cmd else str(p.pid))
        seen.update(self._tracked)
        out = []
        for pid, (role, name) in sorted(seen.items()):
            try:
                p = self._proc(pid)
                with p.oneshot():
                    mem = p.memory_info()
                    try:
                        fds = p.num_fds()
                    except (psutil.AccessDenied, AttributeError):
                        fds = None
                    out.append(
                        {
                            "pid": pid,
                            "role": role,
                            "name": name,
                            "cpu_percent": p.cpu_percent(None),
                            "rss_bytes": mem.rss,
                            "threads": p.num_threads(),
                            "fds": fds,
                        }
                    )
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._procs.pop(pid, None)
                self._tracked.pop(pid, None)
        for pid in set(self._procs) - set(seen):
            self._procs.pop(pid, None)
        return out

    def host(self, disk_path: str = "/") -> dict[str, Any]:
        """CPU, memory, disk, load average and open file descriptors of the host."""
        vm = psutil.virtual_memory()
        du = psutil.disk_usage(disk_path)
        load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
        fds: dict[str, int] | None = None
        try:
            with open("/proc/sys/fs/file-nr", encoding="ascii") as f:
                used, _free, cap = (int(x) for x in f.read().split())
            fds = {"open": used, "max": cap}
        except (OSError, ValueError):
            fds = None
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "cpus": psutil.cpu_count() or 1,
            "memory": {"total": vm.total, "available": vm.available, "percent": vm.percent},
            "disk": {"path": disk_path, "total": du.total, "free": du.free, "percent": du.percent},
            "load": {"1m": load[0], "5m": load[1], "15m": load[2]},
            "fds": fds,
            "boot_time": psutil.boot_time(),
        }

    def snapshot(self, disk_path: str = "/") -> dict[str, Any]:
        """Host and processes, stamped with the time."""
        return {"at": time.time(), "host": self.host(disk_path), "processes": self.processes()}
