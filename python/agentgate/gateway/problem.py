"""RFC 9457 problem+json responses, rendered without a framework."""

from __future__ import annotations

import orjson

__all__ = ["problem"]

_TYPE = "about:blank"


def problem(
    status: int, title: str, detail: str, request_id: str, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of an `application/problem+json` answer."""
    body = orjson.dumps(
        {
            "type": _TYPE,
            "title": title,
            "status": status,
            "detail": detail,
            "request_id": request_id,
        }
    )
    headers = [
        ("content-type", "application/problem+json"),
        ("content-length", str(len(body))),
        ("x-request-id", request_id),
    ]
    headers.extend(extra)
    return headers, body
