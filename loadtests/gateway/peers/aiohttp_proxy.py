"""The aiohttp peer: a reverse proxy written the usual way with aiohttp's server and ClientSession.

Streams both ways (request body and response chunks), keeps a pooled ClientSession, strips
hop-by-hop headers. One process, uvloop when available.

    python aiohttp_proxy.py --listen 127.0.0.1:18082 --upstream http://127.0.0.1:19001
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

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
SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


def _filter(headers: object) -> dict[str, str]:
    """Drops hop-by-hop headers (RFC 9110 §7.6.1)."""
    items = headers.items()  # type: ignore[attr-defined]
    return {k: v for k, v in items if k.lower() not in HOP_BY_HOP}


async def proxy(request: web.Request) -> web.StreamResponse:
    """Forwards one request to the upstream and streams the response back."""
    session = request.app[SESSION]
    has_body = request.can_read_body
    async with session.request(
        request.method,
        request.app[UPSTREAM] + request.path_qs,
        headers=_filter(request.headers),
        data=request.content if has_body else None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, headers=_filter(upstream.headers))
        if "Content-Length" in upstream.headers:
            response.content_length = int(upstream.headers["Content-Length"])
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def make_app(upstream: str) -> web.Application:
    """Builds the proxy app with one pooled ClientSession for its lifetime."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=None)
        async with ClientSession(
            connector=connector, timeout=ClientTimeout(total=None), auto_decompress=False
        ) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:18082")
    ap.add_argument("--upstream", default="http://127.0.0.1:19001")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(make_app(args.upstream), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
