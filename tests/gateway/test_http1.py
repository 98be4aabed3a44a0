"""The lean HTTP/1.1 upstream client against real servers: aiohttp.web and byte-scripted TCP.

Every scenario runs on both the stdlib asyncio loop and uvloop (what granian uses).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from agentgate.gateway.http1 import (
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    FirstByteTimeout,
    Http1Client,
    Http1Pool,
    IdleTimeout,
    ProtocolError,
    ResetError,
    UpstreamError,
    UpstreamTimeout,
)

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def both_loops(
    fn: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[str], None]:
    """Turn a scenario into a test run once per event loop implementation."""

    def test(loop_name: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(asyncio.wait_for(fn(), 60))

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return pytest.mark.parametrize("loop_name", list(LOOPS))(test)


# --------------------------------------------------------------------------- servers


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A TCP server whose replies each test scripts byte for byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed_by_client = 0
        self.client_gone = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Raw:
        self.server = await asyncio.start_server(self._on, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def wait_client_closed(self, reader: asyncio.StreamReader) -> None:
        """Block until the client closes its side; count it."""
        while await reader.read(65536):
            pass
        self.closed_by_client += 1
        self.client_gone.set()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """One request head (without body)."""
    return await reader.readuntil(b"\r\n\r\n")


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request head and its Content-Length or chunked body."""
    head = await read_head(reader)
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                await reader.readuntil(b"\r\n")
                return head, body
            body += await reader.readexactly(n)
            await reader.readexactly(2)
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return head, await reader.readexactly(int(line.split(b":")[1]))
    return head, b""


def ok(body: bytes, extra: bytes = b"") -> bytes:
    """A keep-alive 200 with a Content-Length body."""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


class App:
    """An aiohttp.web upstream in the test's loop that records peers and uploads."""

    def __init__(self) -> None:
        self.peers: set[object] = set()
        self.uploaded: list[int] = []
        self.upload_te: list[str | None] = []
        self.sse_go = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> App:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/size/{n}", self.size)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/sse", self.sse)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def _peer(self, request: web.Request) -> None:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))

    async def echo(self, request: web.Request) -> web.Response:
        self._peer(request)
        body = await request.read()
        return web.Response(
            body=body,
            headers={"x-method": request.method, "x-path": request.path_qs, "x-b": "2"},
        )

    async def size(self, request: web.Request) -> web.Response:
        self._peer(request)
        return web.Response(body=b"z" * int(request.match_info["n"]))

    async def upload(self, request: web.Request) -> web.Response:
        self._peer(request)
        self.upload_te.append(request.headers.get("transfer-encoding"))
        n = 0
        async for chunk in request.content.iter_any():
            n += len(chunk)
        self.uploaded.append(n)
        return web.Response(text=str(n))

    async def sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        await self.sse_go.wait()
        await resp.write(b"data: two\n\n")
        await resp.write_eof()
        return resp


async def settle(cond: Callable[[], bool], rounds: int = 400) -> None:
    """Let the loop run until cond() holds (event driven, bounded; no timing asserted)."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


# --------------------------------------------------------------------------- basics


@both_loops
async def test_get_head_fields_and_fast_path_body() -> None:
    """Status, reason, ordered latin-1 headers; a small body arrives with the head."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        resp = await pool.request("GET", "/echo?q=1", [("x-a", "1")])
        assert resp.status == 200
        assert resp.reason == "OK"
        names = [n.lower() for n, _ in resp.headers]
        assert names.index("x-method") < names.index("x-path") < names.index("x-b")
        assert ("x-path", "/echo?q=1") in resp.headers
        assert resp.body_complete
        assert resp.body_bytes() == b""
        resp.release()
        resp.release()  # double release is harmless
        resp = await pool.request("GET", "/size/1000", [])
        assert resp.body_complete and resp.body_bytes() == b"z" * 1000
        assert await resp.read() == b"z" * 1000
        resp.release()
        pool.close()


