"""`agentgate …` entry point: `serve` (the gateway, see `agentgate.serve`) and the control-plane
commands (`agentgate.cli_*`)."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["build_parser", "main"]

log = logging.getLogger("agentgate")


def build_parser() -> argparse.ArgumentParser:
    """The `agentgate` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="agentgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", required=True, help="gateway config file (YAML)")
    s.add_argument(
        "--workers", type=int, default=1, help="data-plane worker threads (state is shared)"
    )
    s.add_argument("--listen", help="data-plane HOST:PORT (overrides the config)")
    s.add_argument("--admin-listen", help="admin HOST:PORT (overrides the config)")
    s.add_argument("--quiet", action="store_true", help="do not print the URLs")
    s.add_argument(
        "--ports-file", help="write the bound addresses here as JSON once serving (port 0 = any)"
    )
    from agentgate import cli_control  # control-plane commands (admin, keys, template, …)

    cli_control.add_commands(sub)
    from agentgate import cli_security  # secrets, privacy, backup

    cli_security.add_commands(sub)
    from agentgate import cli_runtime  # doctor

    cli_runtime.add_commands(sub)
    from agentgate import cli_state  # state show|restore

    cli_state.add_commands(sub)
    from agentgate import cli_alerts  # alerts, metrics

    cli_alerts.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "serve":
        from agentgate.serve import serve

        return serve(
            args.config, args.workers, args.listen, args.admin_listen, args.quiet, args.ports_file
        )
    from agentgate import cli_alerts, cli_control, cli_runtime, cli_security, cli_state

    code = cli_control.run(args)
    if code is None:
        code = cli_security.run(args)
    if code is None:
        code = cli_runtime.run(args)
    if code is None:
        code = cli_state.run(args)
    if code is None:
        code = cli_alerts.run(args)
    return 2 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
