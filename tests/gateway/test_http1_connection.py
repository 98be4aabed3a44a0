"""Http1Connection (Rust asyncio Protocol) against byte-scripted TCP upstreams on real sockets.

Every scenario runs on both the stdlib asyncio loop and uvloop (what granian uses). The granian
`proto` is replaced by a recorder of `response_bytes` calls: the thing under test is the
connection, which calls it exactly as the gateway's handler would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import pytest
import uvloop

from agentgate._core import Http1Connection, Http1ResponseHead, Http1ResponseParser

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

GET = b"GET /x HTTP/1.1\r\nhost: up\r\n\r\n"
HEAD = b"HEAD /x HTTP/1.1\r\nhost: up\r\n\r\n"


def both_loops(
    fn: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[str], None]:
    """Turn a scenario into a test run once per event loop implementation."""

    def test(loop_name: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(asyncio.wait_for(fn(), 30))

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return pytest.mark.parametrize("loop_name", list(LOOPS))(test)


Handler = Callable[["Raw", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A TCP server whose replies each test scripts byte for byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.client_closed = asyncio.Event()
        self.go = asyncio.Event()
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
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test ended
        finally:
            self.tasks.discard(task)
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """One request head (the tests send no bodies)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head

    async def until_client_closes(self, reader: asyncio.StreamReader) -> None:
        """Block until the client closes its side."""
        while await reader.read(65536):
            pass
        self.client_closed.set()


def replies(*responses: bytes) -> Handler:
    """A handler answering successive requests on one connection with `responses`."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for resp in responses:
            await srv.request(reader)
            writer.write(resp)
            await writer.drain()
        await srv.until_client_closes(reader)

    return handler


def ok(body: bytes, extra: bytes = b"") -> bytes:
    """A keep-alive 200 with a Content-Length body."""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


class Proto:
    """Records what granian's RSGI proto would have been asked to send."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[int, list[tuple[str, str]], bytes]] = []
        self.fail = fail

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Record one response; optionally fail like a client that went away."""
        if self.fail:
            raise RuntimeError("client gone")
        self.calls.append((status, headers, body))


class Rest(asyncio.Protocol):
    """The protocol Python swaps in after a handover: keeps feeding the same parser."""

    def __init__(self, parser: Http1ResponseParser, body: bytes | None, done: bool) -> None:
        self.parser = parser
        self.body = body or b""
        self.done = done
        self.reusable = False
        self.lost = False
        self.changed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; collect the body."""
        head, body, done, reusable = self.parser.feed(data)
        assert head is None
        if body is not None:
            self.body += body
        self.done = self.done or done
        self.reusable = reusable
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        """EOF ends a close-delimited body."""
        if not self.done and self.parser.feed_eof():
            self.done = True
        self.lost = True
        self.changed.set()

    async def wait(self, cond: Callable[[], bool]) -> None:
        """Wait (event driven) until cond() holds."""
        while not cond():
            self.changed.clear()
            await self.changed.wait()


async def settle(cond: Callable[[], bool], rounds: int = 2000) -> None:
    """Let the loop run until cond() holds (event driven, bounded; no timing asserted)."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


async def connect(srv: Raw, idle: list[Http1Connection], max_buffer: int = 1024) -> Http1Connection:
    """A new Http1Connection to the server."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        # Duck-typed: the Rust class has the Protocol methods without inheriting from it.
        lambda: cast(asyncio.Protocol, Http1Connection(idle, max_buffer)),
        "127.0.0.1",
        srv.port,
    )
    assert isinstance(conn, Http1Connection)
    return conn


