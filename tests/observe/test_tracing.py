"""Control-plane tracing: spans exported over OTLP/HTTP to a receiver that decodes the protobuf
with opentelemetry-proto; W3C trace context is continued."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from aiohttp import web
from observe_servers import _LoopThread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agentgate.observe import tracing
from agentgate.observe.settings import TracingConfig


class OtlpReceiver:
    """POST /v1/traces → ExportTraceServiceRequest, decoded and kept."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[Any] = []
        self.cond = threading.Condition()
        self.lt = _LoopThread()

    async def _traces(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
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
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def start(self) -> str:
        async def go() -> int:
            app = web.Application()
            app.router.add_post("/v1/traces", self._traces)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        return f"http://127.0.0.1:{self.lt.run(go())}"

    def stop(self) -> None:
        self.lt.run(self.runner.cleanup())
        self.lt.stop()


async def test_api_spans_reach_an_otlp_receiver() -> None:
    rx = OtlpReceiver()
    url = rx.start()
    try:
        provider = tracing.setup_tracing(
            TracingConfig(otlp_endpoint=url, sampling_ratio=1.0, service_name="agentgate-test"),
            schedule_delay_ms=50,
        )
        assert provider is not None

        async def hello(_: Any) -> PlainTextResponse:
            return PlainTextResponse("hi")

        async def boom(_: Any) -> PlainTextResponse:
            return PlainTextResponse("no", status_code=503)

        app = Starlette(
            routes=[Route("/api/hello", hello), Route("/api/boom", boom)],
            middleware=[Middleware(tracing.TracingMiddleware)],
        )
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        parent = "00f067aa0ba902b7"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.get("/api/hello", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
            assert r.status_code == 200
            assert (await c.get("/api/boom")).status_code == 503
        provider.force_flush()
        with rx.cond:
            rx.cond.wait_for(lambda: len(rx.spans) >= 2, 20)
        by_name = {s.name: s for s in rx.spans}
        s = by_name["GET /api/hello"]
        assert s.trace_id.hex() == trace_id and s.parent_span_id.hex() == parent
        attrs = {a.key: a.value for a in s.attributes}
        assert attrs["http.response.status_code"].int_value == 200
        b = by_name["GET /api/boom"]
        assert b.trace_id.hex() != trace_id and not b.parent_span_id  # a new trace
        assert b.status.code == 2  # STATUS_CODE_ERROR
        names = {a.key: a.value.string_value for a in rx.resources[0].attributes}
        assert names["service.name"] == "agentgate-test"
    finally:
        tracing.shutdown_tracing()
        rx.stop()


def test_no_endpoint_no_tracing() -> None:
    assert tracing.setup_tracing(TracingConfig()) is None
