"""The replicas' state API: versioned JSON checkpoints per agent, with optimistic concurrency.

A replica finds it in `AGENTGATE_STATE_URL` = `unix:/…/state.sock` (a Unix socket, so it works
with `network: none`). Each replica has its own socket, so the supervisor knows which agent is
asking without any token. A warm replica starts before it belongs to an agent: its requests wait
until it is claimed (up to `bind_timeout`, then 409), so an agent can load its checkpoint in the
background right after start and resume wherever it is claimed:

    GET  /checkpoint   → 200 {"version": 3, "data": {...}}   (404 {"version": 0} before the first)
    PUT  /checkpoint   body: any JSON; header If-Match: "3" (or "0" for the first save)
                       → 200 {"version": 4};  412 problem+json when the stored version differs
                       (no If-Match: unconditional)

Checkpoints go through the small `CheckpointStore` protocol; `StoreCheckpoints` keeps them in
the control-plane store (table `agent_checkpoints`). The event-sourced state store (issue 12)
can implement the same two methods.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from agentgate.errors import Conflict
from agentgate.store.runtime import Checkpoint, RuntimeRepo

__all__ = ["CheckpointStore", "StateServer", "StoreCheckpoints"]

MAX_CHECKPOINT = 4 * 2**20


class CheckpointStore(Protocol):
    """Where checkpoints live."""

    async def load(self, tenant_id: str, agent_id: str) -> Checkpoint | None:
        """The agent's latest checkpoint, or None."""
        ...

    async def save(
        self, tenant_id: str, agent_id: str, data: Any, expected_version: int | None
    ) -> Checkpoint:
        """Save as the next version; `Conflict` when `expected_version` is stale."""
        ...


class StoreCheckpoints:
    """`CheckpointStore` on the control-plane store."""

    def __init__(self, repo: RuntimeRepo) -> None:
        self.repo = repo

    async def load(self, tenant_id: str, agent_id: str) -> Checkpoint | None:
        """The agent's latest checkpoint, or None."""
        return await self.repo.load_checkpoint(tenant_id, agent_id)

    async def save(
        self, tenant_id: str, agent_id: str, data: Any, expected_version: int | None
    ) -> Checkpoint:
        """Save as the next version; `Conflict` when `expected_version` is stale."""
        return await self.repo.save_checkpoint(tenant_id, agent_id, data, expected_version)


def _json(data: Any, status: int = 200, ctype: str = "application/json") -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=ctype)


def _problem(status: int, title: str, detail: str) -> web.Response:
    return _json(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status,
        "application/problem+json",
    )


class StateServer:
    """One aiohttp app, one Unix site per replica; `owner(socket path)` → (tenant, agent)."""

    def __init__(
        self,
        store: CheckpointStore,
        owner: Callable[[str, float], Awaitable[tuple[str, str] | None]],
        bind_timeout: float = 600.0,
    ) -> None:
        self.store = store
        self.owner = owner
        self.bind_timeout = bind_timeout
        self.app = web.Application(client_max_size=MAX_CHECKPOINT)
        self.app.router.add_get("/checkpoint", self._get)
        self.app.router.add_put("/checkpoint", self._put)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.sites: dict[str, web.UnixSite] = {}
        self._started = False

    async def start(self) -> None:
        """Prepare the runner (sites are added per replica)."""
        if not self._started:
            await self.runner.setup()
            self._started = True

    async def add(self, path: Path, uid: int | None) -> None:
        """Serve the API on `path`, connectable only by `uid` (and root)."""
        await self.start()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        site = web.UnixSite(self.runner, str(path))
        await site.start()
        os.chmod(path, 0o600)
        if uid is not None:
            os.chown(path, uid, uid)
        self.sites[str(path)] = site

    async def remove(self, path: Path) -> None:
        """Stop serving on `path`."""
        site = self.sites.pop(str(path), None)
        if site is not None:
            await site.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def close(self) -> None:
        """Stop every site."""
        if self._started:
            await self.runner.cleanup()
        self.sites.clear()

    async def _who(self, request: web.Request) -> tuple[str, str] | None:
        name = request.transport.get_extra_info("sockname") if request.transport else None
        return await self.owner(str(name), self.bind_timeout) if name else None

    async def _get(self, request: web.Request) -> web.Response:
        who = await self._who(request)
        if who is None:
            return _problem(409, "Not bound", "this replica is not serving an agent yet")
        cp = await self.store.load(*who)
        if cp is None:
            return _json({"version": 0, "data": None}, 404)
        return _json({"version": cp.version, "data": cp.data, "updated_at": cp.updated_at})

    async def _put(self, request: web.Request) -> web.Response:
        who = await self._who(request)
        if who is None:
            return _problem(409, "Not bound", "this replica is not serving an agent yet")
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError as e:
            return _problem(400, "Bad JSON", f"the body is not JSON: {e}")
        expected: int | None = None
        match = request.headers.get("If-Match")
        if match is not None:
            try:
                expected = int(match.strip().strip('"'))
            except ValueError:
                return _problem(400, "Bad If-Match", "If-Match must be a version number")
        try:
            cp = await self.store.save(who[0], who[1], data, expected)
        except Conflict as e:
            return _problem(412, "Version conflict", str(e))
        return _json({"version": cp.version, "updated_at": cp.updated_at})