async def exchange(
    conn: Http1Connection,
    proto: Proto,
    data: bytes = GET,
    extra: list[tuple[str, str]] | None = None,
) -> Any:
    """Send one request, return the future's result."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn.send(data, data.startswith(b"HEAD"), fut, proto, "rid-1", extra)
    return await fut


async def take_over(conn: Http1Connection, result: Any) -> Rest:
    """What the Python integration does with a handover: swap in its protocol."""
    tag, head, body, done, reusable, parser = result
    assert tag == "handover"
    assert isinstance(head, Http1ResponseHead) and isinstance(parser, Http1ResponseParser)
    rest = Rest(parser, body, done)
    rest.reusable = reusable
    conn.transport.set_protocol(rest)
    pending = conn.take_pending()
    if pending is not None:
        rest.data_received(pending)
    if conn.closed:
        rest.connection_lost(None)
    return rest


# --------------------------------------------------------------------------- fast path


@both_loops
async def test_small_response_answered_and_reused() -> None:
    """A small Content-Length response goes to proto.response_bytes; the conn is pooled once."""
    hdrs = b"Content-Type: text/plain\r\nKeep-Alive: timeout=5\r\nX-Up: 1\r\n"
    async with Raw(replies(ok(b"hello", hdrs), ok(b"again"))) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        assert not conn.busy and not conn.closed and conn.transport is not None
        proto = Proto()
        result = await exchange(conn, proto, extra=[("ratelimit", "limit=10")])
        assert result == 200
        assert proto.calls == [
            (
                200,
                [
                    ("content-length", "5"),
                    ("content-type", "text/plain"),
                    ("x-up", "1"),
                    ("x-request-id", "rid-1"),
                    ("ratelimit", "limit=10"),
                ],
                b"hello",
            )
        ]
        assert idle == [conn] and not conn.busy
        assert srv.requests == [GET]
        # The pool takes it and sends again on the same socket.
        assert idle.pop() is conn
        assert await exchange(conn, proto) == 200
        assert proto.calls[1][2] == b"again"
        assert proto.calls[1][1][-1] == ("x-request-id", "rid-1")
        assert idle == [conn] and srv.connections == 1


@both_loops
async def test_upstream_request_id_kept() -> None:
    """An upstream x-request-id is forwarded as is, not duplicated."""
    async with Raw(replies(ok(b"{}", b"X-Request-Id: up-7\r\n"))) as srv:
        conn = await connect(srv, [])
        proto = Proto()
        assert await exchange(conn, proto) == 200
        headers = proto.calls[0][1]
        assert [v for n, v in headers if n == "x-request-id"] == ["up-7"]


@both_loops
async def test_head_and_204_have_no_body() -> None:
    """HEAD (with a Content-Length) and 204 complete at the head."""
    async with Raw(
        replies(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        )
    ) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        proto = Proto()
        assert await exchange(conn, proto, HEAD) == 200
        assert proto.calls[0][0] == 200 and proto.calls[0][2] == b""
        assert ("content-length", "1234") in proto.calls[0][1]
        assert idle.pop() is conn
        assert await exchange(conn, proto) == 204
        assert proto.calls[1][0] == 204 and proto.calls[1][2] == b""
        assert idle == [conn]


@both_loops
async def test_body_in_several_segments() -> None:
    """A body that arrives after the head, in pieces, is buffered and answered whole."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123")
        await writer.drain()
        await srv.go.wait()
        writer.write(b"456")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"789")
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        proto = Proto()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.send(GET, False, fut, proto, "rid-1", None)
        await settle(lambda: bool(srv.requests))
        assert not fut.done() and conn.busy
        srv.go.set()
        assert await fut == 200
        assert proto.calls[0][2] == b"0123456789"
        assert idle == [conn]


