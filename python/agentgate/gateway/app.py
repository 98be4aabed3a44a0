"""The data-plane RSGI handler for granian: decide via the Engine, then proxy with streaming.

No framework, no per-request logging: one decision call, one upstream request per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from itertools import count
from time import perf_counter
from typing import Any, cast

from agentgate._core import ContentDigestCheck
from agentgate.config import ConfigError, GatewayConfig, load_config
from agentgate.gateway.engine import Engine, Flight, Rejected
from agentgate.gateway.health import HealthChecker
from agentgate.gateway.http1 import (
    ClientGone,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    FirstByteTimeout,
    IdleTimeout,
    ResetError,
    Response,
    UpstreamError,
    UpstreamTimeout,
)
from agentgate.gateway.problem import problem
from agentgate.gateway.sync import start_sync
from agentgate.gateway.upstream import Endpoint, UpstreamClient
from agentgate.observe.metrics import Metrics

__all__ = ["CONFIG_ENV", "Gateway", "app"]

CONFIG_ENV = "AGENTGATE_CONFIG"
RELOAD_ENV = "AGENTGATE_RELOAD_FILE"
log = logging.getLogger("agentgate.gateway")

_BUFFER_REQUEST = 64 * 1024  # small bodies are read whole so a retry can replay them
_BUFFER_RESPONSE = 256 * 1024  # known-length small responses go out in one write
_PUBLISH_EVERY = 0.5
_WATCH_AFTER = 0.05  # requests running longer get a client-disconnect watcher


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
        self._live: set[Flight] = set()
        self._rid_prefix = ""
        self._rid_seq = count()
        self._loop: asyncio.AbstractEventLoop  # set by __rsgi_init__

    # ---- lifecycle ----
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Per-worker setup inside the worker's loop."""
        self._loop = loop
        # request ids: a random per-worker prefix plus a counter, unique without uuid4 per call
        self._rid_prefix = os.urandom(8).hex()
        cfg = self._initial
        if cfg is None:
            if not self.config_path:
                raise RuntimeError(f"set {CONFIG_ENV} to the config file")
            cfg = load_config(self.config_path)
            self._stamp = self._file_stamp()
        loop.run_until_complete(self._install(cfg))
        start_sync(self, loop)  # no-op unless AGENTGATE_DATABASE_URL / AGENTGATE_DATA_DIR is set
        if self.config_path:
            self._tasks.append(loop.create_task(self._watch_config()))
        self._tasks.append(loop.create_task(self._publish()))
        self._tasks.append(loop.create_task(self._sweep()))

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Per-worker teardown."""
        for t in self._tasks:
            t.cancel()
        if self._health is not None:
            self._health.stop()
        if self.client is not None:
            loop.run_until_complete(self.client.close())
        self.metrics.flush()

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
        given_rid = get("x-request-id")
        rid = given_rid or f"{self._rid_prefix}{next(self._rid_seq):016x}"
        peer = scope.client
        client_ip = peer.rpartition(":")[0] or peer
        method = scope.method
        host = scope.authority or get("host") or ""
        loop = self._loop
        d = engine.admit(
            method,
            host,
            scope.path,
            scope.query_string,
            headers,
            client_ip,
            scope.scheme,
            perf_counter(),
            None if given_rid else rid,
        )
        if type(d) is Rejected:
            self._reject(proto, d, rid)
            return
        assert type(d) is Flight
        d.proto = proto
        d.task = asyncio.current_task(loop)  # passing the loop skips a running-loop lookup
        if d.ticket is not None:
            # queueing can take long: watch for the client leaving right away
            watcher = self._watch(d)
            try:
                rej = await engine.wait(d)
            except asyncio.CancelledError:
                watcher.cancel()
                if watcher.done() and not watcher.cancelled() and d.task is not None:
                    d.task.uncancel()  # the client left while queued; the ticket is withdrawn
                    return
                raise
            if rej is not None:
                watcher.cancel()
                engine.finish(d, 0.0, "cancelled")
                self.metrics.shed(d)
                self._reject(proto, rej, rid)
                return
        else:
            # most requests end long before anyone could notice a disconnect: the sweeper
            # watches only those still running after _WATCH_AFTER
            self._live.add(d)
        client.in_flight += 1
        status = 502
        try:
            status = await self._proxy(proto, engine, client, d, method, rid)
        except StreamCut:
            raise
        except asyncio.CancelledError:
            status = 499  # client went away; the upstream request was cancelled with us
            d.outcome = "cancelled"
            w = d.watcher
            if w is None or not w.done() or w.cancelled():
                raise
            if d.task is not None:
                d.task.uncancel()
        finally:
            self._live.discard(d)
            w = d.watcher
            if w is not None:
                w.cancel()
            client.in_flight -= 1
            engine.finish(d, d.latency, d.outcome)
            # counted in the core (see Metrics); perf_counter: uvloop's clock has 1 ms steps
            d.admission.record(status, perf_counter() - d.started, d.upstream_s)

    def _watch(self, d: Flight) -> asyncio.Future[Any]:
        """Cancel the request's task when its client disconnects."""
        w: asyncio.Future[Any] = asyncio.ensure_future(d.proto.client_disconnect())
        task = d.task

        def gone(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and task is not None and not task.done():
                task.cancel()

        w.add_done_callback(gone)
        d.watcher = w
        return w

    async def _sweep(self) -> None:
        # one timer for all requests instead of a watcher task per request
        live = self._live
        while True:
            await asyncio.sleep(_WATCH_AFTER)
            if not live:
                continue
            old = perf_counter() - _WATCH_AFTER
            for d in [d for d in live if d.started <= old]:
                live.discard(d)
                if d.watcher is None and d.task is not None and not d.task.done():
                    self._watch(d)

    def _reject(self, proto: Any, r: Rejected, rid: str) -> None:
        self.metrics.rejected(r.status)
        h, body = problem(r.status, r.title, r.detail, rid, r.headers, r.reason)
        proto.response_bytes(r.status, h, body)

    def _endpoint(self, client: UpstreamClient, d: Flight) -> Endpoint | None:
        try:
            return client.endpoints[d.agent.name][d.url]
        except KeyError:
            pass
        eps = client.endpoints.get(d.agent.name)
        ep = None if eps is None else eps.get(d.url)
        if ep is None and self.client is not None and self.client is not client:
            # a retry after a reload may pick an endpoint only the new config has
            eps = self.client.endpoints.get(d.agent.name)
            ep = None if eps is None else eps.get(d.url)
        return ep

    async def _proxy(
        self,
        proto: Any,
        engine: Engine,
        client: UpstreamClient,
        d: Flight,
        method: str,
        rid: str,
    ) -> int:
        a = d.admission
        block = a.block
        assert block is not None  # admit_request always encodes one
        framing = a.framing  # from the client's headers: -1 none, -2 chunked, else the length
        has_host = a.block_has_host
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
        elif framing >= 0:
            if framing <= _BUFFER_REQUEST:
                body = await proto() if framing else b""
            else:
                body = _stream_body(proto, max_body)
                replayable = False
        elif framing == -2:
            body = _stream_body(proto, max_body)
            replayable = False
        pol = d.agent.config
        loop = self._loop
        rl = d.ratelimit
        extra = None if rl is None else [("ratelimit-policy", rl[0]), ("ratelimit", rl[1])]
        total = d.agent.total_timeout
        total_deadline = loop.time() + total if total else None
        while True:
            resp: Response | None = None
            fail: _Attempt | None = None
            retry_after: float | None = None
            # the common case inline; _endpoint handles misses (e.g. a retry after a reload)
            eps = client.endpoints.get(d.agent.name)
            ep = None if eps is None else eps.get(d.url)
            if ep is None:
                ep = self._endpoint(client, d)
            start = perf_counter()
            try:
                if ep is None:
                    raise ResetError("endpoint no longer configured")
                prefix = ep.prefix
                target = prefix + d.upstream_path if prefix else d.upstream_path
                if replayable:
                    # the core's connection answers small complete responses to the client
                    # itself; anything else comes back as a Response for the code below
                    out = await ep.pool.exchange(
                        method,
                        target,
                        block,
                        framing,
                        has_host,
                        cast("bytes | None", body),
                        proto,
                        rid,
                        extra,
                        total_deadline,
                    )
                    if type(out) is int:
                        d.latency = d.upstream_s = perf_counter() - start
                        d.outcome = "success"
                        return out
                    resp = cast(Response, out)
                else:
                    resp = await ep.pool.request(
                        method,
                        target,
                        (),
                        body,
                        deadline=total_deadline,
                        block=block,
                        framing=framing,
                        block_has_host=has_host,
                    )
            except ClientGone:
                # the upstream answered in full but the client had left: nothing to send
                d.latency = perf_counter() - start
                d.outcome = "success"
                return 499
            except UpstreamError as e:
                fail = _failure(e)
            except _BodyTooLarge:
                fail = _TOO_LARGE
            except ValueError as e:
                fail = _Attempt("error", 502, "Bad Gateway", f"cannot forward the request: {e}")
            d.latency = latency = perf_counter() - start
            if resp is not None:
                d.upstream_s = latency
                st = resp.status
                if st < 500 and st != 429:
                    if resp.body_complete:
                        # the common case: a small body arrived with the head: one write
                        proto.response_bytes(st, _response_headers(resp, d, rid), resp.body_bytes())
                        resp.release()
                        d.outcome = "success"
                        return st
                    try:
                        return await self._respond(proto, d, resp, rid)
                    except _Attempt as f:
                        fail = f
                        resp = None
                else:
                    d.outcome = "failure" if st >= 500 else "success"
                    retry_after = resp.head.retry_after
            if fail is not None:
                d.outcome = "failure"
                kind, status = fail.kind, fail.status
            else:
                assert resp is not None
                status = resp.status
                kind = str(status)
            retry_on = pol.retries.on
            can_retry = (
                (kind in retry_on or (resp is not None and "5xx" in retry_on and status >= 500))
                and (replayable or body is None)
                and (retry_after is None or retry_after <= pol.retries.backoff.max)
                and (total_deadline is None or loop.time() + (retry_after or 0.0) < total_deadline)
                and engine.retry(d, method, d.latency, d.outcome)
            )
            if can_retry:
                if resp is not None:
                    resp.release()
                    self.metrics.upstream_latency(d, d.upstream_s)
                    d.upstream_s = -1.0
                self.metrics.retry(d)
                delay = engine.backoff(d)
                if retry_after is not None and retry_after > delay:
                    delay = retry_after
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            if resp is not None:
                # out of retries: the upstream's own answer goes to the client as it is
                return await self._respond(proto, d, resp, rid, False)
            assert fail is not None
            h, pbody = problem(fail.status, fail.title, fail.detail, rid, (), fail.reason)
            proto.response_bytes(fail.status, h, pbody)
            return fail.status

    @staticmethod
    async def _respond(proto: Any, d: Flight, resp: Response, rid: str, record: bool = True) -> int:
        status = resp.status
        out = _response_headers(resp, d, rid)
        if resp.body_complete:
            proto.response_bytes(status, out, resp.body_bytes())
            resp.release()
            if record:
                d.outcome = "success" if status < 500 else "failure"
            return status
        ok = False
        transport = None
        try:
            length = resp.head.content_length
            if 0 <= length <= _BUFFER_RESPONSE:
                try:
                    data = await resp.read()
                except UpstreamTimeout as e:
                    raise _failure(e) from None
                except UpstreamError:
                    raise _Attempt(
                        "reset", 502, "Bad Gateway", "upstream closed the connection"
                    ) from None
                proto.response_bytes(status, out, data)
                ok = True
                return status
            transport = proto.response_stream(status, out)
            send = transport.send_bytes
            try:
                async for chunk in resp:
                    await send(chunk)
            except UpstreamError:
                # Headers are gone already; aborting the stream is the only signal left. granian
                # cuts the connection when the stream object is freed, and the traceback keeps
                # this frame alive (until a GC pass, with reference cycles): drop it first.
                del send
                transport = None
                raise StreamCut from None
            ok = True
            return status
        finally:
            if record:
                d.outcome = "success" if ok and status < 500 else "failure"
            resp.release()  # closes the upstream connection unless the body ended


class StreamCut(Exception):
    """The upstream stream broke after the response started; the client connection is cut."""


_TOO_LARGE = _Attempt("too-large", 413, "Content Too Large", "request body too large")
_TIMEOUTS: dict[type[UpstreamError], str] = {
    ConnectTimeout: "upstream connect timeout",
    FirstByteTimeout: "upstream first byte timeout",
    IdleTimeout: "upstream idle timeout",
    DeadlineExceeded: "upstream total timeout",
}


def _failure(e: UpstreamError) -> _Attempt:
    """The problem an upstream error maps to (502, or 504 for timeouts)."""
    what = _TIMEOUTS.get(type(e))
    if what is not None or isinstance(e, UpstreamTimeout):
        return _Attempt("timeout", 504, "Gateway Timeout", what or "upstream timeout")
    if isinstance(e, ConnectError):
        return _Attempt("connect-failure", 502, "Bad Gateway", f"connect failed: {e}")
    if isinstance(e, ResetError):
        return _Attempt("reset", 502, "Bad Gateway", "upstream closed the connection")
    return _Attempt("error", 502, "Bad Gateway", f"upstream error: {e}")


def _response_headers(resp: Response, d: Flight, rid: str) -> list[tuple[str, str]]:
    """The upstream's response headers minus hop-by-hop ones, plus request id and RateLimit."""
    head = resp.head
    # the core's parser already dropped hop-by-hop fields and those named in Connection
    out = head.forward if head.has_request_id else [*head.forward, ("x-request-id", rid)]
    rl = d.ratelimit
    if rl is not None:
        out = [*out, ("ratelimit-policy", rl[0]), ("ratelimit", rl[1])]
    return out


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
