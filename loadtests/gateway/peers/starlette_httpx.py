"""The Starlette + httpx peer: the reverse proxy most Python teams write first.

A catch-all Starlette route that forwards with a shared `httpx.AsyncClient` and streams the
response back (`StreamingResponse` over `aiter_raw`). Served by granian, one worker:

    BENCH_UPSTREAM=http://127.0.0.1:19001 granian --interface asgi --workers 1 \
        --working-dir loadtests/gateway/peers starlette_httpx:app
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:19001").rstrip("/")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
client = httpx.AsyncClient(
    base_url=UPSTREAM,
    timeout=httpx.Timeout(None),
    limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
)


async def proxy(request: Request) -> StreamingResponse:
    """Forwards one request to the upstream and streams the response back."""
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    upstream_request = client.build_request(
        request.method,
        request.url.path + ("?" + request.url.query if request.url.query else ""),
        headers=headers,
        content=request.stream() if has_body else None,
    )
    upstream = await client.send(upstream_request, stream=True)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
        background=BackgroundTask(upstream.aclose),
    )


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    """Closes the pooled client on shutdown."""
    yield
    await client.aclose()


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
app = Starlette(routes=[Route("/{path:path}", proxy, methods=METHODS)], lifespan=lifespan)
