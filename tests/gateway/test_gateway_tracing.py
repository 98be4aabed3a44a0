"""Data-plane tracing through a real `agentgate serve`: W3C trace context continued or created
and always forwarded; server and per-attempt client spans exported by the core over OTLP/HTTP
to a receiver that decodes the protobuf with opentelemetry-proto."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gateway_process import Gateway, start_gateway, stop_gateway
from upstreams import Upstream

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class OtlpReceiver:
    """POST /v1/traces: ExportTraceServiceRequest decoded and kept (its own loop thread)."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[Any] = []
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _traces(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        assert request.headers["content-type"] == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.read())
        with self.cond:
            for rs in msg.resource_spans:
                self.resources.append(rs.resource)
                for ss in rs.scope_spans:
                    self.spans.extend(ss.spans)
            self.cond.notify_all()
        return web.Response(body=b"", content_type="application/x-protobuf")

    def start(self) -> str:
        self.thread.start()

        async def go() -> int:
            app = web.Application()
            app.router.add_post("/v1/traces", self._traces)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            return int(server.sockets[0].getsockname()[1])

        port = asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def wait_for(self, trace_hex: str, n: int, timeout: float = 20) -> list[Any]:
        """The spans of one trace once at least `n` arrived (the exporter flushes every 1 s)."""

        def of_trace() -> list[Any]:
            return [s for s in self.spans if s.trace_id.hex() == trace_hex]

        with self.cond:
            self.cond.wait_for(lambda: len(of_trace()) >= n, timeout)
            return of_trace()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    r.url = r.start()  # type: ignore[attr-defined]
    yield r
    r.stop()


def _config(up: Upstream, endpoint: str, ratio: float) -> str:
    return f"""
agents:
  up:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 2, backoff: {{base: 1ms, max: 5ms}}, on: [503]}}
routes:
  - {{id: up, match: {{path_prefix: /up}}, agent: up, strip_prefix: true}}
tracing:
  otlp_endpoint: "{endpoint}"
  sampling_ratio: {ratio}
  service_name: gw-under-test
"""


@pytest.fixture(scope="module")
def gw(
    upstream: Upstream, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    url = receiver.url  # type: ignore[attr-defined]
    g = start_gateway(_config(upstream, url, 0.0), tmp_path_factory.mktemp("trace"))
    yield g
    stop_gateway(g)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _forwarded(echo: dict[str, Any]) -> str:
    return next(v for k, v in echo["headers"] if k.lower() == "traceparent")


async def test_sampled_parent_is_continued_and_spans_exported(
    gw: Gateway, http: aiohttp.ClientSession, receiver: OtlpReceiver
) -> None:
    async with http.get(f"{gw.url}/up/echo", headers={"traceparent": PARENT}) as r:
        assert r.status == 200
        echo = await r.json()
    version, trace, attempt_span, flags = _forwarded(echo).split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    spans = receiver.wait_for(TRACE, 2)
    server = next(s for s in spans if s.kind == 2)
    client = next(s for s in spans if s.kind == 3)
    assert server.parent_span_id.hex() == "00f067aa0ba902b7"
    assert client.parent_span_id == server.span_id
    # the agent's parent is the attempt's client span: its trace continues under ours
    assert client.span_id.hex() == attempt_span
    attrs = {a.key: a.value for a in server.attributes}
    assert attrs["http.route"].string_value == "up"
    assert attrs["agentgate.agent"].string_value == "up"
    assert attrs["http.response.status_code"].int_value == 200
    assert server.end_time_unix_nano >= client.end_time_unix_nano >= client.start_time_unix_nano
    res = {a.key: a.value.string_value for a in receiver.resources[0].attributes}
    assert res["service.name"] == "gw-under-test"


async def test_each_attempt_is_its_own_span(
    gw: Gateway, http: aiohttp.ClientSession, receiver: OtlpReceiver
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with http.get(
        f"{gw.url}/up/flaky?key=trace-retry&fail=1", headers={"traceparent": parent}
    ) as r:
        assert r.status == 200
    spans = receiver.wait_for("0af7651916cd43dd8448eb211c80319c", 3)
    attempts = sorted((s for s in spans if s.kind == 3), key=lambda s: s.start_time_unix_nano)
    assert len(attempts) == 2
    codes = [{a.key: a.value for a in s.attributes} for s in attempts]
    assert [c["http.response.status_code"].int_value for c in codes] == [503, 200]
    assert [c["agentgate.attempt"].int_value for c in codes] == [1, 2]
    assert attempts[0].status.code == 2  # error


async def test_unsampled_requests_forward_context_and_record_nothing(
    gw: Gateway, http: aiohttp.ClientSession, receiver: OtlpReceiver
) -> None:
    # no parent and sampling_ratio 0: a new trace, not sampled, still forwarded
    async with http.get(f"{gw.url}/up/echo") as r:
        echo = await r.json()
    _, trace, _, flags = _forwarded(echo).split("-")
    assert flags == "00" and len(trace) == 32 and trace != "0" * 32
    # an unsampled parent is followed too
    unsampled = "00-11111111111111111111111111111111-2222222222222222-00"
    async with http.get(f"{gw.url}/up/echo", headers={"traceparent": unsampled}) as r:
        echo = await r.json()
    assert _forwarded(echo).startswith("00-11111111111111111111111111111111-")
    assert _forwarded(echo).endswith("-00")
    # a marker request that is sampled: once its spans arrive, earlier ones would have too
    marker = "00-33333333333333333333333333333333-4444444444444444-01"
    async with http.get(f"{gw.url}/up/echo", headers={"traceparent": marker}) as r:
        await r.read()
    receiver.wait_for("33333333333333333333333333333333", 2)
    assert not [s for s in receiver.spans if s.trace_id.hex() in (trace, "1" * 32)]


async def test_invalid_traceparent_starts_a_new_trace(
    gw: Gateway, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
    async with http.get(f"{gw.url}/up/echo", headers={"traceparent": bad}) as r:
        echo = await r.json()
    _, trace, _, _ = _forwarded(echo).split("-")
    assert trace != "0" * 32