@both_loops
async def test_sequential_requests_reuse_one_connection() -> None:
    """100 sequential requests on one keep-alive connection (server sees one peer)."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        for i in range(100):
            resp = await pool.request("POST", "/echo", [], b"%d" % i)
            assert await resp.read() == b"%d" % i
            resp.release()
        assert len(app.peers) == 1
        assert pool.idle_count == 1
        pool.close()
        assert pool.idle_count == 0


@both_loops
async def test_concurrent_requests_and_lifo_pool() -> None:
    """32 concurrent tasks each get their own connection; all are pooled afterwards."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port, max_idle=16)

        async def one(i: int) -> bytes:
            resp = await pool.request("POST", "/echo", [], b"%d" % i)
            try:
                return await resp.read()
            finally:
                resp.release()

        out = await asyncio.gather(*(one(i) for i in range(32)))
        assert out == [b"%d" % i for i in range(32)]
        assert len(app.peers) <= 32
        assert pool.idle_count == 16  # capped by max_idle, the rest closed
        pool.close()


@both_loops
async def test_client_keyed_pools() -> None:
    """Http1Client keeps one pool per (host, port)."""
    async with App() as app:
        client = Http1Client(connect_timeout=2.0)
        assert client.pool("127.0.0.1", app.port) is client.pool("127.0.0.1", app.port)
        resp = await client.request("127.0.0.1", app.port, "GET", "/size/5")
        assert await resp.read() == b"zzzzz"
        client.close()


# --------------------------------------------------------------------------- request bodies


async def agen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """An async body made of the given chunks."""
    for c in chunks:
        yield c


@both_loops
async def test_streamed_bodies_chunked_or_raw() -> None:
    """Async bodies go chunked, or raw when the caller gave a Content-Length."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        resp = await pool.request("POST", "/upload", [], agen([b"ab", b"", b"cde"]))
        assert await resp.read() == b"5"
        resp = await pool.request(
            "POST", "/upload", [("content-length", "5")], agen([b"abc", b"de"])
        )
        assert await resp.read() == b"5"
        assert app.upload_te == ["chunked", None]
        assert len(app.peers) == 1
        pool.close()


@both_loops
async def test_large_upload_respects_write_backpressure() -> None:
    """A 32 MiB generated body is pulled only as fast as the server reads it."""
    total = 32 * 1024 * 1024
    piece = b"u" * 65536
    pulled = 0
    go = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await go.wait()  # do not read: the client must stall on a full socket
        n = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line, 16)
            if size == 0:
                await reader.readexactly(2)
                break
            n += len(await reader.readexactly(size))
            await reader.readexactly(2)
        writer.write(ok(str(n).encode()))
        await writer.drain()
        await asyncio.sleep(3600)

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < total:
            pulled += len(piece)
            yield piece

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port, first_byte_timeout=30, idle_timeout=30)
        task = asyncio.create_task(pool.request("POST", "/up", [], body()))
        last = -1
        stable = 0
        while stable < 10:  # wait until the generator stops being pulled
            await asyncio.sleep(0.01)
            stable = stable + 1 if pulled == last else 0
            last = pulled
        assert pulled < total // 2, "body was pulled without waiting for the socket"
        go.set()
        resp = await task
        assert resp.status == 200
        assert await resp.read() == str(total).encode()
        pool.close()


@both_loops
async def test_head_validation() -> None:
    """Header injection, bad targets and length mismatches are refused before sending."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("GET", "/", [("x", "a\r\nevil: 1")])
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("GET", "/", [("x\nevil", "1")])
        with pytest.raises(ValueError, match="target"):
            await pool.request("GET", "/a b", [])
        with pytest.raises(ValueError, match="does not match"):
            await pool.request("POST", "/echo", [("content-length", "3")], b"abcd")
        with pytest.raises(ValueError, match="content-length"):
            await pool.request("POST", "/echo", [("content-length", "x")], b"abcd")
        with pytest.raises(ValueError, match="has 3 bytes"):
            await pool.request("POST", "/upload", [("content-length", "9")], agen([b"abc"]))
        # hop-by-hop transfer-encoding from the caller is dropped; our framing wins
        resp = await pool.request("POST", "/echo", [("Transfer-Encoding", "gzip")], b"xy")
        assert await resp.read() == b"xy"
        pool.close()


# --------------------------------------------------------------------------- response framing


