"""Launcher of `command` replicas: read a job from stdin, isolate this process, exec the command.

    python -m agentgate.runtime.launch < job.json

The job is `{"plan": Plan fields, "argv": [...], "env": {...}, "cwd": "..."}`. Exit codes when
the command never runs: 126 (a required isolation mechanism failed), 127 (no such command).
The Ray backend runs the same launcher on its nodes, so replicas are isolated the same way
wherever they run.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from agentgate.runtime.isolation import IsolationError, Plan, apply

__all__ = ["main", "plan_from_json", "plan_to_json"]


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A plan as JSON-ready data."""
    out: dict[str, Any] = {f: getattr(plan, f) for f in Plan.__dataclass_fields__}
    out["required"] = sorted(plan.required)
    return out


def plan_from_json(data: dict[str, Any]) -> Plan:
    """The inverse of `plan_to_json`."""
    d = dict(data)
    for key in ("cgroup_procs", "expose", "seccomp_deny"):
        d[key] = tuple(d.get(key) or ())
    d["required"] = frozenset(d.get("required") or ())
    return Plan(**d)


def main() -> None:
    """Run one job (never returns: execs or exits)."""
    job = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    argv: list[str] = job["argv"]
    env: dict[str, str] = job["env"]
    try:
        apply(plan_from_json(job["plan"]))
    except IsolationError as e:
        print(f"agentgate: isolation failed: {e}", file=sys.stderr, flush=True)
        os._exit(126)
    try:
        os.chdir(job.get("cwd") or "/")
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f"agentgate: cannot run {argv[0]!r}: {e.strerror or e}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main()
