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

from agentgate.config import ConfigError, GatewayConfig, load_config

__all__ = ["ConfigFile", "ConfigSource"]

log = logging.getLogger("agentgate.gateway")


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
        """Load the file again; an invalid file is refused (logged) and the old config stays."""
        self._stamp = self._mtime()
        try:
            self.config = load_config(self.path)
        except ConfigError as e:
            log.error("config reload refused, keeping the running config: %s", e)
            return False
        return True

    async def watch(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Reload when the file's mtime moves; await `changed()` after a valid reload."""
        while True:
            await asyncio.sleep(self.interval)
            if self._mtime() != self._stamp and self.reload():
                await changed()
