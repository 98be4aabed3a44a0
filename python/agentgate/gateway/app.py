"""The data-plane RSGI handler for granian: decide via the Engine, then proxy with streaming.

No framework, no per-request logging: one decision call, one upstream request per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from agentgate._core import ContentDigestCheck
from agentgate.config import ConfigError, GatewayConfig, load_config
from agentgate.gateway.engine import Engine, Flight, Rejected
from agentgate.gateway.health import HealthChecker
from agentgate.gateway.problem import problem
from agentgate.gateway.upstream import UpstreamClient, make_url
from agentgate.observe.metrics import Metrics

__all__ = ["CONFIG_ENV", "Gateway", "app"]

CONFIG_ENV = "AGENTGATE_CONFIG"
RELOAD_ENV = "AGENTGATE_RELOAD_FILE"
log = logging.getLogger("agentgate.gateway")

# RFC 9110 §7.6.1 connection-specific fields, plus Host which we set per endpoint
_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_AUTH_HEADERS = frozenset({"authorization", "x-api-key"})
_BUFFER_REQUEST = 64 * 1024  # small bodies are read whole so a retry can replay them
_BUFFER_RESPONSE = 256 * 1024  # known-length small responses go out in one write
_PUBLISH_EVERY = 0.5


class _BodyTooLarge(Exception):
    pass


class _Attempt(Exception):
    """An attempt failed before any response byte reached the client."""

    def __init__(self, kind: str, status: int, title: str, detail: str) -> None:
        self.kind = kind
        self.status = status
        self.title = title
        self.detail = detail

    @property
    def reason(self) -> str:
        """Problem type suffix."""
        return "upstream_" + self.kind.replace("-", "_")


def _connection_tokens(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(","))


class Gateway:
    """RSGI application: `__rsgi_init__` builds the engine per worker, `__rsgi__` serves."""

    def __init__(self, config: GatewayConfig | None = None, config_path: str | None = None) -> None:
        self.config_path = config_path or os.environ.get(CONFIG_ENV)
        self._initial = config
        self.engine: Engine | None = None
        self.client: UpstreamClient | None = None
        self.metrics = Metrics()
        self._tasks: list[asyncio.Task[None]] = []
        self._health: HealthChecker | None = None
        self._stamp: tuple[float, float] = (0.0, 0.0)
        self._sig_max_body = 1024 * 1024

    # ---- lifecycle ----
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Per-worker setup inside the worker's loop."""
        cfg = self._initial
        if cfg is None:
            if not self.config_path:
                raise RuntimeError(f"set {CONFIG_ENV} to the config file")
            cfg = load_config(self.config_path)
            self._stamp = self._file_stamp()
        loop.run_until_complete(self._install(cfg))
        if self.config_path:
            self._tasks.append(loop.create_task(self._watch_config()))
        self._tasks.append(loop.create_task(self._publish()))

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Per-worker teardown."""
        for t in self._tasks:
            t.cancel()
        if self._health is not None:
            self._health.stop()
        if self.client is not None:
            loop.run_until_complete(self.client.close())

    async def _install(self, cfg: GatewayConfig) -> None:
        engine = self.engine
        if engine is None:
            engine = Engine(cfg)
        else:
            # same core: breakers, rate-limit budgets and queues of unchanged parts carry over
            engine.replace(cfg)
        client = UpstreamClient(cfg)
        old_client, old_health = self.client, self._health
        self.engine, self.client = engine, client
        self._sig_max_body = cfg.signatures.max_body
        self.metrics.bind(engine)
        self._health = HealthChecker(engine, client, self.metrics)
        self._health.start()
        if old_health is not None:
            old_health.stop()
        if old_client is not None:
            asyncio.get_running_loop().create_task(self._close_later(old_client))

    @staticmethod
    async def _close_later(client: UpstreamClient) -> None:
        # in-flight requests on the old config finish on the old sessions
        for _ in range(600):
            if client.in_flight == 0:
                break
            await asyncio.sleep(0.5)
        await client.close()

    def _file_stamp(self) -> tuple[float, float]:
        stamps = []
        for p in (self.config_path, os.environ.get(RELOAD_ENV)):
            try:
                stamps.append(os.stat(p).st_mtime_ns if p else 0.0)
            except OSError:
                stamps.append(0.0)
        return (float(stamps[0]), float(stamps[1]))

    async def _publish(self) -> None:
        # breaker/in-flight/queue gauges from the core, off the request path
        while True:
            await asyncio.sleep(_PUBLISH_EVERY)
            if self.engine is not None:
                self.metrics.publish(self.engine)

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            stamp = self._file_stamp()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            await self.reload()

    async def reload(self) -> bool:
        """Load the config file again; keep the running config if the new one is invalid."""
        if not self.config_path:
            return False
        try:
            cfg = load_config(self.config_path)
        except ConfigError as e:
            log.error("config reload refused, keeping the running config: %s", e)
            return False
        try:
            await self._install(cfg)
        except ValueError as e:
            log.error("config reload refused, keeping the running config: %s", e)
            return False
        log.info("config reloaded from %s", self.config_path)
        return True

    # ---- serving ----
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        """Serve one request."""
        if scope.proto != "http":
            return
        engine = self.engine
        client = self.client
        assert engine is not None and client is not None
        headers = scope.headers
        get = headers.get
        rid = get("x-request-id") or uuid.uuid4().hex
        client_ip = scope.client.rpartition(":")[0] or scope.client
        method = scope.method
        host = scope.authority or get("host") or ""
        d = engine.admit(
            method, host, scope.path, scope.query_string, headers, client_ip, scope.scheme
        )
        if type(d) is Rejected:
            self._reject(proto, d, rid)
            return
        assert isinstance(d, Flight)
        watcher = asyncio.ensure_future(proto.client_disconnect())
        task = asyncio.current_task()
        if task is not None:
            watcher.add_done_callback(lambda _f: task.cancel())
        if d.ticket is not None:
            try:
                rej = await engine.wait(d)
            except asyncio.CancelledError:
                watcher.cancel()
                if watcher.done() and task is not None:
                    task.uncancel()  # the client left while queued; the ticket is withdrawn
                    return
                raise
            if rej is not None:
                watcher.cancel()
                engine.finish(d, 0.0, "cancelled")
                self.metrics.shed(d)
                self._reject(proto, rej, rid)
                return
        client.in_flight += 1
        self.metrics.start(d)
        status = 502
        try:
            status = await self._proxy(scope, proto, engine, client, d, rid, client_ip)
        except StreamCut:
            raise
        except asyncio.CancelledError:
            status = 499  # client went away; the upstream request was cancelled with us
            d.outcome = "cancelled"
            if not watcher.done():
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        finally:
            watcher.cancel()
            client.in_flight -= 1
            engine.finish(d, d.latency, d.outcome)
            self.metrics.finish(d, status, asyncio.get_running_loop().time() - d.started)

    def _reject(self, proto: Any, r: Rejected, rid: str) -> None:
        self.metrics.rejected(r.status)
        h, body = problem(r.status, r.title, r.detail, rid, r.headers, r.reason)
        proto.response_bytes(r.status, h, body)

    def _upstream_headers(
        self, scope: Any, d: Flight, rid: str, client_ip: str
    ) -> list[tuple[str, str]]:
        items = scope.headers.items()
        drop = _HOP
        conn = scope.headers.get("connection")
        if conn:
            drop = _HOP | _connection_tokens(conn)
        if d.route.hide_auth:
            drop = drop | _AUTH_HEADERS
        out = [(k, v) for k, v in items if k not in drop and k != "x-forwarded-for"]
        xff = scope.headers.get("x-forwarded-for")
        host = scope.authority or scope.headers.get("host") or ""
        out.append(("x-forwarded-for", f"{xff}, {client_ip}" if xff else client_ip))
        out.append(("x-forwarded-proto", scope.scheme))
        if host:
            out.append(("x-forwarded-host", host))
            if d.agent.config.host_header == "preserve":
                out.append(("host", host))
        if scope.headers.get("x-request-id") is None:
            out.append(("x-request-id", rid))
        return out

    async def _proxy(
        self,
        scope: Any,
        proto: Any,
        engine: Engine,
        client: UpstreamClient,
        d: Flight,
        rid: str,
        client_ip: str,
    ) -> int:
        get = scope.headers.get
        method = scope.method
        cl = get("content-length")
        te = get("transfer-encoding")
        max_body = d.route.max_body
        body: bytes | AsyncIterator[bytes] | None = None
        replayable = True
        if d.digest is not None:
            # signed body: buffered under a cap and checked against Content-Digest before any
            # byte goes upstream, since a streamed body cannot be taken back
            cap = self._sig_max_body if max_body is None else min(max_body, self._sig_max_body)
            try:
                body = await _read_capped(proto, cap, d.digest)
            except _BodyTooLarge:
                r = Rejected(413, "too_large", f"signed body exceeds {cap} bytes")
                self._reject(proto, r, rid)
                return 413
            if not d.digest.finish():
                r = Rejected(401, "bad_signature", "Content-Digest does not match the body")
                self._reject(proto, r, rid)
                return 401
        elif cl is not None and cl.isdigit() and int(cl) <= _BUFFER_REQUEST:
            body = await proto() if int(cl) else b""
        elif cl is not None or te is not None:
            body = _stream_body(proto, max_body)
            replayable = False
        up_headers = self._upstream_headers(scope, d, rid, client_ip)
        session = client.session(d.agent.name)
        pol = d.agent.config
        t = pol.timeouts
        retry_on = pol.retries.on
        loop = asyncio.get_running_loop()
        total_deadline = loop.time() + t.total if t.total else None
        while True:
            sent = False
            failed: _Attempt | None = None
            try:
                return await self._attempt(
                    proto, session, d, method, up_headers, body, rid, total_deadline, loop
                )
            except _Attempt as fail:
                d.outcome = "failure"
                failed = fail
                kind, status = fail.kind, fail.status
                retry_after = None
            except _UpstreamStatus as us:
                d.outcome = "failure" if us.resp.status >= 500 else "success"
                kind, status = str(us.resp.status), us.resp.status
                retry_after = us.retry_after
                sent = True
                resp = us.resp
            can_retry = (
                (kind in retry_on or (kind.isdigit() and "5xx" in retry_on and status >= 500))
                and (replayable or body is None)
                and (retry_after is None or retry_after <= pol.retries.backoff.max)
                and (total_deadline is None or loop.time() + (retry_after or 0.0) < total_deadline)
                and engine.retry(d, method, d.latency, d.outcome)
            )
            if can_retry:
                if sent:
                    resp.release()
                self.metrics.retry(d)
                delay = engine.backoff(d)
                if retry_after is not None and retry_after > delay:
                    delay = retry_after
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            if sent:
                # out of retries: the upstream's own answer goes to the client as it is
                return await self._respond(proto, d, resp, rid, total_deadline, loop, False)
            assert failed is not None
            h, pbody = problem(failed.status, failed.title, failed.detail, rid, (), failed.reason)
            proto.response_bytes(failed.status, h, pbody)
            return failed.status

    async def _attempt(
        self,
        proto: Any,
        session: aiohttp.ClientSession,
        d: Flight,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        rid: str,
        total_deadline: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> int:
        t = d.agent.config.timeouts
        deadline = loop.time() + t.first_byte if t.first_byte else None
        if total_deadline is not None and (deadline is None or total_deadline < deadline):
            deadline = total_deadline
        url = make_url(d.url, d.upstream_path)
        start = loop.time()
        try:
            resp = await self._send(session, method, url, headers, body, deadline, total_deadline)
        finally:
            d.latency = loop.time() - start
        self.metrics.upstream_latency(d, d.latency)
        st = resp.status
        if st >= 500 or st == 429:
            ra = resp.headers.get("retry-after")
            raise _UpstreamStatus(resp, float(ra) if ra and ra.isdigit() else None)
        return await self._respond(proto, d, resp, rid, total_deadline, loop)

    @staticmethod
    async def _send(
        session: aiohttp.ClientSession,
        method: str,
        url: Any,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        deadline: float | None,
        total_deadline: float | None,
    ) -> aiohttp.ClientResponse:
        try:
            async with asyncio.timeout_at(deadline):
                return await session.request(
                    method, url, headers=headers, data=body, allow_redirects=False
                )
        except aiohttp.ConnectionTimeoutError:
            raise _Attempt("timeout", 504, "Gateway Timeout", "upstream connect timeout") from None
        except TimeoutError:
            what = "total" if deadline == total_deadline else "first byte"
            raise _Attempt("timeout", 504, "Gateway Timeout", f"upstream {what} timeout") from None
        except aiohttp.ClientConnectorError as e:
            raise _Attempt(
                "connect-failure", 502, "Bad Gateway", f"connect failed: {e.os_error}"
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            raise _Attempt("reset", 502, "Bad Gateway", "upstream closed the connection") from None
        except aiohttp.ClientError as e:
            raise _Attempt(
                "error", 502, "Bad Gateway", f"upstream error: {type(e).__name__}"
            ) from None
        except _BodyTooLarge:
            raise _Attempt(
                "too-large", 413, "Content Too Large", "request body too large"
            ) from None

    async def _respond(
        self,
        proto: Any,
        d: Flight,
        resp: aiohttp.ClientResponse,
        rid: str,
        total_deadline: float | None,
        loop: asyncio.AbstractEventLoop,
        record: bool = True,
    ) -> int:
        status = resp.status
        raw = resp.raw_headers
        conn = resp.headers.get("connection")
        drop = _HOP | _connection_tokens(conn) if conn else _HOP
        out: list[tuple[str, str]] = []
        has_rid = False
        for k, v in raw:
            name = k.decode("latin-1").lower()
            if name in drop:
                continue
            if name == "x-request-id":
                has_rid = True
            out.append((name, v.decode("latin-1")))
        if not has_rid:
            out.append(("x-request-id", rid))
        if d.ratelimit is not None:
            out.append(("ratelimit-policy", d.ratelimit[0]))
            out.append(("ratelimit", d.ratelimit[1]))
        idle = d.agent.config.timeouts.idle
        ok = False
        transport = None
        try:
            length = resp.content_length
            if length is not None and length <= _BUFFER_RESPONSE:
                async with asyncio.timeout_at(_deadline(loop, idle, total_deadline)):
                    data = await resp.read()
                proto.response_bytes(status, out, data)
                ok = True
                return status
            transport = proto.response_stream(status, out)
            content = resp.content
            async with asyncio.timeout_at(_deadline(loop, idle, total_deadline)) as cm:
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    await transport.send_bytes(chunk)
                    cm.reschedule(_deadline(loop, idle, total_deadline))
            ok = True
            return status
        except (TimeoutError, aiohttp.ClientError):
            if transport is None:
                raise _Attempt("timeout", 504, "Gateway Timeout", "upstream idle timeout") from None
            # headers are gone already; aborting the stream is the only signal left
            raise StreamCut from None
        finally:
            if record:
                d.outcome = "success" if ok and status < 500 else "failure"
            if ok:
                resp.release()
            else:
                resp.close()  # drops the upstream connection, so the upstream sees the cancel


class StreamCut(Exception):
    """The upstream stream broke after the response started; the client connection is cut."""


class _UpstreamStatus(Exception):
    def __init__(self, resp: aiohttp.ClientResponse, retry_after: float | None) -> None:
        self.resp = resp
        self.retry_after = retry_after


def _deadline(loop: asyncio.AbstractEventLoop, idle: float, total: float | None) -> float | None:
    d = loop.time() + idle if idle else None
    if total is not None and (d is None or total < d):
        return total
    return d


async def _read_capped(proto: Any, cap: int, digest: ContentDigestCheck) -> bytes:
    parts: list[bytes] = []
    n = 0
    async for chunk in proto:
        n += len(chunk)
        if n > cap:
            raise _BodyTooLarge
        digest.update(chunk)
        parts.append(chunk)
    return b"".join(parts)


async def _stream_body(proto: Any, max_body: int | None) -> AsyncIterator[bytes]:
    n = 0
    async for chunk in proto:
        n += len(chunk)
        if max_body is not None and n > max_body:
            raise _BodyTooLarge
        yield chunk


def app() -> Gateway:
    """Factory for granian (`--factory`): reads the config path from AGENTGATE_CONFIG."""
    return Gateway()


with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401  (granian picks uvloop itself when installed)
