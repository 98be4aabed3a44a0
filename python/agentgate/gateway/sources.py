"""Where the running config comes from: the config file, plus sources that add to it.

The file gives the base config. A `ConfigSource` (the control plane's store of agents and API
keys is one) adds agents, routes and keys on top and says when its part changed; the gateway
then merges everything again and swaps it into the core. The data plane only knows this
protocol, never the store behind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from agentgate.config import Agent, ConfigError, GatewayConfig, Route, load_config

__all__ = ["ConfigFile", "ConfigSource", "FixedSource"]

log = logging.getLogger("agentgate.gateway")

# read once, when `agentgate serve` starts (listeners bound, store opened, bus and Redis
# connected): a reload keeps the running values and says so
RESTART_ONLY = ("listen", "admin_listen", "database_url", "data_dir", "redis", "bus")


class ConfigSource(Protocol):
    """Adds its part (agents, routes, keys) to a config and reports changes of that part."""

    def contribute(self, base: GatewayConfig) -> GatewayConfig:
        """`base` with this source's part merged in (the base wins on a name clash)."""
        ...

    async def run(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Watch for changes until cancelled; await `changed()` after each one."""
        ...


class ConfigFile:
    """The config file: loaded, validated, and watched for changes (mtime, or `reload()`)."""

    def __init__(self, path: str | Path, interval: float = 0.5) -> None:
        self.path = str(Path(path).resolve())
        self.interval = interval
        self.config = load_config(self.path)
        self._stamp = self._mtime()

    def _mtime(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return 0

    def reload(self) -> bool:
        """Load the file again; an invalid file is refused (logged) and the old config stays.
        Fields in `RESTART_ONLY` keep their running values (a warning names the changed ones),
        so `config` stays the config in force."""
        self._stamp = self._mtime()
        try:
            new = load_config(self.path)
        except ConfigError as e:
            log.error("config reload refused, keeping the running config: %s", e)
            return False
        stale = [f for f in RESTART_ONLY if getattr(new, f) != getattr(self.config, f)]
        if stale:
            log.warning(
                "%s: %s changed: in force after a restart, the running values stay (the rest of"
                " the file applies now)",
                self.path,
                ", ".join(stale),
            )
            new = new.model_copy(update={f: getattr(self.config, f) for f in stale})
        self.config = new
        return True

    async def watch(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Reload when the file's mtime moves; await `changed()` after a valid reload."""
        while True:
            await asyncio.sleep(self.interval)
            if self._mtime() != self._stamp and self.reload():
                await changed()


class FixedSource:
    """Agents and routes the process itself serves (e.g. the message bus behind `/bus`),
    added unless the config file defines an agent or route of the same name, which wins."""

    def __init__(self, agents: dict[str, Agent], routes: list[Route]) -> None:
        self.agents = agents
        self.routes = routes

    def contribute(self, base: GatewayConfig) -> GatewayConfig:
        """`base` plus these agents and routes where it has none of the same name."""
        agents = dict(base.agents)
        for name, a in self.agents.items():
            agents.setdefault(name, a)
        ids = set(base.route_ids())
        routes = list(base.routes)
        routes.extend(r for r in self.routes if r.id not in ids and r.agent not in base.agents)
        return base.model_copy(update={"agents": agents, "routes": tuple(routes)})

    async def run(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Never changes."""
        await asyncio.Event().wait()
