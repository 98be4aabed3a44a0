"""`agentgate alerts …` and `agentgate metrics …`: the alert manager and metrics over the API.

    agentgate alerts list                         # pending and firing
    agentgate alerts ack ALERT_ID
    agentgate alerts history [--since EPOCH] / stats
    agentgate alerts rules list | get NAME | put FILE.json|yaml | delete NAME
    agentgate alerts silence --match agent=svc-a --match 'alertname=~High.*' --for 2h [--comment …]
    agentgate alerts silences / unsilence SILENCE_ID
    agentgate alerts channels list | put NAME --kind slack --config FILE | delete NAME | test NAME
    agentgate metrics summary [--agent A] [--range 3600] / agents / health / system
    agentgate metrics record NAME VALUE [--kind gauge] [--label k=v] [--agent A]
    agentgate metrics query NAME [--agg p99] [--by agent] [--range 3600]

The API key and URL come from the environment or the profile file, as for the other commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentgate.cli_control import CliError, _call, _load, _out

__all__ = ["add_commands", "run"]


def _period(text: str) -> float:
    from agentgate.observe.settings import parse_period

    try:
        return parse_period(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_commands(sub: Any) -> None:
    """Register `alerts` and `metrics`."""
    a = sub.add_parser("alerts", help="alert rules, active alerts, silences, channels")
    asub = a.add_subparsers(dest="sub", required=True)
    asub.add_parser("list", help="pending and firing alerts")
    p = asub.add_parser("ack", help="acknowledge an alert")
    p.add_argument("alert_id")
    p = asub.add_parser("history", help="alert state changes, newest first")
    p.add_argument("--since", type=float)
    p.add_argument("--limit", type=int, default=50)
    p = asub.add_parser("stats", help="counts and times to acknowledge / resolve")
    p.add_argument("--since", type=float)
    p = asub.add_parser("rules", help="list, show, set or delete rules")
    p.add_argument("action", choices=["list", "get", "put", "delete"])
    p.add_argument("target", nargs="?", help="rule name (get, delete) or file (put)")
    p = asub.add_parser("silence", help="silence alerts whose labels match")
    p.add_argument("--match", action="append", required=True, help="label=value or label=~regex")
    p.add_argument("--for", dest="duration", type=_period, default=3600.0, help="e.g. 2h")
    p.add_argument("--comment", default="")
    asub.add_parser("silences", help="active silences")
    p = asub.add_parser("unsilence", help="end a silence now")
    p.add_argument("silence_id")
    p = asub.add_parser("channels", help="list, set, delete or test notification channels")
    p.add_argument("action", choices=["list", "put", "delete", "test"])
    p.add_argument("name", nargs="?")
    p.add_argument("--kind", choices=["slack", "email", "webhook", "alertmanager"])
    p.add_argument("--config", dest="channel_config", help="JSON/YAML file with the settings")
    for q in (a, *asub.choices.values()):
        q.add_argument("--profile", help="profile name in the profile file")

    m = sub.add_parser("metrics", help="golden signals, health, system, custom metrics")
    msub = m.add_subparsers(dest="sub", required=True)
    p = msub.add_parser("summary", help="golden signals of the fleet or an agent")
    p.add_argument("--agent")
    p.add_argument("--range", type=_period, default=3600.0)
    p = msub.add_parser("agents", help="signals, state and health per agent")
    p.add_argument("--range", type=_period, default=3600.0)
    msub.add_parser("health", help="health scores")
    msub.add_parser("system", help="host and process figures")
    p = msub.add_parser("record", help="record one custom metric value")
    p.add_argument("name")
    p.add_argument("value", type=float)
    p.add_argument("--kind", choices=["counter", "gauge", "histogram"], default="gauge")
    p.add_argument("--label", action="append", default=[], help="k=v")
    p.add_argument("--agent", default="")
    p = msub.add_parser("query", help="aggregate a custom metric")
    p.add_argument("name")
    p.add_argument("--agg", default="avg")
    p.add_argument("--by", default="")
    p.add_argument("--range", type=_period, default=3600.0)
    for q in (m, *msub.choices.values()):
        q.add_argument("--profile", help="profile name in the profile file")


def _matcher(text: str) -> dict[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"--match wants label=value or label=~regex, got {text!r}")
    if value.startswith("~"):
        return {"name": name, "value": value[1:], "regex": True}
    if name.endswith("!"):
        return {"name": name[:-1], "value": value, "equal": False}
    return {"name": name, "value": value}


def _alerts(args: argparse.Namespace) -> int:
    s = args.sub
    if s == "list":
        _out(_call(args, "GET", "/api/alerts/active"))
    elif s == "ack":
        _out(_call(args, "POST", f"/api/alerts/{args.alert_id}/ack"))
    elif s == "history":
        params: dict[str, Any] = {"limit": args.limit}
        if args.since is not None:
            params["since"] = args.since
        _out(_call(args, "GET", "/api/alerts/history", params=params))
    elif s == "stats":
        _out(
            _call(
                args,
                "GET",
                "/api/alerts/stats",
                params={} if args.since is None else {"since": args.since},
            )
        )
    elif s == "rules":
        if args.action == "list":
            _out(_call(args, "GET", "/api/alerts/rules"))
        elif not args.target:
            raise CliError(
                f"rules {args.action} needs a {'file' if args.action == 'put' else 'name'}"
            )
        elif args.action == "get":
            _out(_call(args, "GET", f"/api/alerts/rules/{args.target}"))
        elif args.action == "delete":
            _call(args, "DELETE", f"/api/alerts/rules/{args.target}")
        else:
            rule = _load(args.target)
            if not isinstance(rule, dict) or "name" not in rule:
                raise CliError(f"{args.target}: a rule is an object with a name")
            _out(_call(args, "PUT", f"/api/alerts/rules/{rule['name']}", json=rule))
    elif s == "silence":
        body = {
            "matchers": [_matcher(m) for m in args.match],
            "duration": args.duration,
            "comment": args.comment,
        }
        _out(_call(args, "POST", "/api/alerts/silences", json=body))
    elif s == "silences":
        _out(_call(args, "GET", "/api/alerts/silences"))
    elif s == "unsilence":
        _call(args, "DELETE", f"/api/alerts/silences/{args.silence_id}")
    elif s == "channels":
        if args.action == "list":
            _out(_call(args, "GET", "/api/alerts/channels"))
        elif not args.name:
            raise CliError(f"channels {args.action} needs a channel name")
        elif args.action == "delete":
            _call(args, "DELETE", f"/api/alerts/channels/{args.name}")
        elif args.action == "test":
            _out(_call(args, "POST", f"/api/alerts/channels/{args.name}/test"))
        else:
            if not args.kind or not args.channel_config:
                raise CliError("channels put needs --kind and --config FILE")
            cfg = _load(args.channel_config)
            body = {"kind": args.kind, "config": cfg}
            _out(_call(args, "PUT", f"/api/alerts/channels/{args.name}", json=body))
    return 0


def _metrics(args: argparse.Namespace) -> int:
    s = args.sub
    if s == "summary":
        params: dict[str, Any] = {"range": args.range}
        if args.agent:
            params["agent"] = args.agent
        _out(_call(args, "GET", "/api/metrics/summary", params=params))
    elif s == "agents":
        _out(_call(args, "GET", "/api/metrics/agents", params={"range": args.range}))
    elif s == "health":
        _out(_call(args, "GET", "/api/health/score"))
    elif s == "system":
        _out(_call(args, "GET", "/api/system/monitoring"))
    elif s == "record":
        labels = {}
        for kv in args.label:
            k, sep, v = kv.partition("=")
            if not sep:
                raise CliError(f"--label wants k=v, got {kv!r}")
            labels[k] = v
        point = {
            "name": args.name,
            "kind": args.kind,
            "value": args.value,
            "labels": labels,
            "agent": args.agent,
        }
        _out(_call(args, "POST", "/api/metrics/advanced", json={"points": [point]}))
    elif s == "query":
        params = {"name": args.name, "agg": args.agg, "range": args.range}
        if args.by:
            params["by"] = args.by
        _out(_call(args, "GET", "/api/metrics/advanced", params=params))
    return 0


def run(args: argparse.Namespace) -> int | None:
    """Run an alerts/metrics command; None when `args.command` is not one of them."""
    h = {"alerts": _alerts, "metrics": _metrics}.get(args.command)
    if h is None:
        return None
    try:
        return h(args)
    except CliError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1