@both_loops
async def test_connection_close_not_pooled() -> None:
    """Connection: close (and HTTP/1.0) answers the client, then closes instead of pooling."""
    for resp in (
        ok(b"bye", b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
    ):
        async with Raw(replies(resp)) as srv:
            idle: list[Http1Connection] = []
            conn = await connect(srv, idle)
            proto = Proto()
            assert await exchange(conn, proto) == 200
            assert proto.calls[0][2] == b"bye"
            assert ("connection", "close") not in proto.calls[0][1]
            assert idle == [] and conn.closed
            await srv.client_closed.wait()


@both_loops
async def test_cancelled_future_skips_the_answer() -> None:
    """A cancelled waiter gets nothing sent for it; the response is read and the conn pooled."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        await srv.go.wait()
        writer.write(ok(b"late"))
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        proto = Proto()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.send(GET, False, fut, proto, "rid-1", None)
        fut.cancel()
        srv.go.set()
        await settle(lambda: bool(idle))
        assert proto.calls == [] and idle == [conn] and not conn.busy


@both_loops
async def test_response_bytes_failure_is_reported() -> None:
    """proto.response_bytes raising resolves the future with an error, never an exception."""
    async with Raw(replies(ok(b"x"))) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        result = await exchange(conn, Proto(fail=True))
        assert result[0:2] == ("error", "respond") and "client gone" in result[2]
        assert idle == [conn]


# --------------------------------------------------------------------------- handover


@both_loops
async def test_chunked_handover_continues_with_parser() -> None:
    """A chunked response is handed over at its head; the same parser reads the rest."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await srv.go.wait()
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        proto = Proto()
        result = await exchange(conn, proto)
        assert result[0] == "handover" and result[1].status == 200 and result[1].chunked
        assert result[2] == b"hello" and result[3] is False and result[4] is False
        assert proto.calls == [] and idle == [] and conn.handed_over and not conn.busy
        rest = await take_over(conn, result)
        srv.go.set()
        await rest.wait(lambda: rest.done)
        assert rest.body == b"hello world" and rest.reusable
        with pytest.raises(ValueError, match="handed over"):
            conn.send(GET, False, asyncio.get_running_loop().create_future(), proto, "r", None)


@both_loops
async def test_sse_handover_streams_events() -> None:
    """An SSE-like chunked stream: events after the handover reach the swapped-in protocol."""
    events = [b"data: %d\n\n" % i for i in range(5)]

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        await srv.go.wait()
        for ev in events:
            writer.write(b"%x\r\n%b\r\n" % (len(ev), ev))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        conn = await connect(srv, [])
        result = await exchange(conn, Proto())
        assert result[0] == "handover" and result[2] is None and result[3] is False
        assert ("content-type", "text/event-stream") in result[1].forward
        rest = await take_over(conn, result)
        srv.go.set()
        await rest.wait(lambda: rest.done)
        assert rest.body == b"".join(events)


@both_loops
async def test_bytes_before_swap_are_kept() -> None:
    """Bytes that reach the connection after a handover but before the swap are not lost."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await srv.go.wait()
        writer.write(b"3\r\nabc\r\n0\r\n\r\n")
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        conn = await connect(srv, [])
        result = await exchange(conn, Proto())
        srv.go.set()
        # Python is slow to swap: the rest of the stream lands on the Rust protocol first.
        await settle(lambda: srv.go.is_set() and len(srv.requests) == 1 and _pending_peek(conn))
        rest = await take_over(conn, result)
        await rest.wait(lambda: rest.done)
        assert rest.body == b"abc"


def _pending_peek(conn: Http1Connection) -> bool:
    """Whether bytes are buffered for the swap (puts them back for take_over)."""
    data = conn.take_pending()
    if data is None:
        return False
    conn.data_received(data)  # re-buffer: after a handover data_received only buffers
    return True


@both_loops
async def test_close_delimited_handover() -> None:
    """A body ended by EOF is handed over; EOF reaches the swapped-in protocol and ends it."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ")
        await writer.drain()
        await srv.go.wait()
        writer.write(b"more")
        await writer.drain()
        writer.close()

    async with Raw(handler) as srv:
        conn = await connect(srv, [])
        result = await exchange(conn, Proto())
        assert result[0] == "handover" and result[1].close_delimited and result[2] == b"some "
        rest = await take_over(conn, result)
        srv.go.set()
        await rest.wait(lambda: rest.lost)
        assert rest.body == b"some more" and rest.done


