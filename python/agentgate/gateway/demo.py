"""The bundled demo echo agent that `make run` starts: echoes the request as JSON, plus SSE."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

__all__ = ["main", "make_app"]


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.json_response(
        {
            "agent": "demo-echo",
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": body.decode("utf-8", "replace"),
        }
    )


async def _health(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        for i in range(5):
            await resp.write(f"data: token {i}\n\n".encode())
            await asyncio.sleep(0.2)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away: that is how streams end
    return resp


def make_app() -> web.Application:
    """The demo echo agent app."""
    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_get("/stream", _stream)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the demo echo agent on HOST:PORT (first argument)."""
    args = sys.argv[1:] if argv is None else argv
    host, _, port = (args[0] if args else "127.0.0.1:9001").rpartition(":")
    web.run_app(make_app(), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
