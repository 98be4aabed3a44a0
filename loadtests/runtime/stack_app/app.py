"""A bench agent with a typical agent stack imported (Starlette, pydantic, aiohttp, orjson)."""

from __future__ import annotations

import aiohttp  # noqa: F401  (imported for its cost: agents call models over HTTP)
import orjson
import pydantic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Reply(pydantic.BaseModel):
    """What the agent answers."""

    ok: bool
    path: str


async def health(_: Request) -> Response:
    """Readiness."""
    return Response(b'{"ok":true}', media_type="application/json")


async def answer(request: Request) -> Response:
    """Any other path."""
    return Response(
        orjson.dumps(Reply(ok=True, path=request.url.path).model_dump()),
        media_type="application/json",
    )


app = Starlette(routes=[Route("/health", health), Route("/{p:path}", answer)])
