"""Runtime CLI commands: `agentgate doctor` (what this host allows agent replicas)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

from agentgate.config import GatewayConfig

__all__ = ["add_commands", "run", "runtime_env"]


def runtime_env(cfg: GatewayConfig, env: Mapping[str, str]) -> dict[str, str]:
    """The environment `agentgate serve` gives the admin process for the runtime (the
    environment wins over the file, as for the database)."""
    rt = cfg.runtime
    out = {"AGENTGATE_RUNTIME": env.get("AGENTGATE_RUNTIME") or rt.backend}
    address = env.get("AGENTGATE_RAY_ADDRESS") or rt.address
    if address:
        out["AGENTGATE_RAY_ADDRESS"] = address
    d = env.get("AGENTGATE_RUNTIME_DIR") or rt.dir
    if d:
        out["AGENTGATE_RUNTIME_DIR"] = os.path.abspath(d)
    return out


def add_commands(sub: Any) -> None:
    """Register `doctor`."""
    d = sub.add_parser("doctor", help="check which isolation mechanisms this host allows")
    d.add_argument("--json", action="store_true", help="print JSON")


def doctor(args: argparse.Namespace) -> int:
    """Probe and print; exit 1 when a mechanism the default template requires is missing."""
    from agentgate.runtime.capabilities import probe_subprocess

    caps = probe_subprocess()
    if args.json:
        print(
            json.dumps({k: {"available": v.available, "detail": v.detail} for k, v in caps.items()})
        )
    else:
        width = max(len(k) for k in caps)
        for k, v in caps.items():
            mark = "ok " if v.available else "NO "
            print(f"{mark} {k.ljust(width)}  {v.detail}")
    # the default template requires seccomp and cgroups, and network: none needs netns
    return 0 if all(caps[m].available for m in ("seccomp", "cgroups", "netns")) else 1


def run(args: argparse.Namespace) -> int | None:
    """Run a runtime command; None when `args.command` is not one of them."""
    if args.command == "doctor":
        return doctor(args)
    return None
