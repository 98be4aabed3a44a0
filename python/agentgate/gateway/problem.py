"""RFC 9457 problem+json responses, rendered without a framework."""

from __future__ import annotations

import orjson

__all__ = ["TYPE_BASE", "problem"]

TYPE_BASE = "urn:agentgate:problem:"
"""Problem `type` URIs are this base plus the machine-readable reason (`rate_limited`, …)."""


def problem(
    status: int,
    title: str,
    detail: str,
    request_id: str,
    extra: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    reason: str | None = None,
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of an `application/problem+json` answer."""
    body = orjson.dumps(
        {
            "type": TYPE_BASE + reason if reason else "about:blank",
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
