"""Live store → gateway sync: agents made by the factory and API keys reach every worker.

Each gateway worker polls the store every `interval` (25 ms) with one cheap read of two
counters (`keys_version`, `agents_version`, both bumped in the same transaction as the change).
When either moved, or a key's expiry / rotation overlap passed (`next_change_at`), it reads the
routable agents and the valid keys and installs the merged config:

    config-file agents/routes/keys  +  store agents (pool `<tenant>/<agent>`, routes
    `<tenant>/<agent>/<n>` under `/t/<tenant>/agents/<agent>`)  +  store keys

through the gateway's own install step (`Engine.replace` on the same core, so breakers, budgets
and queues of unchanged pools carry over, plus fresh upstream pools and health checks). A config
file reload goes through the same merge, so file and store never drop each other's parts. The
config file wins on a name clash. Draining agents keep their pool but lose their routes; while
any exist, the worker reports its in-flight count per draining agent to the store, which is
what lets the factory delete them.

Enable it with `AGENTGATE_DATABASE_URL` (postgresql://… or sqlite:///path) or
`AGENTGATE_DATA_DIR` (SQLite file `<dir>/agentgate.db`); `agentgate serve` passes its
environment to the workers. The gateway calls `start_sync(self, loop)` once per worker in
`__rsgi_init__`, after its first install.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from agentgate.config import Agent as PoolConfig
from agentgate.config import ApiKey, GatewayConfig, Route
from agentgate.errors import AgentgateError
from agentgate.runtime.factory import gateway_parts
from agentgate.store import RoutableAgent, Store, open_store
from agentgate.tenancy import key_snapshot

__all__ = [
    "ENV_DATABASE_URL",
    "ENV_DATA_DIR",
    "StoreState",
    "StoreSync",
    "merge_config",
    "start_sync",
    "store_location",
]

ENV_DATABASE_URL = "AGENTGATE_DATABASE_URL"
ENV_DATA_DIR = "AGENTGATE_DATA_DIR"
POLL_INTERVAL = 0.025
REPORT_EVERY = 0.1
log = logging.getLogger("agentgate.gateway.sync")

Parts = tuple[str, PoolConfig, list[Route]]


class StoreState:
    """What the store contributes to a worker's config: agent pools, routes and keys."""

    __slots__ = ("draining", "keys", "pools", "routes")

    def __init__(self) -> None:
        self.pools: dict[str, PoolConfig] = {}
        self.routes: list[Route] = []
        self.keys: list[ApiKey] = []
        self.draining: dict[str, str] = {}  # agent id -> gateway pool name


def merge_config(base: GatewayConfig, state: StoreState) -> GatewayConfig:
    """The config file's settings plus the store's agents, routes and keys (file wins)."""
    agents = dict(base.agents)
    for name, pool in state.pools.items():
        agents.setdefault(name, pool)
    ids = set(base.route_ids())
    routes = list(base.routes)
    for r in state.routes:
        if r.agent in base.agents or r.id in ids:
            continue  # a file agent of the same name: the file's routes decide
        routes.append(r)
    have_ids = {k.id for k in base.auth.api_keys}
    have_hashes = {k.hash for k in base.auth.api_keys}
    keys = list(base.auth.api_keys)
    keys.extend(k for k in state.keys if k.id not in have_ids and k.hash not in have_hashes)
    return base.model_copy(
        update={
            "agents": agents,
            "routes": tuple(routes),
            "auth": base.auth.model_copy(update={"api_keys": tuple(keys)}),
        }
    )


