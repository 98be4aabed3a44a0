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

Replicas on other nodes (the Ray backend) get the same API from their node's supervisor, whose
store is `RemoteCheckpoints`: the same two calls over TCP to a `CheckpointRelay` that the control
plane serves, so a replica that Ray moves to another node resumes from the control plane's
checkpoint, not from a node-local copy. Each agent's bearer token is an HMAC of its ids under a
key made when the relay starts, so the relay holds no table and a token opens one agent only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from agentgate.errors import AgentgateError, Conflict
from agentgate.store.runtime import Checkpoint, RuntimeRepo

__all__ = [
    "CheckpointRelay",
    "CheckpointStore",
    "CheckpointUnavailable",
    "RemoteCheckpoints",
    "StateServer",
    "StoreCheckpoints",
]

MAX_CHECKPOINT = 4 * 2**20


class CheckpointUnavailable(AgentgateError):
    """The control plane's checkpoints could not be reached from this node."""

    status = 503
    title = "Checkpoints unavailable"


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

    async def _who(self, request: web.Request) -> tuple[str, str] | web.Response:
        """(tenant id, agent id) of the caller, or the problem to answer."""
        name = request.transport.get_extra_info("sockname") if request.transport else None
        who = await self.owner(str(name), self.bind_timeout) if name else None
        if who is None:
            return _problem(409, "Not bound", "this replica is not serving an agent yet")
        return who

    async def _get(self, request: web.Request) -> web.Response:
        who = await self._who(request)
        if isinstance(who, web.Response):
            return who
        try:
            cp = await self.store.load(*who)
        except CheckpointUnavailable as e:
            return _problem(e.status, e.title, e.detail)
        if cp is None:
            return _json({"version": 0, "data": None}, 404)
        return _json({"version": cp.version, "data": cp.data, "updated_at": cp.updated_at})

    async def _put(self, request: web.Request) -> web.Response:
        who = await self._who(request)
        if isinstance(who, web.Response):
            return who
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
        except CheckpointUnavailable as e:
            return _problem(e.status, e.title, e.detail)
        return _json({"version": cp.version, "updated_at": cp.updated_at})


class CheckpointRelay(StateServer):
    """The state API on TCP for replicas on other nodes, each agent known by its bearer token."""

    def __init__(self, store: CheckpointStore) -> None:
        super().__init__(store, _no_owner)
        self._key = secrets.token_bytes(32)
        self.url = ""

    def token(self, tenant_id: str, agent_id: str) -> str:
        """The bearer token that opens `agent_id`'s checkpoints (and no other agent's)."""
        return f"{tenant_id}:{agent_id}:{self._mac(tenant_id, agent_id)}"

    def _mac(self, tenant_id: str, agent_id: str) -> str:
        msg = f"{tenant_id}\0{agent_id}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    async def listen(self, host: str) -> str:
        """Serve on `host`, a free port; returns the base URL."""
        await self.start()
        sock = socket.create_server((host, 0))  # bound here, so the port is known
        await web.SockSite(self.runner, sock).start()
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        return self.url

    async def _who(self, request: web.Request) -> tuple[str, str] | web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        tenant_id, _, rest = token.partition(":")
        agent_id, _, mac = rest.partition(":")
        if (
            scheme.lower() == "bearer"
            and mac
            and hmac.compare_digest(mac, self._mac(tenant_id, agent_id))
        ):
            return tenant_id, agent_id
        return _problem(401, "Unauthorized", "a valid agent token is required")


async def _no_owner(path: str, within: float) -> tuple[str, str] | None:
    return None


class RemoteCheckpoints:
    """`CheckpointStore` through a `CheckpointRelay`: the agent is the token's."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/checkpoint"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def load(self, tenant_id: str, agent_id: str) -> Checkpoint | None:
        """The agent's latest checkpoint, or None."""
        try:
            async with self._client().get(self.url) as r:
                if r.status == 404:
                    return None
                doc = await _answer(r)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise CheckpointUnavailable(f"checkpoint relay unreachable ({type(e).__name__})") from e
        return Checkpoint(doc["version"], doc["data"], doc["updated_at"])

    async def save(
        self, tenant_id: str, agent_id: str, data: Any, expected_version: int | None
    ) -> Checkpoint:
        """Save as the next version; `Conflict` when `expected_version` is stale."""
        headers = {} if expected_version is None else {"If-Match": f'"{expected_version}"'}
        body = orjson.dumps(data)
        try:
            async with self._client().put(self.url, data=body, headers=headers) as r:
                if r.status == 412:
                    doc = await r.json(content_type=None)
                    raise Conflict(doc.get("detail", "version conflict"))
                doc = await _answer(r)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise CheckpointUnavailable(f"checkpoint relay unreachable ({type(e).__name__})") from e
        return Checkpoint(doc["version"], data, doc["updated_at"])

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()


async def _answer(r: aiohttp.ClientResponse) -> dict[str, Any]:
    if r.status != 200:
        # the relay's problem detail names no secret; the token is never echoed
        raise CheckpointUnavailable(f"checkpoint relay answered {r.status}: {await r.text()}")
    doc: dict[str, Any] = await r.json(content_type=None)
    return doc