@both_loops
async def test_chunked_response_with_odd_boundaries() -> None:
    """Chunk sizes, extensions and trailers split across many tiny writes."""
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: caf\xe9\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_head(reader)
            for i in range(0, len(wire), 3):
                writer.write(wire[i : i + 3])
                await writer.drain()
                await asyncio.sleep(0)
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert ("X-A", "café") in resp.headers
        pieces = [c async for c in resp]
        assert b"".join(pieces) == b"hello 0123456789"
        resp.release()
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"hello 0123456789"
        assert raw.connections == 1
        pool.close()


@both_loops
async def test_close_delimited_body_and_connection_close() -> None:
    """A body without framing ends at EOF; neither it nor Connection: close is pooled."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if b"/eof" in head:
            writer.write(b"HTTP/1.1 200 OK\r\n\r\npart1-")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"part2")
        else:
            writer.write(ok(b"bye", b"connection: close\r\n"))
        await writer.drain()

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/eof", [])
        assert await resp.read() == b"part1-part2"
        resp = await pool.request("GET", "/close", [])
        assert await resp.read() == b"bye"
        await asyncio.sleep(0)
        assert pool.idle_count == 0
        assert raw.connections == 2
        pool.close()


@both_loops
async def test_interim_responses_are_skipped() -> None:
    """100 Continue and 103 Early Hints precede the real response."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\n")
        await writer.drain()
        writer.write(b"content-length: 2\r\nx-final: y\r\n\r\nok")
        await writer.drain()
        await read_request(reader)
        writer.write(ok(b"again"))
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("POST", "/", [("expect", "100-continue")], b"payload")
        assert resp.status == 201 and resp.reason == "Created"
        assert resp.headers == [("content-length", "2"), ("x-final", "y")]
        assert await resp.read() == b"ok"
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"again"
        assert raw.connections == 1
        pool.close()


@both_loops
async def test_bodiless_responses_head_204_304() -> None:
    """HEAD (with a Content-Length), 204 and 304 carry no body and keep the connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_head(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            elif b"/204" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif b"/304" in head:
                writer.write(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n")
            else:
                writer.write(ok(b"body"))
            await writer.drain()

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        for method, path, status in [
            ("HEAD", "/", 200),
            ("GET", "/204", 204),
            ("GET", "/304", 304),
            ("HEAD", "/", 200),
        ]:
            resp = await pool.request(method, path, [])
            assert resp.status == status
            assert resp.body_complete and await resp.read() == b""
            resp = await pool.request("GET", "/", [])
            assert await resp.read() == b"body"
        assert raw.connections == 1
        pool.close()


@both_loops
async def test_http10_response_is_not_reused() -> None:
    """Only HTTP/1.1 keep-alive connections go back to the pool."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert resp.version == "1.0"
        assert await resp.read() == b"ok"
        await raw.client_gone.wait()
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_response_flow_control_pauses_reading() -> None:
    """A lagging consumer does not make the client buffer the whole body."""
    size = 16 * 1024 * 1024
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port, read_high_water=64 * 1024)
        resp = await pool.request("GET", f"/size/{size}", [])
        for _ in range(20):  # give the upstream every chance to push it all
            await asyncio.sleep(0.01)
        assert not resp.body_complete
        assert resp._size < size // 2
        got = 0
        async for chunk in resp:
            got += len(chunk)
        assert got == size
        resp.release()
        resp = await pool.request("GET", "/size/3", [])
        assert await resp.read() == b"zzz"
        assert len(app.peers) == 1
        pool.close()


@both_loops
async def test_streaming_chunks_arrive_as_sent() -> None:
    """SSE: the first event is readable while the upstream still holds the second."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        resp = await pool.request("GET", "/sse", [])
        it = aiter(resp)
        assert await anext(it) == b"data: one\n\n"
        app.sse_go.set()
        rest = b"".join([c async for c in it])
        assert rest == b"data: two\n\n"
        resp.release()
        pool.close()


# --------------------------------------------------------------------------- failures


@both_loops
async def test_stale_keepalive_connection_is_retried_once() -> None:
    """The server drops a kept-alive connection as the next request arrives: retried."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if raw.connections == 1:
            await read_request(reader)
            writer.write(ok(b"first"))
            await writer.drain()
            await read_request(reader)  # the race: close without answering
            return
        while True:
            await read_request(reader)
            writer.write(ok(b"fresh"))
            await writer.drain()

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"first"
        resp = await pool.request("POST", "/", [], b"replayable")
        assert await resp.read() == b"fresh"
        assert raw.connections == 2
        pool.close()


