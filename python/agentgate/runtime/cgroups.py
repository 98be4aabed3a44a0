"""cgroups v1 and v2 for replicas: CPU, memory and process-count limits, accounting, kill.

One group per replica under an `agentgate` parent: `<mount>/agentgate/<name>` in each v1
hierarchy (cpu, cpuacct, memory, pids) or in the v2 tree. Hosts mount either; some mount both
(hybrid: v2 holds only controllers v1 does not bind). `detect()` reads /proc/self/mountinfo and
picks the version that has the cpu, memory and pids controllers.

Written against the kernel files directly (`cgroup.procs`, `memory.max` …): a Python binding
would wrap the same writes, and the ones on PyPI are unmaintained or v1-only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupLimits", "CgroupStats", "Cgroups", "CgroupsV1", "CgroupsV2", "detect", "mounts"]

PARENT = "agentgate"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
NEEDED = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """What one replica may use: CPU in cores, memory and process count."""

    cpu: float | None = None
    memory: int | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """A replica's accounting: memory now and at peak (bytes), CPU used (seconds), OOM kills."""

    memory: int | None
    memory_peak: int | None
    cpu_seconds: float | None
    oom_kills: int


def mounts(mountinfo: str = "/proc/self/mountinfo") -> tuple[dict[str, Path], Path | None]:
    """(v1 controller → mount point, v2 mount point or None) from mountinfo."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    try:
        text = Path(mountinfo).read_text()
    except OSError:
        return v1, v2
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        fstype, opts = rest[0], rest[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = point
        elif fstype == "cgroup":
            for o in opts:
                if o in V1_CONTROLLERS:
                    v1.setdefault(o, point)
    return v1, v2


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
    return out


def _rmdir(path: Path, timeout: float = 2.0) -> None:
    # a group can be removed only once its last process is reaped; that can lag the kill
    end = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > end:
                raise
            time.sleep(0.01)


class Cgroups:
    """One cgroup version's operations on named replica groups."""

    version = 0

    def create(self, name: str, limits: CgroupLimits) -> list[str]:
        """Make the group with its limits; returns the `cgroup.procs` files a child joins."""
        raise NotImplementedError

    def procs(self, name: str) -> list[int]:
        """Pids in the group."""
        raise NotImplementedError

    def stats(self, name: str) -> CgroupStats:
        """Accounting of the group."""
        raise NotImplementedError

    def kill(self, name: str) -> None:
        """SIGKILL every process in the group."""
        for pid in self.procs(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, name: str) -> None:
        """Kill what is left and delete the group."""
        raise NotImplementedError


class CgroupsV1(Cgroups):
    """cgroup v1: one directory per controller hierarchy."""

    version = 1

    def __init__(self, points: dict[str, Path], parent: str = PARENT) -> None:
        self.points = points
        self.parent = parent

    def _dirs(self, name: str) -> Iterator[tuple[str, Path]]:
        seen: set[Path] = set()
        for ctl, point in self.points.items():
            d = point / self.parent / name
            if d in seen:
                continue  # cpu,cpuacct co-mounted
            seen.add(d)
            yield ctl, d

    def _dir(self, ctl: str, name: str) -> Path | None:
        point = self.points.get(ctl)
        return None if point is None else point / self.parent / name

    def create(self, name: str, limits: CgroupLimits) -> list[str]:
        """Make the group in every hierarchy; returns the `cgroup.procs` files."""
        out = []
        for _, d in self._dirs(name):
            d.mkdir(parents=True, exist_ok=True)
            out.append(str(d / "cgroup.procs"))
        mem = self._dir("memory", name)
        if mem is not None and limits.memory is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory))
            with contextlib.suppress(OSError):  # absent without swap accounting
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory))
        cpu = self._dir("cpu", name)
        if cpu is not None and limits.cpu is not None:
            _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu * CFS_PERIOD_US))))
        pids = self._dir("pids", name)
        if pids is not None and limits.pids is not None:
            _write(pids / "pids.max", str(limits.pids))
        return out

    def procs(self, name: str) -> list[int]:
        """Pids in the group (from any hierarchy that has it)."""
        found: set[int] = set()
        for _, d in self._dirs(name):
            with contextlib.suppress(OSError):
                found.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return sorted(found)

    def stats(self, name: str) -> CgroupStats:
        """memory.usage_in_bytes, max_usage, cpuacct.usage, oom_kill count."""
        mem = self._dir("memory", name)
        acct = self._dir("cpuacct", name) or self._dir("cpu", name)
        usage = _read_int(acct / "cpuacct.usage") if acct is not None else None
        oom = _kv(mem / "memory.oom_control").get("oom_kill", 0) if mem is not None else 0
        return CgroupStats(
            memory=_read_int(mem / "memory.usage_in_bytes") if mem is not None else None,
            memory_peak=_read_int(mem / "memory.max_usage_in_bytes") if mem is not None else None,
            cpu_seconds=None if usage is None else usage / 1e9,
            oom_kills=oom,
        )

    def remove(self, name: str) -> None:
        """Kill the group's processes and remove it from every hierarchy."""
        self.kill(name)
        for _, d in self._dirs(name):
            _rmdir(d)


