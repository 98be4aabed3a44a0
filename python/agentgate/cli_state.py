"""Event-sourced state CLI: `agentgate state show|restore …` (through the REST API).

    agentgate state show summarizer --at 2026-12-01T10:00Z     # one agent as of a time
    agentgate state show --at 2026-12-01T10:00Z                # every agent of the tenant
    agentgate state restore summarizer --at 2026-12-01T10:00Z  # write that state back
    agentgate state restore --all --at 2026-12-01T10:00Z

Times are ISO 8601 (no zone: UTC) or epoch seconds. Restore appends new events; history is
never rewritten, so a restore can itself be undone by restoring to a later time.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentgate.cli_control import CliError, _call, _out

__all__ = ["add_commands", "run"]


def add_commands(sub: Any) -> None:
    """Register `state` on the `agentgate` parser's subparsers."""
    p = sub.add_parser("state", help="agents as of a point in time, and restoring them")
    p.add_argument("--profile", help="a [section] of the profile file")
    s = p.add_subparsers(dest="sub", required=True)
    show = s.add_parser("show", help="one agent (or all) as of --at (default now)")
    show.add_argument("agent", nargs="?", help="agent name (all agents when omitted)")
    show.add_argument("--at", help="ISO 8601 time (2026-12-01T10:00Z) or epoch seconds")
    rs = s.add_parser("restore", help="write the state as of --at back as new events")
    rs.add_argument("agent", nargs="?", help="agent name")
    rs.add_argument("--all", action="store_true", help="every agent of the tenant")
    rs.add_argument("--at", required=True, help="ISO 8601 time or epoch seconds")


def _state(args: argparse.Namespace) -> int:
    params = {"at": args.at} if args.at else {}
    if args.sub == "show":
        path = f"/api/state/agents/{args.agent}" if args.agent else "/api/state/agents"
        _out(_call(args, "GET", path, params=params))
        return 0
    if bool(args.agent) == bool(args.all):
        raise CliError("state restore needs an agent name or --all (not both)")
    body: dict[str, Any] = {"at": args.at}
    if args.agent:
        body["agent"] = args.agent
    _out(_call(args, "POST", "/api/state/restore", json=body))
    return 0


def run(args: argparse.Namespace) -> int | None:
    """Run a state command; None when `args.command` is not one of them."""
    if args.command != "state":
        return None
    try:
        return _state(args)
    except CliError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1