@both_loops
async def test_stale_retry_never_replays_a_consumed_stream() -> None:
    """A streamed body that was already pulled cannot be replayed: ResetError."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await read_request(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"first"
        with pytest.raises(ResetError):
            resp = await pool.request("POST", "/", [], agen([b"a", b"b"]))
        assert raw.connections == 1
        pool.close()


@both_loops
async def test_idle_connection_closed_by_server_leaves_the_pool() -> None:
    """connection_lost drops an idle connection the upstream closed."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"x"))
        await writer.drain()

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"x"
        assert pool.idle_count == 1
        await settle(lambda: pool.idle_count == 0)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"x"
        assert raw.connections == 2
        pool.close()


@both_loops
async def test_unsolicited_bytes_poison_an_idle_connection() -> None:
    """Bytes with no request in flight mean the stream is out of sync: drop it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"x") + b"HTTP/1.1 200 OK\r\n")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"x"
        await raw.client_gone.wait()
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_reset_mid_body() -> None:
    """A connection lost in the middle of a body: buffered bytes, then ResetError."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"p" * 100)
        await writer.drain()
        await asyncio.sleep(0.01)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        got = b""
        with pytest.raises(ResetError):
            async for chunk in resp:
                got += chunk
        assert got == b"p" * 100
        resp = await pool.request("GET", "/", [])
        with pytest.raises(ResetError):
            await resp.read()
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_reset_before_head_on_fresh_connection() -> None:
    """A fresh connection that dies before answering is not retried."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        with pytest.raises(ResetError):
            await pool.request("GET", "/", [])
        assert raw.connections == 1
        pool.close()


@both_loops
async def test_malformed_responses_raise_protocol_error() -> None:
    """Garbage status lines, bad chunk sizes and upgrades are ProtocolError."""
    replies = [
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(replies[raw.connections - 1])
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        for _ in replies:
            with pytest.raises(ProtocolError):
                resp = await pool.request("GET", "/", [])
                await resp.read()
        await settle(lambda: raw.closed_by_client == len(replies))
        pool.close()


@both_loops
async def test_whole_response_in_one_read_parsed_like_llhttp() -> None:
    """Complete responses in one write: plain ones reuse the connection; malformed ones fail."""
    replies = [
        b"HTTP/1.1 201 Created\r\nContent-Length:  3\r\nX-A:\tv w\r\nx-b:\r\n\r\nabc",
        b"HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-c: \xe9\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nx-\xe9: 1\r\ncontent-length: 0\r\n\r\n",
        # no longer plain: each goes through llhttp and must fail the same way as before
        b"HTTP/1.1 200 OK\r\nbad name: x\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: a\x01b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\ncontent-length: \xb2\r\n\r\nab",
    ]
    sent: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_head(reader)
            writer.write(replies[len(sent)])
            sent.append(1)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert (resp.status, resp.reason) == (201, "Created")
        assert resp.headers == [("Content-Length", "3"), ("X-A", "v w"), ("x-b", "")]
        assert resp.body_complete and resp.body_bytes() == b"abc"
        resp.release()
        resp = await pool.request("GET", "/", [])
        assert (resp.status, resp.reason, resp.body_bytes()) == (200, "", b"")
        resp.release()
        resp = await pool.request("GET", "/", [])
        assert resp.headers[1] == ("x-c", "\xe9") and resp.body_bytes() == b"hi"
        resp.release()
        assert raw.connections == 1 and pool.idle_count == 1
        for _ in range(5):
            with pytest.raises(ProtocolError):
                resp = await pool.request("GET", "/", [])
                await resp.read()
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_response_with_trailing_bytes_is_not_reused() -> None:
    """A response followed by stray bytes in the same read is delivered; the connection is not."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(ok(b"hello") + b"HTTP/1.1 200 OK\r\n")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert await resp.read() == b"hello"
        resp.release()
        await settle(lambda: raw.closed_by_client == 1)
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_first_byte_timeout_and_deadline() -> None:
    """A slow head: FirstByteTimeout, or DeadlineExceeded when the deadline is earlier."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port, first_byte_timeout=5.0)
        with pytest.raises(FirstByteTimeout):
            await pool.request("GET", "/", [], first_byte_timeout=0.2)
        await settle(lambda: raw.closed_by_client == 1)
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadlineExceeded) as info:
            await pool.request("GET", "/", [], deadline=loop.time() + 0.2)
        assert isinstance(info.value, UpstreamTimeout)
        await settle(lambda: raw.closed_by_client == 2)
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_idle_timeout_between_chunks() -> None:
    """The body stalls after the first chunk: the iterator raises IdleTimeout."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [], idle_timeout=0.2)
        it = aiter(resp)
        assert await anext(it) == b"abc"
        with pytest.raises(IdleTimeout):
            await anext(it)
        with pytest.raises(IdleTimeout):  # the error sticks
            await anext(it)
        await settle(lambda: raw.closed_by_client == 1)
        pool.close()