class CgroupsV2(Cgroups):
    """cgroup v2: one tree; controllers enabled for children through `cgroup.subtree_control`."""

    version = 2

    def __init__(self, point: Path, parent: str = PARENT) -> None:
        self.point = point
        self.base = point / parent
        self.controllers: set[str] = set()

    def prepare(self) -> set[str]:
        """Create the parent group and enable what it can of cpu, memory, pids below it."""
        self.base.mkdir(exist_ok=True)
        avail = set((self.point / "cgroup.controllers").read_text().split())
        want = [c for c in NEEDED if c in avail]
        for where in (self.point, self.base):
            for c in want:
                with contextlib.suppress(OSError):
                    _write(where / "cgroup.subtree_control", f"+{c}")
        self.controllers = set((self.base / "cgroup.subtree_control").read_text().split())
        return self.controllers

    def create(self, name: str, limits: CgroupLimits) -> list[str]:
        """Make the group with cpu.max, memory.max (no swap) and pids.max where enabled."""
        if not self.base.exists():
            self.prepare()
        d = self.base / name
        d.mkdir(exist_ok=True)
        if "memory" in self.controllers and limits.memory is not None:
            _write(d / "memory.max", str(limits.memory))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
        if "cpu" in self.controllers and limits.cpu is not None:
            quota = max(1000, int(limits.cpu * CFS_PERIOD_US))
            _write(d / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        if "pids" in self.controllers and limits.pids is not None:
            _write(d / "pids.max", str(limits.pids))
        return [str(d / "cgroup.procs")]

    def procs(self, name: str) -> list[int]:
        """Pids in the group."""
        try:
            return sorted(int(x) for x in (self.base / name / "cgroup.procs").read_text().split())
        except OSError:
            return []

    def stats(self, name: str) -> CgroupStats:
        """memory.current / memory.peak, cpu.stat usage_usec, memory.events oom_kill."""
        d = self.base / name
        cpu = _kv(d / "cpu.stat").get("usage_usec")
        return CgroupStats(
            memory=_read_int(d / "memory.current"),
            memory_peak=_read_int(d / "memory.peak"),
            cpu_seconds=None if cpu is None else cpu / 1e6,
            oom_kills=_kv(d / "memory.events").get("oom_kill", 0),
        )

    def kill(self, name: str) -> None:
        """`cgroup.kill` where the kernel has it (5.14+), else SIGKILL pid by pid."""
        try:
            _write(self.base / name / "cgroup.kill", "1")
        except OSError:
            super().kill(name)

    def remove(self, name: str) -> None:
        """Kill the group's processes and remove it."""
        d = self.base / name
        if d.exists():
            self.kill(name)
            _rmdir(d)


def detect(mountinfo: str = "/proc/self/mountinfo") -> Cgroups | None:
    """The cgroup version that has cpu, memory and pids here and that we may write, or None."""
    v1, v2 = mounts(mountinfo)
    if v2 is not None:
        try:
            avail = set((v2 / "cgroup.controllers").read_text().split())
        except OSError:
            avail = set()
        if all(c in avail for c in NEEDED) and os.access(v2, os.W_OK):
            return CgroupsV2(v2)
    if all(c in v1 for c in NEEDED) and all(os.access(v1[c], os.W_OK) for c in NEEDED):
        return CgroupsV1(v1)
    return None
