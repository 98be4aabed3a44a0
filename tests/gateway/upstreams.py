"""Real HTTP upstreams for the gateway tests: an aiohttp.web app served from a background thread.

One server answers every behaviour by path, so a test picks a behaviour by URL:
`/echo/...` (anything not listed below also echoes), `/size/<n>`, `/sse`, `/slow-first`,
`/slow-chunks`, `/flaky`, `/reset`, `/hang`, `/upload`, `/health` (toggle with `.healthy`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web


def closed_port() -> int:
    """A TCP port nothing listens on (it was free a moment ago): for connect-refused cases."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    """An upstream HTTP server on a free port, running in its own thread and event loop."""

    def __init__(self, name: str = "up") -> None:
        self.name = name
        self.port = 0  # bound at start
        self.url = ""
        self.healthy = True
        self.hits: Counter[str] = Counter()
        self.health_hits = 0
        self.failures_left: dict[str, int] = {}
        self.first_chunk: dict[str, threading.Event] = {}
        self.disconnected: dict[str, threading.Event] = {}
        self.finished: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def event(self, table: dict[str, threading.Event], key: str) -> threading.Event:
        """The (created on demand) event for `key` in one of the event tables."""
        return table.setdefault(key, threading.Event())

    # ---- lifecycle ----
    def start(self) -> Upstream:
        """Start serving; returns when the port accepts connections."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application(client_max_size=1024**3)
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            self.port = int(server.sockets[0].getsockname()[1])
            self.url = f"http://127.0.0.1:{self.port}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"upstream-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # ---- behaviours ----
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        head = path.split("/", 2)[1] if path != "/" else ""
        if head == "health":
            self.health_hits += 1
            return web.Response(status=200 if self.healthy else 503, text=self.name)
        self.hits[request.query.get("key", path)] += 1
        handler = {
            "size": self._size,
            "sse": self._sse,
            "slow-first": self._slow_first,
            "slow-chunks": self._slow_chunks,
            "flaky": self._flaky,
            "reset": self._reset,
            "hang": self._hang,
            "upload": self._upload,
        }.get(head, self._echo)
        return await handler(request)

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        data: dict[str, Any] = {
            "upstream": self.name,
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "query": request.query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_b64": base64.b64encode(body).decode(),
            "body_len": len(body),
        }
        status = int(request.query.get("status", "200"))
        return web.json_response(data, status=status, headers={"X-Upstream": self.name})

    async def _size(self, request: web.Request) -> web.StreamResponse:
        n = int(request.path.split("/")[2])
        return web.Response(body=b"x" * n, content_type="application/octet-stream")

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "sse")
        events = int(request.query.get("events", "3"))
        delay = float(request.query.get("delay", "0.05"))
        wait_for = request.query.get("wait")  # hold event 2+ until the test sets this event
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(events):
            if i == 1 and wait_for is not None:
                ev = self.event(self.first_chunk, wait_for)
                await asyncio.to_thread(ev.wait, 10)
            elif i:
                await asyncio.sleep(delay)
            await resp.write(f"id: {i}\ndata: event {i}\n\n".encode())
        self.finished[key] = time.monotonic()
        await resp.write_eof()
        return resp

    async def _slow_first(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("delay", "1")))
        return web.Response(text="late")

    async def _slow_chunks(self, request: web.Request) -> web.StreamResponse:
        chunks = int(request.query.get("chunks", "3"))
        delay = float(request.query.get("delay", "1"))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for i in range(chunks):
            if i:
                await asyncio.sleep(delay)
            await resp.write(f"chunk{i}\n".encode())
        await resp.write_eof()
        return resp

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "flaky")
        left = self.failures_left.setdefault(key, int(request.query.get("fail", "1")))
        await request.read()
        if left > 0:
            self.failures_left[key] = left - 1
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            if request.query.get("mode") == "reset":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            return web.Response(
                status=int(request.query.get("status", "503")), text="flaky", headers=headers
            )
        return web.Response(text=f"ok after {self.hits[key] - 1} failures")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "hang")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        try:
            for _ in range(400):
                await resp.write(b"tick\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            self.event(self.disconnected, key).set()
            raise
        return resp

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "upload")
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            if n == 0:
                self.event(self.first_chunk, key).set()
            h.update(chunk)
            n += len(chunk)
        return web.json_response({"len": n, "sha256": h.hexdigest()})
