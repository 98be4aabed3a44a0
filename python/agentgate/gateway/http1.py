"""Lean HTTP/1.1 upstream client: asyncio protocols + the core's response parser (data plane).

Why not aiohttp: a reverse proxy needs none of a general client's machinery (cookie jars, URL
objects, redirects, multidicts, tracing, decompression), and on the hot path that machinery costs
about two thirds of the gateway's throughput. This client does one thing: send a request head
(plus an optional body) on a pooled keep-alive connection and hand back the response head as soon
as it is parsed, with the body streamed, flow-controlled and timed.

Timers are ``loop.call_at`` handles owned by the connection (one at a time: connect, first byte,
idle between chunks, capped by the absolute deadline), never ``asyncio.wait_for`` per chunk.
Waiters are futures that are only ever resolved with a result; the outcome (response, error) is
read from the connection or response afterwards, so no "exception was never retrieved" noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, Final, cast

from agentgate._core import Http1Connection, Http1ResponseHead, Http1ResponseParser

__all__ = [
    "ClientGone",
    "ConnectError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "FirstByteTimeout",
    "Http1Client",
    "Http1Pool",
    "IdleTimeout",
    "ProtocolError",
    "ResetError",
    "Response",
    "UpstreamError",
    "UpstreamTimeout",
]


class UpstreamError(Exception):
    """Base of every failure talking to an upstream (the gateway maps it to 502/504)."""


class UpstreamTimeout(UpstreamError):
    """Base of the timeouts (the gateway maps them to 504)."""


class ConnectError(UpstreamError):
    """The TCP (or TLS) connection could not be established."""


class ConnectTimeout(UpstreamTimeout):
    """The connection was not established within the connect timeout."""


class FirstByteTimeout(UpstreamTimeout):
    """The response head was not received within the first-byte timeout after the request."""


class IdleTimeout(UpstreamTimeout):
    """No body bytes (or no write progress on upload) within the idle timeout."""


class DeadlineExceeded(UpstreamTimeout):
    """The request's absolute deadline (loop time) passed."""


class ResetError(UpstreamError):
    """The connection was lost before or while reading the response."""


class ProtocolError(UpstreamError):
    """The upstream sent something that is not a valid HTTP/1.1 response."""


class ClientGone(UpstreamError):
    """The client could not take the response (it disconnected while it was being sent)."""


Body = bytes | bytearray | memoryview | AsyncIterable[bytes] | None

_HIGH_WATER: Final = 256 * 1024
_COALESCE: Final = 64 * 1024
_CRLF: Final = b"\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_EMPTY_LEN_METHODS: Final = frozenset(("POST", "PUT", "PATCH"))
_NO_HEAD: Final = "upstream sent no response head in time"