@both_loops
async def test_connect_errors() -> None:
    """Nothing listening: ConnectError. A full accept backlog: ConnectTimeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        pool = Http1Pool("127.0.0.1", port)
        with pytest.raises(ConnectError) as info:
            await pool.request("GET", "/", [])
        assert isinstance(info.value, UpstreamError)

    # A listener that never accepts, with its backlog filled: new SYNs are dropped.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        pool = Http1Pool("127.0.0.1", port, connect_timeout=0.3)
        with pytest.raises(ConnectTimeout):
            await pool.request("GET", "/", [])
    finally:
        for f in fillers:
            f.close()
        lsock.close()


@both_loops
async def test_cancelled_request_closes_the_connection() -> None:
    """A task cancelled while waiting for the head closes its connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        task = asyncio.create_task(pool.request("GET", "/", []))
        await settle(lambda: raw.connections == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await raw.client_gone.wait()
        assert pool.idle_count == 0
        pool.close()


@both_loops
async def test_cancelled_body_read_and_early_release_close_the_connection() -> None:
    """Cancel mid-body, or aclose() before EOF: closed, never pooled; misuse is safe."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        reader_task = asyncio.create_task(resp.read())
        await asyncio.sleep(0.01)
        reader_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader_task
        await settle(lambda: raw.closed_by_client == 1)

        resp = await pool.request("GET", "/", [])
        async with resp:
            assert await anext(aiter(resp)) == b"0123456789"
        await settle(lambda: raw.closed_by_client == 2)
        await resp.aclose()  # again: harmless
        with pytest.raises(RuntimeError):
            await anext(aiter(resp))
        with pytest.raises(RuntimeError):
            await resp.read()
        with pytest.raises(RuntimeError):
            resp.body_bytes()
        assert pool.idle_count == 0
        assert raw.connections == 2
        pool.close()


@both_loops
async def test_dropped_response_closes_the_connection() -> None:
    """A response dropped unread (no release) does not leak its connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123")
        await raw.wait_client_closed(reader)

    async with Raw(handler) as raw:
        pool = Http1Pool("127.0.0.1", raw.port)
        resp = await pool.request("GET", "/", [])
        assert resp.status == 200
        del resp
        await raw.client_gone.wait()
        pool.close()


@both_loops
async def test_closed_pool_refuses_requests() -> None:
    """After close() the pool refuses new requests."""
    async with App() as app:
        pool = Http1Pool("127.0.0.1", app.port)
        pool.close()
        with pytest.raises(RuntimeError):
            await pool.request("GET", "/size/1", [])
        with pytest.raises(ValueError):
            Http1Pool("127.0.0.1", app.port, max_idle=-1)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentgate-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_tls_upstream(loop_name: str, tmp_path: Path) -> None:
    """HTTPS upstreams: verified against the given CA, pooled like plain ones."""
    cert, key = _self_signed(tmp_path)

    async def scenario() -> None:
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await read_request(reader)
                writer.write(ok(b"secure"))
                await writer.drain()

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        client_ctx = ssl.create_default_context(cafile=str(cert))
        pool = Http1Pool("127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1")
        for _ in range(3):
            resp = await pool.request("GET", "/", [])
            assert await resp.read() == b"secure"
        assert pool.idle_count == 1
        pool.close()
        untrusted = Http1Pool("127.0.0.1", port, ssl=ssl.create_default_context())
        with pytest.raises(ConnectError):
            await untrusted.request("GET", "/", [])
        server.close()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(asyncio.wait_for(scenario(), 60))
