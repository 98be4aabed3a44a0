"""Upstream response parsing: agentgate's Http1ResponseParser against httptools (llhttp).

One operation = one typical 1 KiB keep-alive response (Content-Type, Date, Content-Length and a
body) arriving in one segment, parsed from Python on a reused parser. httptools calls back into
Python once per event; the callbacks do what the gateway's upstream client does with them
(decode header tuples, collect the reason and the body, read status/version/keep-alive).
agentgate makes one call (after `start`) that returns the head, the body and the completion.

`httptools+forward` adds what the gateway then does in Python with httptools' header list and
agentgate's head already carries (`forward`, `has_request_id`): lowercase names through a memo,
drop hop-by-hop fields and the fields named in Connection.
"""

from __future__ import annotations

import httptools

from agentgate._core import Http1ResponseParser
from loadtests.core.harness import Case

_BODY = b'{"ok": true, "data": "' + b"x" * 900 + b'"}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Date: Fri, 21 Nov 2025 09:00:00 GMT\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n"
    b"\r\n" + _BODY
)


class _Callbacks:
    """The httptools protocol object, shaped like the gateway's upstream connection."""

    __slots__ = ("body", "done", "headers", "parser", "reason", "status", "version")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.reason = b""
        self.body: list[bytes] = []
        self.done = False
        self.status = 0
        self.version = ""
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.headers = []
        self.reason = b""
        self.body = []
        self.done = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        self.version = parser.get_http_version()
        self.reason.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = self.parser.should_keep_alive()


_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
_LOWER: dict[str, str] = {}


def _forward(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """The gateway's per-response header pass (app._response_headers without its additions)."""
    low = _LOWER
    out = []
    conn = None
    has_rid = False
    for k, v in headers:
        n = low.get(k)
        if n is None:
            n = low[k] = k.lower()
        if n in _HOP:
            if n == "connection" and conn is None:
                conn = v
            continue
        if n == "x-request-id":
            has_rid = True
        out.append((n, v))
    if conn:
        drop = frozenset(t.strip().lower() for t in conn.split(","))
        out = [kv for kv in out if kv[0] not in drop]
        has_rid = has_rid and "x-request-id" not in drop
    return out, has_rid


def cases() -> list[Case]:
    """Response parsing cases; agentgate is the baseline."""
    ours = Http1ResponseParser()
    start = ours.start
    feed = ours.feed

    def agentgate() -> object:
        start(False)
        head, body, done, reusable = feed(RESPONSE)
        if not (done and reusable) or head is None or body is None:
            raise AssertionError("response not parsed")
        return head

    peer = _Callbacks()
    feed_data = peer.parser.feed_data

    def llhttp() -> object:
        feed_data(RESPONSE)
        if not peer.done:
            raise AssertionError("response not parsed")
        return peer.headers

    def llhttp_forward() -> object:
        feed_data(RESPONSE)
        if not peer.done:
            raise AssertionError("response not parsed")
        return _forward(peer.headers)

    return [
        Case("http1-response", "agentgate", agentgate, baseline=True),
        Case("http1-response", "httptools", llhttp),
        Case("http1-response", "httptools+forward", llhttp_forward),
    ]


if __name__ == "__main__":
    import timeit

    for c in cases():
        n = 200_000
        t = min(timeit.repeat(c.fn, number=n, repeat=5)) / n
        print(f"{c.group:16} {c.name:18} {t * 1e9:8.1f} ns/op")