class _Conn(asyncio.Protocol):
    """One upstream connection: response parsing, write flow control and the phase timer."""

    __slots__ = (
        "active",
        "drain_fut",
        "due",
        "due_error",
        "due_message",
        "error",
        "got_bytes",
        "head_fut",
        "idle",
        "idle_since",
        "loop",
        "no_reuse",
        "parser",
        "pool",
        "read_paused",
        "resp",
        "reused",
        "timer",
        "timer_at",
        "transport",
        "write_paused",
    )

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.loop = pool._loop
        self.transport: asyncio.Transport | None = None
        self.parser = Http1ResponseParser()
        self.active = False
        self.error: UpstreamError | None = None
        self.got_bytes = False
        self.head_fut: asyncio.Future[Response | None] | None = None
        self.drain_fut: asyncio.Future[None] | None = None
        # Weak, so a Response dropped without release() is collected and closes the connection.
        self.resp: weakref.ref[Response] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.due: float | None = None
        self.due_error: type[UpstreamTimeout] = UpstreamTimeout
        self.due_message = ""
        self.idle = False
        self.idle_since = 0.0
        self.no_reuse = False
        self.read_paused = False
        self.write_paused = False
        self.reused = False

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Feed the parser (one call per segment); any parse error poisons the connection."""
        self.got_bytes = True
        try:
            head, body, done, reusable = self.parser.feed(data)
        except ValueError as e:
            if self.active:
                self.fail(ProtocolError(f"invalid response from upstream: {e}"))
            else:
                self.fail(ProtocolError("upstream sent bytes with no request in flight"))
            return
        if head is not None:
            self.on_head(head)
        if body is not None:
            self.on_body(body)
        if done:
            if not reusable:
                self.no_reuse = True
            self.on_message_complete()

    def eof_received(self) -> bool | None:
        """Let the transport close; connection_lost decides what the EOF meant."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Finish a close-delimited body, or fail whatever is in flight."""
        ref = self.resp
        resp = None if ref is None else ref()
        if exc is None and self.error is None and resp is not None and self.head_fut is None:
            try:
                ended = self.parser.feed_eof()  # True: EOF was the end of a close-delimited body
            except ValueError:
                ended = False  # a truncated body: failed below
            if ended:
                self.no_reuse = True
                self.on_message_complete()
        if self.error is None:
            if self.active:
                what = "before the response head" if resp is None else "in the middle of the body"
                detail = f": {exc}" if exc is not None else ""
                self.fail(ResetError(f"upstream closed the connection {what}{detail}"))
            else:
                self.fail(ResetError("upstream closed the connection"))
        self.transport = None

    def pause_writing(self) -> None:
        """The kernel buffer is full: uploads wait for resume_writing."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """Wake an upload waiting to write."""
        self.write_paused = False
        fut = self.drain_fut
        if fut is not None:
            self.drain_fut = None
            if not fut.done():
                fut.set_result(None)

    # --- parser events ------------------------------------------------------------------------

    def on_head(self, head: Http1ResponseHead) -> Response:
        """The final response head (1xx are skipped by the parser): wake the request."""
        self.due = None
        resp = Response(head.status, head.reason, head.headers, head.version, self, head)
        self.resp = weakref.ref(resp)
        fut = self.head_fut
        self.head_fut = None
        if fut is not None and not fut.done():
            fut.set_result(resp)
        return resp

    @classmethod
    def adopt(
        cls,
        pool: Http1Pool,
        fast: Http1Connection,
        handover: tuple[Any, ...],
        deadline: float | None,
    ) -> Response:
        """Take over a connection an `Http1Connection` handed back with a parsed head."""
        _, head, body, done, reusable, parser = handover
        transport = fast.transport
        conn = cls(pool)
        conn.transport = cast(asyncio.Transport, transport)
        conn.parser = parser  # mid-stream: the rest of the body continues in the same parser
        conn.active = True
        conn.got_bytes = True
        resp = conn.on_head(head)
        resp._idle_timeout = pool.idle_timeout
        resp._deadline = deadline
        if transport is not None:
            transport.set_protocol(conn)
        if body:
            conn.on_body(body)
        if done:
            if not reusable:
                conn.no_reuse = True
            conn.on_message_complete()
        # what arrived between the handover and the swap, then an EOF that came meanwhile
        pending = fast.take_pending()
        if pending:
            conn.data_received(pending)
        if fast.closed or transport is None:
            conn.connection_lost(None)
        return resp

    def on_body(self, body: bytes) -> None:
        """Buffer a body piece for the consumer; pause reading past the high-water mark."""
        ref = self.resp
        resp = None if ref is None else ref()
        if resp is None:
            return
        resp._chunks.append(body)
        size = resp._size + len(body)
        resp._size = size
        fut = resp._waiter
        if fut is not None:
            resp._waiter = None
            if not fut.done():
                fut.set_result(None)
        if size > self.pool._high_water and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        """The response is complete: hand the body over and put the connection back."""
        ref = self.resp
        resp = None if ref is None else ref()
        if resp is None or not self.active:
            return
        self.active = False
        self.resp = None
        resp._conn = None
        resp._done = True
        fut = resp._waiter
        if fut is not None:
            resp._waiter = None
            if not fut.done():
                fut.set_result(None)
        self.due = None
        transport = self.transport
        if transport is None:
            return
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        if self.no_reuse or not resp.head.keep_alive or resp.version != "1.1":
            self.error = ResetError("connection not reusable")
            transport.close()
        else:
            self.pool._put(self)

    # --- state transitions --------------------------------------------------------------------

    def fail(self, error: UpstreamError) -> None:
        """Poison the connection: record the error, wake every waiter, abort the transport."""
        if self.error is None:
            self.error = error
        self.active = False
        self.due = None
        if self.idle:
            self.idle = False
            with contextlib.suppress(ValueError):
                self.pool._idle.remove(self)
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
        fut = self.head_fut
        if fut is not None:
            self.head_fut = None
            if not fut.done():
                fut.set_result(None)
        dfut = self.drain_fut
        if dfut is not None:
            self.drain_fut = None
            if not dfut.done():
                dfut.set_result(None)
        ref = self.resp
        resp = None if ref is None else ref()
        self.resp = None
        if resp is not None:
            resp._conn = None
            if resp._exc is None and not resp._done:
                resp._exc = self.error
            rfut = resp._waiter
            if rfut is not None:
                resp._waiter = None
                if not rfut.done():
                    rfut.set_result(None)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def expire(self) -> None:
        """Timer callback: fail the current phase if its deadline passed, else wait for it."""
        self.timer = None
        due = self.due
        if due is None:
            return  # the phase this timer was started for ended long ago
        loop = self.loop
        if due > loop.time():
            # a later phase moved the deadline on: follow it with the same single timer
            self.timer = loop.call_at(due, self.expire)
            self.timer_at = due
            return
        self.due = None
        error_type = self.due_error
        self.fail(error_type(self.due_message))

    def arm(self, when: float | None, error_type: type[UpstreamTimeout], message: str) -> None:
        """Set the phase deadline; a running timer is reused unless it would fire too late.

        Timers are lazy: ending a phase only clears `due`, and an early-firing timer re-arms
        itself for the current deadline. With steady timeouts a keep-alive connection so keeps
        one pending timer instead of creating and cancelling one per request.
        """
        self.due = when
        if when is None:
            return
        self.due_error = error_type
        self.due_message = message
        timer = self.timer
        if timer is None or self.timer_at > when:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(when, self.expire)
            self.timer_at = when

    def disarm(self) -> None:
        """End the current phase's deadline (the timer, if any, notices when it fires)."""
        self.due = None


