"""Control-plane tracing with the OpenTelemetry SDK, exported over OTLP/HTTP (protobuf).

The data plane records its spans in the core (see the issue's tracing section); this module
covers the control plane: one server span per admin/API request, W3C `traceparent` /
`tracestate` continued when present, sampled by `tracing.sampling_ratio` (parent-based), and
exported in batches to `tracing.otlp_endpoint` (`…/v1/traces` is appended when the URL has no
path). The SDK is optional (`pip install agentgate[tracing]`); without an endpoint nothing is
set up and the middleware costs one attribute check per request.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from agentgate.observe.settings import TracingConfig

__all__ = ["TracingMiddleware", "setup_tracing", "shutdown_tracing"]

log = logging.getLogger("agentgate.tracing")
_provider: Any = None


def _traces_url(endpoint: str) -> str:
    p = urlsplit(endpoint)
    if p.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def setup_tracing(cfg: TracingConfig, *, schedule_delay_ms: int = 1000) -> Any:
    """Install a tracer provider exporting to `cfg.otlp_endpoint`; None when not configured."""
    global _provider
    if not cfg.otlp_endpoint:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        log.error(
            "tracing.otlp_endpoint is set but the OpenTelemetry SDK is not installed "
            "(pip install agentgate[tracing]); no spans are exported"
        )
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=ParentBased(TraceIdRatioBased(cfg.sampling_ratio)),
    )
    exporter = OTLPSpanExporter(endpoint=_traces_url(cfg.otlp_endpoint), headers=dict(cfg.headers))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
    )
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the exporter."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


class TracingMiddleware:
    """One server span per HTTP request while a provider is installed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _provider is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import trace
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        tracer = trace.get_tracer("agentgate.control")
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        with tracer.start_as_current_span(
            f"{scope['method']} {scope.get('path', '')}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope.get("path", "")},
        ) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                span.set_attribute("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    span.set_status(Status(StatusCode.ERROR))
