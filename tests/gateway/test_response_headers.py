"""The response headers the gateway sends back: hop-by-hop dropped, request id, RateLimit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agentgate._core import Http1ResponseParser
from agentgate.gateway.app import _response_headers


def _headers(raw: list[tuple[str, str]], ratelimit: tuple[str, str] | None = None) -> Any:
    # a real upstream head, parsed by the core's parser as the client does
    wire = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in raw) + "\r\n"
    parser = Http1ResponseParser()
    parser.start(True)  # HEAD: no body whatever the headers say
    head, _, done, _ = parser.feed(wire.encode("latin-1"))
    assert head is not None and done
    resp: Any = SimpleNamespace(head=head)
    d: Any = SimpleNamespace(ratelimit=ratelimit)
    return _response_headers(resp, d, "rid-1")


def test_lowercases_drops_hop_and_adds_request_id() -> None:
    out = _headers(
        [("Content-Length", "3"), ("Keep-Alive", "timeout=5"), ("X-Thing", "a")],
        ("p", "r"),
    )
    assert out == [
        ("content-length", "3"),
        ("x-thing", "a"),
        ("x-request-id", "rid-1"),
        ("ratelimit-policy", "p"),
        ("ratelimit", "r"),
    ]


def test_keeps_upstream_request_id_and_drops_connection_tokens() -> None:
    out = _headers([("Connection", "X-Hop"), ("X-Hop", "1"), ("X-Request-Id", "up")])
    assert out == [("x-request-id", "up")]


def test_request_id_named_in_connection_is_replaced() -> None:
    out = _headers([("Connection", "x-request-id"), ("X-Request-Id", "up")])
    assert out == [("x-request-id", "rid-1")]


def test_repeated_calls_give_the_same_answer() -> None:
    raw = [("Content-Type", "text/plain"), ("TE", "x")]
    assert (
        _headers(raw)
        == _headers(list(raw))
        == [
            ("content-type", "text/plain"),
            ("x-request-id", "rid-1"),
        ]
    )