@both_loops
async def test_big_body_and_retryable_statuses_handed_over() -> None:
    """Content-Length over max_buffer, 503 and 429 are handed over (the caller may retry)."""
    big = b"z" * 2000
    async with Raw(replies(ok(big))) as srv:
        conn = await connect(srv, [], max_buffer=1024)
        result = await exchange(conn, Proto())
        assert result[0] == "handover" and result[1].content_length == 2000
        rest = await take_over(conn, result)
        await rest.wait(lambda: rest.done)
        assert rest.body == big and rest.reusable

    for resp, status, body, retry_after in (
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", 503, b"busy", None),
        (
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
            429,
            None,
            3.0,
        ),
    ):
        async with Raw(replies(resp)) as srv:
            idle: list[Http1Connection] = []
            conn = await connect(srv, idle)
            proto = Proto()
            tag, head, got, done, reusable, parser = await exchange(conn, proto)
            assert tag == "handover" and head.status == status and got == body
            assert head.retry_after == retry_after
            assert done and reusable and parser.idle
            assert proto.calls == [] and idle == []
            conn.transport.close()


# --------------------------------------------------------------------------- errors


@both_loops
async def test_garbage_is_protocol_error() -> None:
    """An invalid response fails with "protocol" and aborts the connection."""
    async with Raw(replies(b"SMTP ready\r\n\r\n")) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        result = await exchange(conn, Proto())
        assert result[0:2] == ("error", "protocol") and "invalid response" in result[2]
        assert conn.closed and idle == []
        await srv.client_closed.wait()


@both_loops
async def test_close_mid_body_and_before_head_is_reset() -> None:
    """The upstream closing before the response completed fails with "reset"."""
    for resp in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"", b"HTTP/1.1 200"):

        async def handler(
            srv: Raw,
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            resp: bytes = resp,
        ) -> None:
            await srv.request(reader)
            writer.write(resp)
            await writer.drain()
            writer.close()

        async with Raw(handler) as srv:
            idle: list[Http1Connection] = []
            conn = await connect(srv, idle)
            result = await exchange(conn, Proto())
            assert result[0:2] == ("error", "reset"), result
            assert "closed" in result[2]
            assert conn.closed and not conn.busy and idle == []
            assert conn.transport is None


@both_loops
async def test_unsolicited_bytes_close_idle_connection() -> None:
    """Bytes on an idle keep-alive connection close it and take it out of the idle list."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(ok(b"a"))
        await writer.drain()
        await srv.go.wait()
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        assert await exchange(conn, Proto()) == 200
        assert idle == [conn]
        srv.go.set()
        await srv.client_closed.wait()
        assert idle == [] and conn.closed


@both_loops
async def test_idle_connection_lost_leaves_pool() -> None:
    """An idle connection the upstream closes removes itself from the idle list."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        writer.write(ok(b"a"))
        await writer.drain()
        await srv.go.wait()

    async with Raw(handler) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        assert await exchange(conn, Proto()) == 200
        assert idle == [conn]
        srv.go.set()
        await settle(lambda: conn.closed)
        assert idle == [] and conn.transport is None
        with pytest.raises(ValueError, match="closed"):
            conn.send(GET, False, asyncio.get_running_loop().create_future(), Proto(), "r", None)