class StoreSync:
    """Polls the store and installs merged configs through `install` (one per worker)."""

    def __init__(
        self,
        store: Store,
        install: Callable[[GatewayConfig], Awaitable[None]],
        base: GatewayConfig,
        *,
        stats: Callable[[], Mapping[str, Any]] | None = None,
        interval: float = POLL_INTERVAL,
        gateway_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.base = base
        self.state = StoreState()
        self.interval = interval
        self.gateway_id = gateway_id or f"{socket.gethostname()}:{os.getpid()}"
        self.installs = 0
        self._install = install
        self._stats = stats
        self._clock = clock
        self._versions: tuple[int, int] | None = None
        self._next_change: float | None = None
        self._parts: dict[tuple[str, int, str, str], Parts] = {}
        self._reported = 0.0

    def merge(self, base: GatewayConfig) -> GatewayConfig:
        """Remember `base` (the file's config) and return it merged with the store's state."""
        self.base = base
        return merge_config(base, self.state)

    def _agent_parts(self, r: RoutableAgent) -> Parts | None:
        a = r.agent
        key = (a.id, a.revision, a.template_digest, r.tenant_name)
        hit = self._parts.get(key)
        if hit is None:
            try:
                hit = gateway_parts(r.tenant_name, a.name, r.template_body, a.params, a.routes)
            except AgentgateError as e:
                log.error("agent %s/%s left out of the gateway: %s", r.tenant_name, a.name, e)
                return None
            self._parts[key] = hit
        return hit

    async def load(self) -> StoreState:
        """Read the routable agents and valid keys (versions read first, so a change racing
        with this read is seen again at the next poll)."""
        self._versions = await self.store.system.agents.versions()
        snap = await key_snapshot(self.store, now=self._clock())
        rows = await self.store.system.agents.routable()
        state = StoreState()
        live: set[tuple[str, int, str, str]] = set()
        for r in rows:
            parts = self._agent_parts(r)
            if parts is None:
                continue
            a = r.agent
            live.add((a.id, a.revision, a.template_digest, r.tenant_name))
            name, pool, routes = parts
            state.pools[name] = pool
            if a.state == "draining":
                state.draining[a.id] = name
            else:
                state.routes.extend(routes)
        self._parts = {k: v for k, v in self._parts.items() if k in live}
        state.keys = [
            ApiKey(id=k["id"], hash=k["hash"], tenant=k["tenant"], roles=tuple(k["roles"]))
            for k in snap.keys
        ]
        self._next_change = snap.next_change_at
        self.state = state
        return state

    async def refresh(self) -> None:
        """Load the store's state and install it merged with the current base config."""
        await self.load()
        await self._install(self.merge(self.base))
        self.installs += 1

    def _due(self, versions: tuple[int, int]) -> bool:
        if versions != self._versions:
            return True
        nxt = self._next_change
        return nxt is not None and self._clock() >= nxt

    async def poll_once(self) -> bool:
        """One tick: refresh if anything changed; report drains. True when it installed."""
        changed = self._due(await self.store.system.agents.versions())
        if changed:
            await self.refresh()
        if self.state.draining and self._stats is not None:
            now = self._clock()
            if changed or now - self._reported >= REPORT_EVERY:
                await self.report(now)
        return changed

    async def report(self, now: float | None = None) -> None:
        """Tell the store how many requests each draining agent still has in flight here."""
        if self._stats is None:
            return
        t = self._clock() if now is None else now
        stats = self._stats()
        counts = {
            aid: int((stats.get(name) or {}).get("in_flight", 0))
            for aid, name in self.state.draining.items()
        }
        await self.store.system.agents.report_inflight(self.gateway_id, counts, t)
        self._reported = t

    async def run(self) -> None:
        """Poll until cancelled; errors are logged and the running config stays."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a store hiccup must never take the data plane down
                log.error("store sync failed, keeping the running config: %s", e)


class _Gateway(Protocol):
    """The part of `agentgate.gateway.app.Gateway` the hook uses."""

    engine: Any
    _tasks: list[asyncio.Task[None]]

    async def _install(self, cfg: GatewayConfig) -> None: ...


def store_location(environ: Mapping[str, str] | None = None) -> tuple[str | None, Path] | None:
    """(database_url, data_dir) from the environment, or None when sync is not configured."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_DATABASE_URL) or None
    data_dir = env.get(ENV_DATA_DIR) or None
    if url is None and data_dir is None:
        return None
    return url, Path(data_dir or ".")


def start_sync(
    gateway: _Gateway,
    loop: asyncio.AbstractEventLoop,
    *,
    database_url: str | None = None,
    data_dir: str | Path | None = None,
    interval: float = POLL_INTERVAL,
) -> StoreSync | None:
    """Hook for `Gateway.__rsgi_init__` (after the first install): open the store, install the
    store's agents and keys, route every later install through the merge, start polling.

    Location from the arguments, else from `AGENTGATE_DATABASE_URL` / `AGENTGATE_DATA_DIR`;
    returns None (and does nothing) when neither is set.
    """
    if database_url is None and data_dir is None:
        where = store_location()
        if where is None:
            return None
        database_url, data_dir = where
    store = loop.run_until_complete(open_store(database_url, Path(data_dir or ".")))
    engine = gateway.engine
    original = gateway._install

    def stats() -> Mapping[str, Any]:
        current = gateway.engine
        return {} if current is None else current.stats()

    sync = StoreSync(store, original, engine.config, stats=stats, interval=interval)

    async def install(cfg: GatewayConfig) -> None:
        # config-file reloads keep the store's agents: same merge as the poller's installs
        await original(sync.merge(cfg))

    # the gateway's install step is taken over on this instance only
    gateway._install = install  # type: ignore[method-assign]
    loop.run_until_complete(sync.refresh())
    gateway._tasks.append(loop.create_task(sync.run()))
    log.info("store sync on (%s)", database_url or f"sqlite in {data_dir}")
    return sync
