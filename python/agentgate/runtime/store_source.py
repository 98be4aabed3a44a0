"""The store's agents and API keys as a config source of the gateway.

The gateway polls the store every `interval` (25 ms) with one cheap read of two counters
(`keys_version`, `agents_version`, both bumped in the same transaction as the change). When
either moved, or a key's expiry / rotation overlap passed (`next_change_at`), it reads the
routable agents and the valid keys; the gateway merges them over the config file:

    config-file agents/routes/keys  +  store agents (pool `<tenant>/<agent>`, routes
    `<tenant>/<agent>/<n>` under `/t/<tenant>/agents/<agent>`)  +  store keys

The config file wins on a name clash. Draining agents keep their pool but lose their routes;
while any exist, the source reports the gateway's in-flight count per draining agent to the
store, which is what lets the factory delete them.

A change committed by this process (the control plane runs in the gateway's process: an agent
created, a replica ready, a key revoked) pokes the source at once through the database's commit
listeners, so it reaches the data plane without waiting for the next poll.

With a bus, `follow(feed)` subscribes to the platform changes (`agentgate.bus.changes`) and
polls at once on every agent, key or tenant change published by any host's control plane, so
a key revoked on one host is refused on every host within milliseconds; polling goes on (every
`FALLBACK_INTERVAL` then) and covers a change the bus lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentgate.bus.changes import ChangeFeed
from agentgate.config import Agent as PoolConfig
from agentgate.config import ApiKey, GatewayConfig, Route
from agentgate.errors import AgentgateError
from agentgate.runtime.factory import gateway_parts
from agentgate.runtime.spec import is_process
from agentgate.store import RoutableAgent, Store
from agentgate.tenancy import key_snapshot

__all__ = [
    "FALLBACK_INTERVAL",
    "FOLLOWED",
    "POLL_INTERVAL",
    "StoreSource",
    "StoreState",
    "merge_config",
]

POLL_INTERVAL = 0.025
FALLBACK_INTERVAL = 0.25
"""Polling interval when a bus delivers the changes (the fallback still meets the 1 s bound)."""
FOLLOWED = frozenset({"agent", "key", "tenant", "route"})
"""Change kinds that alter what the store contributes to the gateway's config."""
RESUBSCRIBE_AFTER = 1.0
REPORT_EVERY = 0.1
log = logging.getLogger("agentgate.runtime.store_source")

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


class StoreSource:
    """The store's agents and keys as a `ConfigSource` of the gateway, polled for changes."""

    def __init__(
        self,
        store: Store,
        *,
        in_flight: Callable[[], Mapping[str, int]] | None = None,
        interval: float = POLL_INTERVAL,
        gateway_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.state = StoreState()
        self.interval = interval
        self.gateway_id = gateway_id or f"{socket.gethostname()}:{os.getpid()}"
        self.loads = 0
        self._in_flight = in_flight
        self._clock = clock
        self._versions: tuple[int, int] | None = None
        self._next_change: float | None = None
        self._parts: dict[tuple[Any, ...], Parts] = {}
        self._reported = 0.0
        self._poked = asyncio.Event()

    def contribute(self, base: GatewayConfig) -> GatewayConfig:
        """`base` (the file's config) merged with the store's agents, routes and keys."""
        return merge_config(base, self.state)

    def _agent_parts(self, r: RoutableAgent) -> Parts | None:
        a = r.agent
        key = _key(r)
        hit = self._parts.get(key)
        if hit is None:
            if is_process(r.template_body) and not r.endpoints and r.agent.state == "failed":
                return None  # a failed agent has no route; one starting or at zero activates
            try:
                hit = gateway_parts(
                    r.tenant_name,
                    a.name,
                    r.template_body,
                    a.params,
                    a.routes,
                    endpoints=r.endpoints,  # a process agent's ready replicas (`unix:/…`)
                )
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
        live: set[tuple[Any, ...]] = set()
        for r in rows:
            parts = self._agent_parts(r)
            if parts is None:
                continue
            a = r.agent
            live.add(_key(r))
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
        self.loads += 1
        return state

    def _due(self, versions: tuple[int, int]) -> bool:
        if versions != self._versions:
            return True
        nxt = self._next_change
        return nxt is not None and self._clock() >= nxt

    async def poll_once(self) -> bool:
        """One tick: reload if anything changed; report drains. True when the state changed."""
        changed = self._due(await self.store.system.agents.versions())
        if changed:
            await self.load()
        if self.state.draining and self._in_flight is not None:
            now = self._clock()
            if changed or now - self._reported >= REPORT_EVERY:
                await self.report(now)
        return changed

    async def report(self, now: float | None = None) -> None:
        """Tell the store how many requests each draining agent still has in flight here."""
        if self._in_flight is None:
            return
        t = self._clock() if now is None else now
        live = self._in_flight()
        counts = {aid: int(live.get(name, 0)) for aid, name in self.state.draining.items()}
        await self.store.system.agents.report_inflight(self.gateway_id, counts, t)
        self._reported = t

    def poke(self) -> None:
        """Poll now (e.g. the runtime just published a replica) instead of at the next tick."""
        self._poked.set()

    async def follow(self, feed: ChangeFeed, subscriber: str | None = None) -> None:
        """Poll at once on every followed platform change until cancelled; a bus failure is
        logged and the subscription retried (polling covers the gap)."""
        while True:
            try:
                sub = await feed.subscribe(subscriber or self.gateway_id, kinds=FOLLOWED)
                try:
                    async for _ in sub:
                        self.poke()
                finally:
                    await sub.close()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any bus failure: keep polling, subscribe again
                log.warning("platform changes unavailable, polling the store only: %s", e)
                await asyncio.sleep(RESUBSCRIBE_AFTER)

    async def run(self, changed: Callable[[], Awaitable[None]]) -> None:
        """Poll until cancelled (at once after this process commits a change), awaiting
        `changed()` after each change; errors are logged and the running config stays."""
        stop_listening = self.store.db.on_commit(self.poke)
        try:
            while True:
                # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancellation that
                # arrives as a poke sets the event, and the loop would wait another interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._poked.wait()
                self._poked.clear()
                try:
                    if await self.poll_once():
                        await changed()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a store hiccup must never take the data plane down
                    log.error("store sync failed, keeping the running config: %s", e)
        finally:
            stop_listening()


def _key(r: RoutableAgent) -> tuple[Any, ...]:
    """What an agent's gateway parts depend on (replica endpoints change without a revision)."""
    a = r.agent
    return (a.id, a.revision, a.template_digest, r.tenant_name, r.endpoints)
