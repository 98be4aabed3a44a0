"""RFC 9457 problem+json for every error the control-plane API returns.

Typed errors (`agentgate.errors`) carry their own status/title; Starlette's HTTP errors (404 for
an unknown route, 405) and body errors (400 malformed JSON, 415 wrong media type) are mapped
here, and anything unexpected becomes a 500 problem without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from agentgate.errors import AgentgateError

__all__ = [
    "PROBLEM_JSON",
    "BadRequest",
    "Unavailable",
    "UnsupportedMediaType",
    "exception_handlers",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("agentgate.api")


class BadRequest(AgentgateError):
    """The body is not parseable (malformed JSON)."""

    status = 400
    title = "Bad request"


class UnsupportedMediaType(AgentgateError):
    """The body is not `application/json`."""

    status = 415
    title = "Unsupported media type"


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response (`type` is always `about:blank`: the status says it all)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def _typed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AgentgateError)
    p = exc.problem()
    extra = {k: v for k, v in p.items() if k not in ("title", "status", "detail")}
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        instance=request.url.path,
        extra=extra,
        headers=headers,
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no such resource: {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return problem_response(
        exc.status_code, str(detail), instance=request.url.path, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal error", instance=request.url.path)


def exception_handlers() -> dict[Any, Any]:
    """Handlers for `Starlette(exception_handlers=...)`."""
    return {AgentgateError: _typed, HTTPException: _http, Exception: _unexpected}


class Unavailable(AgentgateError):
    """A service the endpoint needs is not configured in this process."""

    status = 503
    title = "Service unavailable"
