"""Real upstreams for the gateway tests, each served from a background thread.

`Upstream` is an aiohttp.web app on TCP, TLS or a Unix socket. One server answers every
behaviour by path, so a test picks a behaviour by URL: `/echo/...` (anything not listed below
also echoes; `?respond_header=Name:value` adds a response header), `/size/<n>`, `/sse`,
`/slow-first`, `/slow-chunks`, `/flaky`, `/reset`, `/hang`, `/upload`, `/ws` (WebSocket echo),
`/health` (toggle with `.healthy`). With `normalise=True` it resolves paths as nginx does
(percent-decoding, `%2F` included, merged slashes, no dot-segments) and answers a secret under
`/private/`. It counts requests in flight (`max_in_flight`).

`ScriptedUpstream` is a raw TCP server whose connections each run a test's own script, for
what a well-behaved server never does: malformed answers, closing kept-alive connections,
watching for the gateway going away.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import posixpath
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

SECRET = "the-private-secret"
"""What a normalising upstream answers under /private/: a test that reads it got past auth."""

# an upstream that accepts what the gateway's own head limits let through
_BIG_HEADS = {"max_line_size": 256 * 1024, "max_field_size": 256 * 1024}


def closed_port() -> int:
    """A TCP port nothing listens on (it was free a moment ago): for connect-refused cases."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """A server on its own event loop in a daemon thread: `_open()` binds it (in that loop),
    `_close()` releases it once `stop()` ends the loop."""

    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        return None

    def _serve_in_thread(self, name: str) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._open())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{name} did not start")

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def nginx_path(raw: str) -> str:
    """The resource a normalising server (nginx's defaults) serves for a raw request path."""
    path = re.sub("/+", "/", unquote(raw.split("?", 1)[0]))
    resolved = posixpath.normpath(path)  # removes `.` and `..` segments, never above the root
    if path.endswith("/") and resolved != "/":
        resolved += "/"
    return resolved


class Upstream(LoopThread):
    """An upstream HTTP server on a free port (or a Unix socket, or TLS), in its own thread."""

    def __init__(
        self,
        name: str = "up",
        *,
        unix: str | None = None,
        tls: ssl.SSLContext | None = None,
        normalise: bool = False,
    ) -> None:
        self.name = name
        self.unix = unix
        self.tls = tls
        self.normalise = normalise
        self.port = 0  # bound at start
        self.url = ""
        self.healthy = True
        self.in_flight = 0
        self.max_in_flight = 0
        self.ws_sessions = 0
        self.hits: Counter[str] = Counter()
        self.health_hits = 0
        self.failures_left: dict[str, int] = {}
        self.first_chunk: dict[str, threading.Event] = {}
        self.disconnected: dict[str, threading.Event] = {}
        self.finished: dict[str, float] = {}
        self._runner: web.AppRunner | None = None

    def event(self, table: dict[str, threading.Event], key: str) -> threading.Event:
        """The (created on demand) event for `key` in one of the event tables."""
        return table.setdefault(key, threading.Event())

    # ---- lifecycle ----
    def start(self) -> Upstream:
        """Start serving; returns when the port accepts connections."""
        self._serve_in_thread(f"upstream-{self.name}")
        return self

    async def _open(self) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, **_BIG_HEADS)
        await self._runner.setup()
        if self.unix is not None:
            await web.UnixSite(self._runner, self.unix).start()
            self.url = f"unix:{self.unix}"
            return
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = int(server.sockets[0].getsockname()[1])
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- behaviours ----
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.normalise:
            path = nginx_path(request.raw_path)
            if path.startswith("/private/"):
                return web.json_response({"secret": SECRET, "path": path})
        head = path.split("/", 2)[1] if path != "/" else ""
        if head == "health":
            self.health_hits += 1
            return web.Response(status=200 if self.healthy else 503, text=self.name)
        self.hits[request.query.get("key", path)] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._behaviour(head)(request)
        finally:
            self.in_flight -= 1

    def _behaviour(self, head: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return {
            "size": self._size,
            "sse": self._sse,
            "slow-first": self._slow_first,
            "slow-chunks": self._slow_chunks,
            "flaky": self._flaky,
            "reset": self._reset,
            "hang": self._hang,
            "upload": self._upload,
            "ws": self._ws,
        }.get(head, self._echo)

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
        headers = {"X-Upstream": self.name}
        for h in request.query.getall("respond_header", []):
            name, _, value = h.partition(":")
            headers[name] = value.strip()
        return web.json_response(data, status=status, headers=headers)

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

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_sessions += 1
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"{self.name}: {msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws


class RawConn:
    """One connection to a `ScriptedUpstream`, as its script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int):
        self.reader = reader
        self.writer = writer
        self.n = n  # 0 for the server's first connection, then 1, 2, …

    async def request(self) -> bytes | None:
        """The next request's head (its Content-Length body is read too); None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m:
            await self.reader.readexactly(int(m.group(1)))
        return head

    async def send(self, data: bytes) -> None:
        """Write `data` and flush it."""
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Return once the peer closed (or reset) the connection."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass


Script = Callable[[RawConn], Awaitable[None]]
"""What a `ScriptedUpstream` does with one connection; the connection closes when it returns."""


def response(body: bytes = b"ok", status: str = "200 OK", extra: bytes = b"") -> bytes:
    """A well-formed keep-alive HTTP/1.1 response."""
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body


class ScriptedUpstream(LoopThread):
    """A raw TCP upstream whose every connection runs `script` (set by the test) in its own
    thread and loop; `event(name)` is a threading.Event scripts set for the test to wait on."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.connections = 0
        self.events: dict[str, threading.Event] = {}
        self.port = 0
        self.url = ""
        self._server: asyncio.Server

    def event(self, name: str) -> threading.Event:
        """The (created on demand) event `name`."""
        return self.events.setdefault(name, threading.Event())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RawConn(reader, writer, self.connections)
        self.connections += 1
        try:
            if self.script is not None:
                await self.script(conn)
        except ConnectionError:
            pass
        finally:
            writer.close()

    def start(self) -> ScriptedUpstream:
        """Start serving on a free port; returns when it accepts connections."""
        self._serve_in_thread("scripted-upstream")
        return self

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    async def _close(self) -> None:
        self._server.close()