@both_loops
async def test_send_while_busy_rejected() -> None:
    """One exchange at a time."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        await srv.go.wait()
        writer.write(ok(b"a"))
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        conn = await connect(srv, [])
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        conn.send(GET, False, fut, Proto(), "r", None)
        with pytest.raises(ValueError, match="busy"):
            conn.send(GET, False, loop.create_future(), Proto(), "r", None)
        srv.go.set()
        assert await fut == 200


# --------------------------------------------------------------------------- timers, abort


class CountingLoop:
    """Forwards time()/call_at() to the running loop, counting timers created."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.timers: list[asyncio.TimerHandle] = []
        self.fired = 0

    def time(self) -> float:
        """The loop's clock."""
        return self.loop.time()

    def call_at(self, when: float, cb: Callable[[], None]) -> asyncio.TimerHandle:
        """Schedule and record; count the callbacks that ran."""

        def run() -> None:
            self.fired += 1
            cb()

        handle = self.loop.call_at(when, run)
        self.timers.append(handle)
        return handle


def silent() -> Handler:
    """Reads requests, never answers until the client closes."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        await srv.until_client_closes(reader)

    return handler


@both_loops
async def test_first_byte_timeout() -> None:
    """A passed first-byte deadline fails the exchange with "timeout" and aborts."""
    async with Raw(silent()) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        conn.send(GET, False, fut, Proto(), "r", None)
        conn.arm(loop.time() - 1.0, loop)  # already due: fires on the next loop iteration
        assert await fut == ("error", "timeout", "upstream first byte timeout")
        assert conn.closed and not conn.busy
        await srv.client_closed.wait()


@both_loops
async def test_timer_is_lazy() -> None:
    """One timer per connection: later deadlines reuse it, an early one re-arms itself."""
    async with Raw(replies(ok(b"1"), ok(b"2"))) as srv:
        conn = await connect(srv, [])
        loop = asyncio.get_running_loop()
        counting = CountingLoop(loop)
        proto = Proto()
        fut: asyncio.Future[Any] = loop.create_future()
        conn.send(GET, False, fut, proto, "r", None)
        far = loop.time() + 3600.0
        conn.arm(far, counting)
        conn.arm(far + 10.0, counting)  # the running timer fires earlier: kept
        assert len(counting.timers) == 1
        assert await fut == 200
        conn.disarm()
        fut = loop.create_future()
        conn.send(GET, False, fut, proto, "r", None)
        conn.arm(far + 20.0, counting)
        assert len(counting.timers) == 1
        conn.arm(far - 10.0, counting)  # earlier than the running timer: replaced
        assert len(counting.timers) == 2 and counting.timers[0].cancelled()
        assert await fut == 200
        # A timer firing before the deadline (the deadline moved on) re-arms for it.
        conn.arm(far, counting)
        conn.expire()
        assert len(counting.timers) == 3
        assert counting.timers[2].when() == pytest.approx(far, abs=0.01)  # uvloop: ms steps
        assert not conn.closed


@both_loops
async def test_disarmed_timer_does_nothing() -> None:
    """A timer whose deadline was cleared fires harmlessly; the exchange completes later."""

    async def handler(srv: Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.request(reader)
        await srv.go.wait()
        writer.write(ok(b"fine"))
        await srv.until_client_closes(reader)

    async with Raw(handler) as srv:
        conn = await connect(srv, [])
        loop = asyncio.get_running_loop()
        counting = CountingLoop(loop)
        fut: asyncio.Future[Any] = loop.create_future()
        conn.send(GET, False, fut, Proto(), "r", None)
        conn.arm(loop.time() - 1.0, counting)
        conn.disarm()
        await settle(lambda: counting.fired == 1)
        assert not fut.done() and conn.busy and len(counting.timers) == 1
        srv.go.set()
        assert await fut == 200


@both_loops
async def test_abort_closes_and_delivers_nothing() -> None:
    """abort(): the client went away; the connection closes and the future stays pending."""
    async with Raw(silent()) as srv:
        idle: list[Http1Connection] = []
        conn = await connect(srv, idle)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        conn.send(GET, False, fut, Proto(), "r", None)
        await settle(lambda: bool(srv.requests))
        conn.abort()
        assert conn.closed and not conn.busy
        await srv.client_closed.wait()
        await settle(lambda: conn.transport is None)
        assert not fut.done() and idle == []