def _deadline_of(
    loop: asyncio.AbstractEventLoop,
    timeout: float | None,
    deadline: float | None,
    error_type: type[UpstreamTimeout],
) -> tuple[float | None, type[UpstreamTimeout]]:
    """The earlier of now+timeout and the absolute deadline, with the error that goes with it."""
    when = None if timeout is None else loop.time() + timeout
    if deadline is not None and (when is None or deadline <= when):
        return deadline, DeadlineExceeded
    return when, error_type


class Response:
    """A response whose head is parsed; the body streams in behind it."""

    __slots__ = (
        "__weakref__",
        "_body",
        "_chunks",
        "_conn",
        "_deadline",
        "_done",
        "_exc",
        "_idle_timeout",
        "_released",
        "_size",
        "_waiter",
        "head",
        "headers",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        version: str,
        conn: _Conn,
        head: Http1ResponseHead,
    ) -> None:
        self.head = head  # the parsed head: forward headers, retry_after, content_length …
        self.status = status
        self.reason = reason
        self.headers = headers
        self.version = version
        self._conn: _Conn | None = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._exc: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        self._idle_timeout: float | None = None
        self._deadline: float | None = None
        self._body: bytes | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r} complete={self._done}>"

    @property
    def body_complete(self) -> bool:
        """True when the whole body is already buffered (body_bytes() works without awaiting)."""
        return self._done and not self._released

    def body_bytes(self) -> bytes:
        """The whole body, when body_complete; raises RuntimeError otherwise."""
        if not self._done or self._released:
            raise RuntimeError("body is not complete (use await read() or async for)")
        body = self._body
        if body is None:
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._body = body
        return body

    async def read(self) -> bytes:
        """Read the rest of the body into one bytes object."""
        if self._done:
            return self.body_bytes()
        parts: list[bytes] = []
        while True:
            chunks = self._chunks
            if chunks:
                parts.extend(chunks)
                chunks.clear()
                self._size = 0
                conn = self._conn
                if conn is not None and conn.read_paused and conn.transport is not None:
                    conn.read_paused = False
                    conn.transport.resume_reading()
            if self._done:
                break
            self._check()
            await self._wait()
        body = b"".join(parts)
        self._chunks.append(body)
        self._body = body
        return body

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        """The next body piece as it arrived from the upstream."""
        while True:
            chunks = self._chunks
            if chunks:
                self._body = None
                chunk = chunks.popleft()
                size = self._size - len(chunk)
                self._size = size
                conn = self._conn
                if (
                    conn is not None
                    and conn.read_paused
                    and size <= conn.pool._low_water
                    and conn.transport is not None
                ):
                    conn.read_paused = False
                    conn.transport.resume_reading()
                return chunk
            if self._done:
                if self._released:
                    raise RuntimeError("response was released")
                raise StopAsyncIteration
            self._check()
            await self._wait()

    def _check(self) -> None:
        if self._released:
            raise RuntimeError("response was released")
        exc = self._exc
        if exc is not None:
            raise exc

    async def _wait(self) -> None:
        """Wait for the next body event with the idle/deadline timer armed."""
        conn = self._conn
        if conn is None:  # pragma: no cover - _done or _exc is always set when detached
            raise ResetError("connection lost")
        loop = conn.loop
        when, error_type = _deadline_of(loop, self._idle_timeout, self._deadline, IdleTimeout)
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        if when is not None:
            conn.arm(when, error_type, "upstream body stalled")
        try:
            await fut
        except BaseException:
            # Cancelled mid-body (client went away): the connection cannot be reused. Once the
            # body completed the connection may already serve another request: leave it alone.
            self._waiter = None
            if self._conn is conn:
                conn.fail(ResetError("response reading was cancelled"))
            raise
        if when is not None and self._conn is conn:
            conn.disarm()

    def release(self) -> None:
        """Done with this response: a finished connection is already pooled, else it is closed."""
        if self._released:
            return
        self._released = True
        self._chunks.clear()
        self._size = 0
        self._body = None
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.fail(ResetError("response released before the end of the body"))

    async def aclose(self) -> None:
        """Async alias of release()."""
        self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            # The loop may already be closed at interpreter exit.
            with contextlib.suppress(Exception):
                conn.fail(ResetError("response dropped before the end of the body"))


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one upstream endpoint; create it inside the loop.

    Timeouts are seconds (None: none). Per-request timeouts default to the pool's; pass
    ``math.inf`` to disable one for a single request. ``deadline`` is absolute loop time.
    """

    __slots__ = (
        "_closed",
        "_fast_idle",
        "_high_water",
        "_host_line",
        "_host_line_b",
        "_idle",
        "_loop",
        "_low_water",
        "connect_timeout",
        "first_byte_timeout",
        "host",
        "idle_timeout",
        "keepalive_ttl",
        "max_idle",
        "port",
        "server_hostname",
        "ssl",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int = 128,
        connect_timeout: float | None = 5.0,
        first_byte_timeout: float | None = 60.0,
        idle_timeout: float | None = 60.0,
        keepalive_ttl: float | None = 30.0,
        read_high_water: int = _HIGH_WATER,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        host_header: str | None = None,
    ) -> None:
        if max_idle < 0:
            raise ValueError(f"max_idle must be >= 0, got {max_idle}")
        if read_high_water < 1:
            raise ValueError(f"read_high_water must be >= 1, got {read_high_water}")
        self._loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.keepalive_ttl = keepalive_ttl
        self.ssl = ssl
        self.server_hostname = server_hostname
        self._high_water = read_high_water
        self._low_water = read_high_water // 4
        if host_header is None:
            default_port = 443 if ssl is not None else 80
            host_header = host if port == default_port else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        self._host_line = f"host: {host_header}\r\n"
        self._host_line_b = self._host_line.encode("latin-1")
        self._idle: list[_Conn] = []
        # connections whose protocol is the core's Http1Connection (see `exchange`)
        self._fast_idle: list[Http1Connection] = []
        self._closed = False

    @property
    def idle_count(self) -> int:
        """Connections currently parked for reuse."""
        return len(self._idle)

    def _new_conn(self) -> _Conn:
        return _Conn(self)

    def _put(self, conn: _Conn) -> None:
        idle = self._idle
        transport = conn.transport
        if transport is None:
            return
        if self._closed or len(idle) >= self.max_idle:
            conn.error = ResetError("pool full or closed")
            transport.close()
            return
        conn.idle = True
        conn.idle_since = self._loop.time()
        idle.append(conn)

    def _get(self) -> _Conn | None:
        idle = self._idle
        ttl = self.keepalive_ttl
        while idle:
            conn = idle.pop()
            conn.idle = False
            transport = conn.transport
            if conn.error is not None or transport is None or transport.is_closing():
                continue
            if ttl is not None and self._loop.time() - conn.idle_since > ttl:
                conn.error = ResetError("keep-alive ttl expired")
                transport.close()
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(
        self, deadline: float | None, factory: Callable[[], asyncio.Protocol] | None = None
    ) -> _Conn:
        """A new connection whose protocol `factory` makes (default: a Python `_Conn`)."""
        loop = self._loop
        when, error_type = _deadline_of(loop, self.connect_timeout, deadline, ConnectTimeout)
        try:
            async with asyncio.timeout_at(when):
                _, conn = await loop.create_connection(
                    factory or self._new_conn,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname if self.ssl is not None else None,
                )
        except TimeoutError:
            raise error_type(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as e:
            raise ConnectError(f"connect to {self.host}:{self.port} failed: {e}") from e
        return cast(_Conn, conn)

    def _encode_head(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body_len: int
    ) -> tuple[bytes, int]:
        """The request head and the caller's Content-Length (-1 if none) with framing added."""
        if " " in target or not target:
            raise ValueError(f"invalid request target {target!r}")
        lines = [f"{name}: {value}\r\n" for name, value in headers]
        text = "".join(lines)
        # One lowercase copy answers "is there a Host / Content-Length / Transfer-Encoding
        # line?" at C speed; only heads that carry framing headers take the per-header path.
        low = "\n" + text.lower()
        has_host = "\nhost:" in low
        given = -1
        if "\ncontent-length:" in low or "\ntransfer-encoding:" in low:
            lines = []
            for name, value in headers:
                n = len(name)
                if n == 14 and name.lower() == "content-length":
                    try:
                        given = int(value)
                    except ValueError:
                        raise ValueError(f"invalid content-length header {value!r}") from None
                    if given < 0:
                        raise ValueError(f"invalid content-length header {value!r}")
                elif n == 17 and name.lower() == "transfer-encoding":
                    continue  # hop-by-hop: this client decides the framing
                lines.append(f"{name}: {value}\r\n")
            text = "".join(lines)
        framing = ""
        if given < 0:
            if body_len >= 0:
                framing = f"content-length: {body_len}\r\n"
            elif body_len == -2:
                framing = "transfer-encoding: chunked\r\n"
            elif method in _EMPTY_LEN_METHODS:
                framing = "content-length: 0\r\n"
        elif body_len >= 0 and given != body_len:
            raise ValueError(f"content-length {given} does not match the body length {body_len}")
        host = "" if has_host else self._host_line
        head = f"{method} {target} HTTP/1.1\r\n{text}{host}{framing}\r\n"
        # Any CR/LF inside a name, value, method or target (header injection) shows up as
        # extra line breaks: one C-speed count each instead of per-header checks.
        breaks = len(lines) + 2 + (not has_host) + (framing != "")
        if head.count("\n") != breaks or head.count("\r") != breaks:
            raise ValueError("CR or LF inside the request line or a header")
        try:
            return head.encode("latin-1"), given
        except UnicodeEncodeError:
            raise ValueError("request head is not latin-1 encodable") from None

    def _block_head(
        self, method: str, target: str, block: bytes, framing: int, has_host: bool, body: Body
    ) -> tuple[bytes, int]:
        """A request head around a pre-encoded header block (framing lines included)."""
        if " " in target or "\n" in target or "\r" in target or not target:
            raise ValueError(f"invalid request target {target!r}")
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            n = 0 if body is None else len(body)
            if framing == -2 or (framing >= 0 and framing != n) or (framing == -1 and n > 0):
                raise ValueError(f"body of {n} bytes does not match the announced framing")
        elif framing == -1:
            raise ValueError("a streamed body needs Content-Length or chunked framing")
        line = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
        host = b"" if has_host else self._host_line_b
        return b"".join((line, block, host, b"\r\n")), framing if framing >= 0 else -1

    async def _connect_fast(self, deadline: float | None) -> Http1Connection:
        idle = self._fast_idle
        # duck-typed: the core's connection implements asyncio.Protocol's methods
        conn = await self._connect(deadline, lambda: cast(asyncio.Protocol, Http1Connection(idle)))
        return cast(Http1Connection, conn)

    async def exchange(
        self,
        method: str,
        target: str,
        block: bytes,
        framing: int,
        block_has_host: bool,
        body: bytes | None,
        proto: Any,
        request_id: str,
        extra: list[tuple[str, str]] | None,
        deadline: float | None = None,
    ) -> int | Response:
        """Send a request whose header block the core encoded, on a core-side connection.

        A small, complete response below 500 (other than 429) is answered to the client by the
        connection itself (`proto.response_bytes`, with `request_id` unless the upstream sent
        one, plus `extra` headers): the status comes back. Anything else (an error status the
        caller may retry, a streamed or large body) comes back as a Response on a Python
        connection, exactly as `request` returns it. Failures raise UpstreamError.
        """
        if self._closed:
            raise RuntimeError("pool is closed")
        loop = self._loop
        head, _ = self._block_head(method, target, block, framing, block_has_host, body)
        data = head + body if body else head
        is_head = method == "HEAD"
        idle = self._fast_idle
        attempt = 0
        while True:
            attempt += 1
            conn = None
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    break
                conn = None
            reused = conn is not None
            if conn is None:
                conn = await self._connect_fast(deadline)
            fut: asyncio.Future[Any] = loop.create_future()
            conn.send(data, is_head, fut, proto, request_id, extra)
            when, error_type = _deadline_of(
                loop, self.first_byte_timeout, deadline, FirstByteTimeout
            )
            if when is not None:
                conn.arm(when, loop)
            try:
                r = await fut
            except BaseException:
                conn.abort()  # cancelled (the client left): the exchange is dropped
                raise
            if type(r) is int:
                return r
            if r[0] == "handover":
                return _Conn.adopt(self, conn, r, deadline)
            _, kind, message = r
            if kind == "timeout":
                raise (error_type if "first byte" in message else IdleTimeout)(message)
            if kind == "protocol":
                raise ProtocolError(message)
            if kind == "respond":
                # the client could not take the answer (it left): nothing to retry
                raise ClientGone(message)
            if attempt == 1 and reused and not conn.got_bytes:
                continue  # the classic keep-alive race: the server closed it as we sent
            raise ResetError(message)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: Body = None,
        *,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
        block: bytes | None = None,
        framing: int = -1,
        block_has_host: bool = False,
    ) -> Response:
        """Send one request; return as soon as the response head is parsed.

        ``headers`` must already be filtered of hop-by-hop headers. ``body`` is None, bytes, or
        an async iterable of bytes (sent chunked unless headers carry a Content-Length).
        With ``block`` (header lines the core encoded, framing included; see
        `GatewayCore.admit_request`) ``headers`` is ignored and ``framing`` says how the body
        goes: -1 none, -2 chunked, else its length.
        Raises an UpstreamError subclass on failure; a stale keep-alive connection that dies
        before any response byte is retried once on a fresh connection.
        """
        if self._closed:
            raise RuntimeError("pool is closed")
        loop = self._loop
        stream: AsyncIterable[bytes] | None = None
        if block is not None:
            head, given = self._block_head(method, target, block, framing, block_has_host, body)
            if body is None:
                payload = b""
            elif isinstance(body, (bytes, bytearray, memoryview)):
                payload = bytes(body) if not isinstance(body, bytes) else body
            else:
                stream = body
                payload = b""
        elif body is None:
            head, given = self._encode_head(method, target, headers, -1)
            payload = b""
        elif isinstance(body, (bytes, bytearray, memoryview)):
            head, given = self._encode_head(method, target, headers, len(body))
            payload = bytes(body) if not isinstance(body, bytes) else body
        else:
            stream = body
            payload = b""
            head, given = self._encode_head(method, target, headers, -2)
        if first_byte_timeout is None:
            first_byte_timeout = self.first_byte_timeout
        elif first_byte_timeout == float("inf"):
            first_byte_timeout = None
        if idle_timeout is None:
            idle_timeout = self.idle_timeout
        elif idle_timeout == float("inf"):
            idle_timeout = None
        is_head = method == "HEAD"
        first = head + payload if len(payload) <= _COALESCE else None
        attempt = 0
        while True:
            attempt += 1
            conn = self._get()
            if conn is None:
                conn = await self._connect(deadline)
            transport = conn.transport
            if transport is None:  # pragma: no cover - closed between connect and here
                raise ResetError("connection closed before the request was sent")
            fut: asyncio.Future[Response | None] = loop.create_future()
            conn.head_fut = fut
            conn.active = True
            conn.got_bytes = False
            try:
                conn.parser.start(is_head)
            except ValueError as e:  # pragma: no cover - a pooled connection is always idle
                conn.fail(ProtocolError(f"connection not ready for a request: {e}"))
                raise conn.error or ProtocolError(str(e)) from None
            conn.no_reuse = False
            pulled = False
            try:
                if stream is None:
                    if first is not None:
                        transport.write(first)
                    else:
                        transport.write(head)
                        transport.write(payload)
                else:
                    transport.write(head)
                    pulled = await self._upload(conn, stream, given, idle_timeout, deadline)
                if fut.done():
                    pass
                elif deadline is None:
                    if first_byte_timeout is not None:
                        conn.arm(loop.time() + first_byte_timeout, FirstByteTimeout, _NO_HEAD)
                else:
                    when, error_type = _deadline_of(
                        loop, first_byte_timeout, deadline, FirstByteTimeout
                    )
                    if when is not None:
                        conn.arm(when, error_type, _NO_HEAD)
                resp = await fut
            except BaseException:
                # Cancelled (client went away) or the body iterator failed. If the head already
                # arrived, the Response owns the connection (and may have pooled it already).
                if fut.done() and not fut.cancelled() and (done := fut.result()) is not None:
                    done.release()
                else:
                    conn.fail(ResetError("request was aborted"))
                raise
            if resp is not None:
                resp._idle_timeout = idle_timeout
                resp._deadline = deadline
                return resp
            error = conn.error
            if error is None:  # pragma: no cover - fail() always records an error
                error = ResetError("connection lost")
            if (
                attempt == 1
                and conn.reused
                and not conn.got_bytes
                and type(error) is ResetError
                and not pulled
            ):
                continue  # the classic keep-alive race: the server closed it as we sent
            raise error

    async def _upload(
        self,
        conn: _Conn,
        stream: AsyncIterable[bytes],
        given: int,
        idle_timeout: float | None,
        deadline: float | None,
    ) -> bool:
        """Stream the body (chunked unless a Content-Length was given); True once one was pulled."""
        chunked = given < 0
        sent = 0
        pulled = False
        async for chunk in stream:
            pulled = True
            transport = conn.transport
            if conn.error is not None or transport is None or conn.head_fut is None:
                # Failed, or the upstream already answered (e.g. 413): stop sending; the
                # connection is out of sync with the body framing so it is not reused.
                conn.no_reuse = True
                return pulled
            n = len(chunk)
            if not n:
                continue
            sent += n
            if chunked:
                if n <= _COALESCE:
                    transport.write(b"%X\r\n%b\r\n" % (n, chunk))
                else:
                    transport.write(b"%X\r\n" % n)
                    transport.write(chunk)
                    transport.write(_CRLF)
            else:
                if sent > given:
                    conn.fail(ResetError("request body is longer than its content-length"))
                    raise ValueError(f"request body is longer than content-length {given}")
                transport.write(chunk)
            if conn.write_paused:
                await self._drain(conn, idle_timeout, deadline)
        if conn.error is not None or conn.transport is None or conn.head_fut is None:
            conn.no_reuse = True
            return pulled
        if chunked:
            conn.transport.write(_LAST_CHUNK)
        elif sent != given:
            conn.fail(ResetError("request body is shorter than its content-length"))
            raise ValueError(f"request body has {sent} bytes, content-length says {given}")
        return pulled

    async def _drain(self, conn: _Conn, idle_timeout: float | None, deadline: float | None) -> None:
        loop = self._loop
        when, error_type = _deadline_of(loop, idle_timeout, deadline, IdleTimeout)
        while conn.write_paused and conn.error is None:
            fut: asyncio.Future[None] = loop.create_future()
            conn.drain_fut = fut
            if when is not None:
                conn.arm(when, error_type, "upstream stopped reading the request body")
            await fut
            conn.disarm()

    def close(self) -> None:
        """Close idle connections; in-flight ones close when their response ends."""
        self._closed = True
        fast, self._fast_idle[:] = list(self._fast_idle), []
        for c in fast:
            c.abort()
        idle = self._idle
        self._idle = []
        for conn in idle:
            conn.idle = False
            conn.error = ResetError("pool closed")
            if conn.transport is not None:
                conn.transport.close()


class Http1Client:
    """Pools keyed by (host, port), created on first use; create it inside the running loop."""

    __slots__ = ("_options", "_pools")

    def __init__(self, **pool_options: object) -> None:
        self._pools: dict[tuple[str, int], Http1Pool] = {}
        self._options = pool_options

    def pool(self, host: str, port: int) -> Http1Pool:
        """The pool for one endpoint."""
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = Http1Pool(host, port, **self._options)  # type: ignore[arg-type]
            self._pools[key] = pool
        return pool

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: Body = None,
        *,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> Response:
        """Http1Pool.request on the endpoint's pool."""
        return await self.pool(host, port).request(
            method,
            target,
            headers,
            body,
            first_byte_timeout=first_byte_timeout,
            idle_timeout=idle_timeout,
            deadline=deadline,
        )

    def close(self) -> None:
        """Close every pool."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
