"""Entries into the Python interpreter of a running server, counted from outside with perf.

uprobes on libpython, so nothing in the server can hide a call: every entry into the
interpreter from native code (an event-loop callback, a coroutine step, a call from Rust or from
granian into Python) runs _PyEval_EvalFrameDefault, on whatever thread it happens (calls from
Python to Python stay inside it and are not counted); PyGILState_Ensure counts native code (a
Rust thread, a C or Cython callback) taking the GIL to call Python.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBES = {"eval": "_PyEval_EvalFrameDefault", "gil": "PyGILState_Ensure"}
PROBE_GROUP = "agbench"


def libpython(pid: int) -> str | None:
    """The libpython (or the statically linked python executable) a process runs."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if re.search(r"/libpython3[\d.]*\.so", path):
            return path
    exe = os.path.realpath(f"/proc/{pid}/exe")
    return exe if "python" in Path(exe).name else None


def _perf(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["perf", *args], capture_output=True, text=True, check=False)


@contextlib.contextmanager
def probes(binary: str) -> Iterator[None]:
    """uprobes on the interpreter's entry points in `binary`, removed afterwards."""
    tracefs = Path("/sys/kernel/tracing")
    if not (tracefs / "uprobe_events").exists() and os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(tracefs)], check=False)
    _perf(["probe", "-q", "-d", f"{PROBE_GROUP}:*"])
    for name, func in PROBES.items():
        out = _perf(["probe", "-q", "-x", binary, "-a", f"{PROBE_GROUP}:{name}={func}"])
        if out.returncode != 0:
            raise RuntimeError(f"perf probe {func} in {binary}: {out.stderr.strip()[-300:]}")
    try:
        yield
    finally:
        _perf(["probe", "-q", "-d", f"{PROBE_GROUP}:*"])


@dataclass
class Counts:
    """Probe hits of one `perf stat` window: in all, and per thread with its CPU time."""

    total: dict[str, int]
    threads: list[dict[str, Any]]  # {"thread": "comm-tid", "cpu_s": …, <probe>: hits}

    def busiest(self) -> dict[str, Any] | None:
        """The thread that ran longest: under load, the one that served the requests."""
        return max(self.threads, key=lambda t: t["cpu_s"], default=None)


def perf_count(pids: list[int], cmd: list[str], tmp: Path) -> tuple[Counts, str]:
    """Probe hits in these processes (every thread) while `cmd` runs; and cmd's output."""
    out_file = tmp / "perf-stat.csv"
    events = ",".join(f"{PROBE_GROUP}:{n}" for n in PROBES)
    proc = subprocess.run(
        ["perf", "stat", "--per-thread", "-x", ",", "-o", str(out_file), "-e", events,
         "-p", ",".join(map(str, pids)), "--", *cmd],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    counts = parse_perf_stat(out_file.read_text() if out_file.exists() else "")
    if set(counts.total) != set(PROBES):
        raise RuntimeError(f"perf stat counted nothing: {proc.stderr.strip()[-300:]}")
    return counts, proc.stdout


def parse_perf_stat(text: str) -> Counts:
    """Our probes' hits from `perf stat --per-thread -x ,` output: `thread,count,unit,event,
    running time (ns),…`. `<not counted>`: the thread never ran while counting, so 0. A
    per-thread counter runs only while its thread does, so its running time is the thread's CPU
    time in the window."""
    total: dict[str, int] = {}
    threads: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        cells = line.split(",")
        if len(cells) < 5 or not cells[3].startswith(f"{PROBE_GROUP}:"):
            continue
        name = cells[3].split(":", 1)[1]
        hits = int(cells[1]) if cells[1].isdigit() else 0
        row = threads.setdefault(cells[0], {"thread": cells[0], "cpu_s": 0.0})
        row[name] = hits
        if cells[4].isdigit():
            row["cpu_s"] = max(row["cpu_s"], int(cells[4]) / 1e9)
        total[name] = total.get(name, 0) + hits
    return Counts(total, list(threads.values()))
