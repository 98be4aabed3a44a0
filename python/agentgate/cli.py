"""`agentgate …` entry point: `serve --config FILE` supervises granian processes; the
control-plane commands (admin, tenant, keys, template, agent, policy, audit) are in `cli_control`,
the security ones in `cli_security`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from agentgate.api.auth import admin_exposure_warning
from agentgate.config import ConfigError, GatewayConfig, load_config
from agentgate.store import open_store

__all__ = ["build_parser", "main", "serve"]

log = logging.getLogger("agentgate")


def _split(hostport: str) -> tuple[str, str]:
    host, _, port = hostport.rpartition(":")
    return host, port


async def _prepare_store(database_url: str | None, data_dir: Path) -> None:
    store = await open_store(database_url, data_dir)
    await store.close()


def _granian(target: str, interface: str, listen: str, workers: int) -> list[str]:
    host, port = _split(listen)
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        interface,
        "--factory",
        "--host",
        host,
        "--port",
        port,
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--no-ws",
        "--log-level",
        "warning",
        "--workers-kill-timeout",
        "30",
        target,
    ]


def _wait_port(hostport: str, seconds: float) -> bool:
    import socket

    host, port = _split(hostport)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, int(port))) == 0:
                return True
        time.sleep(0.05)
    return False


def serve(
    config_path: str,
    workers: int = 1,
    listen: str | None = None,
    admin_listen: str | None = None,
    quiet: bool = False,
) -> int:
    """Run the gateway until SIGTERM/SIGINT; SIGHUP or a file change reloads the config."""
    path = str(Path(config_path).resolve())
    try:
        cfg: GatewayConfig = load_config(path)
    except ConfigError as e:
        print(f"agentgate: invalid config: {e}", file=sys.stderr)
        return 2
    listen = listen or cfg.listen
    admin_listen = admin_listen or cfg.admin_listen
    exposed = admin_exposure_warning(admin_listen, cfg.admin_auth)
    if exposed:
        print(f"agentgate: warning: {exposed}", file=sys.stderr, flush=True)
    run_dir = tempfile.mkdtemp(prefix="agentgate-")
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(run_dir, "metrics")
    os.makedirs(metrics_dir, exist_ok=True)
    for f in Path(metrics_dir).glob("*.db"):
        f.unlink()
    reload_file = os.path.join(run_dir, "reload")
    Path(reload_file).touch()
    env = dict(os.environ)
    env.update(
        AGENTGATE_CONFIG=path,
        AGENTGATE_RELOAD_FILE=reload_file,
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        # The environment overrides the file, as for deployments that inject the database.
        AGENTGATE_DATA_DIR=os.path.abspath(os.environ.get("AGENTGATE_DATA_DIR") or cfg.data_dir),
    )
    database_url = os.environ.get("AGENTGATE_DATABASE_URL") or cfg.database_url
    if database_url:
        env["AGENTGATE_DATABASE_URL"] = database_url
    try:
        Path(env["AGENTGATE_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        # Migrate once here, so the admin process and N workers never race on a new schema.
        asyncio.run(_prepare_store(database_url, Path(env["AGENTGATE_DATA_DIR"])))
    except Exception as e:  # a store we cannot open is a config problem: say which and stop
        print(
            f"agentgate: cannot open the store ({cfg.database_url or cfg.data_dir}): {e}",
            file=sys.stderr,
        )
        return 2
    children: list[subprocess.Popen[bytes]] = []
    if cfg.demo_echo:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "agentgate.gateway.demo", cfg.demo_echo], env=env
            )
        )
    children.append(
        subprocess.Popen(
            _granian("agentgate.api.admin:create_app", "asgi", admin_listen, 1), env=env
        )
    )
    data = subprocess.Popen(_granian("agentgate.gateway.app:app", "rsgi", listen, workers), env=env)
    children.append(data)

    stopping = False
    reload_asked = False

    def on_stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def on_hup(_sig: int, _frame: FrameType | None) -> None:
        nonlocal reload_asked
        reload_asked = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    if _wait_port(listen, 30) and not quiet:
        print(
            f"agentgate: data plane on http://{listen}  admin on http://{admin_listen}", flush=True
        )
    code = 0
    try:
        while not stopping:
            if reload_asked:
                reload_asked = False
                try:
                    load_config(path)
                except ConfigError as e:
                    log.error("SIGHUP: config refused, the running config stays: %s", e)
                    print(f"agentgate: reload refused: {e}", file=sys.stderr, flush=True)
                else:
                    os.utime(reload_file)  # workers poll this stamp and swap their engine
            if data.poll() is not None:
                code = data.returncode or 1
                break
            time.sleep(0.1)
    finally:
        # granian drains in-flight requests on SIGINT before its workers exit
        for c in reversed(children):
            if c.poll() is None:
                c.send_signal(signal.SIGINT)
        for c in reversed(children):
            try:
                c.wait(35)
            except subprocess.TimeoutExpired:
                c.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def build_parser() -> argparse.ArgumentParser:
    """The `agentgate` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="agentgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", required=True, help="gateway config file (YAML)")
    s.add_argument("--workers", type=int, default=1, help="data-plane worker processes")
    s.add_argument("--listen", help="data-plane HOST:PORT (overrides the config)")
    s.add_argument("--admin-listen", help="admin HOST:PORT (overrides the config)")
    s.add_argument("--quiet", action="store_true", help="do not print the URLs")
    from agentgate import cli_control  # control-plane commands (admin, keys, template, …)

    cli_control.add_commands(sub)
    from agentgate import cli_security  # secrets, privacy, backup

    cli_security.add_commands(sub)
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
        return serve(args.config, args.workers, args.listen, args.admin_listen, args.quiet)
    from agentgate import cli_alerts, cli_control, cli_security, cli_state

    code = cli_control.run(args)
    if code is None:
        code = cli_security.run(args)
    if code is None:
        code = cli_state.run(args)
    if code is None:
        code = cli_alerts.run(args)
    return 2 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
