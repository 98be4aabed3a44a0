"""HTTP/1.1 response parser through the real extension."""

from __future__ import annotations

import random

import pytest

from agentgate._core import Http1ResponseHead, Http1ResponseParser

SIMPLE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"X-Request-Id: abc\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"hello"
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;name=value\r\nhello\r\n"
    b"6\r\n world\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
)


def feed_all(
    parser: Http1ResponseParser, pieces: list[bytes]
) -> tuple[list[Http1ResponseHead], bytes, bool, bool]:
    """Feeds pieces in order and collects heads, body, done and the final reusable flag."""
    heads: list[Http1ResponseHead] = []
    body = bytearray()
    done = reusable = False
    for piece in pieces:
        head, chunk, done, reusable = parser.feed(piece)
        if head is not None:
            heads.append(head)
        if chunk is not None:
            assert chunk  # None, never b"", when a feed carried no body bytes
            body += chunk
        if done:
            break
    return heads, bytes(body), done, reusable


def parse(
    raw: bytes, *, is_head: bool = False, bytewise: bool = False
) -> tuple[Http1ResponseHead, bytes, bool, bool]:
    p = Http1ResponseParser()
    p.start(is_head)
    pieces = [raw[i : i + 1] for i in range(len(raw))] if bytewise else [raw]
    heads, body, done, reusable = feed_all(p, pieces)
    assert len(heads) == 1
    return heads[0], body, done, reusable


@pytest.mark.parametrize("bytewise", [False, True])
def test_content_length_response(bytewise: bool) -> None:
    head, body, done, reusable = parse(SIMPLE, bytewise=bytewise)
    assert (head.status, head.reason, head.version) == (200, "OK", "1.1")
    assert head.headers == [
        ("Content-Type", "text/plain"),
        ("X-Request-Id", "abc"),
        ("Content-Length", "5"),
    ]
    assert head.forward == [
        ("content-type", "text/plain"),
        ("x-request-id", "abc"),
        ("content-length", "5"),
    ]
    assert isinstance(head.headers, list) and all(type(t) is tuple for t in head.headers)
    assert head.has_request_id
    assert head.content_length == 5
    assert head.keep_alive and not head.chunked and not head.close_delimited
    assert head.retry_after is None
    assert body == b"hello"
    assert done and reusable


def test_head_lists_are_built_once() -> None:
    head, _, _, _ = parse(SIMPLE)
    assert head.headers is head.headers
    assert head.forward is head.forward


@pytest.mark.parametrize("bytewise", [False, True])
def test_chunked(bytewise: bool) -> None:
    head, body, done, reusable = parse(CHUNKED, bytewise=bytewise)
    assert head.chunked and head.content_length == -1 and not head.close_delimited
    assert head.forward == []
    assert body == b"hello world"
    assert done and reusable


def test_body_segment_returned_without_copy() -> None:
    p = Http1ResponseParser()
    p.start(False)
    head, chunk, done, _ = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
    assert head is not None and chunk is None and not done
    data = b"abcd"
    _, chunk, done, _ = p.feed(data)
    assert chunk is data and not done
    _, chunk, done, reusable = p.feed(b"efgh")
    assert chunk == b"efgh" and done and reusable
    assert p.idle


def test_keep_alive_reuse_across_responses() -> None:
    p = Http1ResponseParser()
    for _ in range(3):
        p.start(False)
        heads, body, done, reusable = feed_all(p, [SIMPLE])
        assert len(heads) == 1 and body == b"hello" and done and reusable


def test_head_request_has_no_body() -> None:
    head, body, done, reusable = parse(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", is_head=True
    )
    assert head.content_length == 0 and body == b"" and done and reusable


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    head, body, done, reusable = parse(f"HTTP/1.1 {status} X\r\n\r\n".encode())
    assert head.status == status and body == b"" and done and reusable


@pytest.mark.parametrize("bytewise", [False, True])
def test_interim_responses_are_skipped(bytewise: bool) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + SIMPLE
    )
    head, body, done, reusable = parse(raw, bytewise=bytewise)
    assert head.status == 200 and len(head.headers) == 3
    assert body == b"hello" and done and reusable


def test_upgrade_is_an_error() -> None:
    p = Http1ResponseParser()
    p.start(False)
    with pytest.raises(ValueError, match=r"switched protocols \(101\)"):
        p.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")


def test_unsolicited_bytes() -> None:
    p = Http1ResponseParser()
    with pytest.raises(ValueError, match="unsolicited"):
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n")
    p = Http1ResponseParser()
    p.start(False)
    feed_all(p, [SIMPLE])
    with pytest.raises(ValueError, match="unsolicited"):
        p.feed(b"x")


def test_start_while_busy() -> None:
    p = Http1ResponseParser()
    p.start(False)
    with pytest.raises(ValueError, match="already in progress"):
        p.start(False)


def test_truncated_at_eof() -> None:
    p = Http1ResponseParser()
    assert p.feed_eof() is False
    p.start(False)
    p.feed(b"HTTP/1.1 200 OK\r\nContent-")
    with pytest.raises(ValueError, match="before the response head was complete"):
        p.feed_eof()
    p = Http1ResponseParser()
    p.start(False)
    p.feed(SIMPLE[:-2])
    with pytest.raises(ValueError, match="in the middle of the body"):
        p.feed_eof()
    p = Http1ResponseParser()
    p.start(False)
    p.feed(CHUNKED[:-2])
    with pytest.raises(ValueError, match="in the middle of the body"):
        p.feed_eof()


def test_close_delimited_body_ends_at_eof() -> None:
    p = Http1ResponseParser()
    p.start(False)
    head, chunk, done, reusable = p.feed(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert head is not None and head.close_delimited and not head.keep_alive
    assert head.content_length == -1
    assert chunk == b"some" and not done and not reusable
    assert p.feed(b" more")[1] == b" more"
    assert p.feed_eof() is True
    assert p.idle


def test_leftover_bytes_make_connection_unusable() -> None:
    p = Http1ResponseParser()
    p.start(False)
    head, chunk, done, reusable = p.feed(SIMPLE + b"HTTP/1.1 200 OK\r\n\r\n")
    assert head is not None and chunk == b"hello"
    assert done and not reusable
    assert head.keep_alive  # the head alone allowed reuse; the extra bytes did not


def test_connection_close_and_http10() -> None:
    head, _, done, reusable = parse(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert not head.keep_alive and done and not reusable
    head, _, _, reusable = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert head.version == "1.0" and not head.keep_alive and not reusable
    head, _, _, reusable = parse(
        b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    )
    assert head.keep_alive and reusable


def test_forward_drops_hop_by_hop_and_connection_named_fields() -> None:
    head, _, _, _ = parse(
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: X-Secret, x-request-id\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"X-Secret: s\r\n"
        b"X-Request-ID: r\r\n"
        b"Upgrade: h2c\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X\r\n"
        b"Server: up\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert head.forward == [("server", "up"), ("content-length", "0")]
    assert not head.has_request_id
    assert len(head.headers) == 10


def test_retry_after() -> None:
    head, _, _, _ = parse(b"HTTP/1.1 503 Busy\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n")
    assert head.retry_after == 30.0
    head, _, _, _ = parse(
        b"HTTP/1.1 503 Busy\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert head.retry_after is None


def test_latin1_values_and_reason() -> None:
    head, _, _, _ = parse(
        b"HTTP/1.1 200 Gr\xfc\xdfe\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n"
    )
    assert head.reason == "Gr\u00fc\u00dfe"
    assert head.headers[0] == ("X-Name", "caf\u00e9")
    assert head.forward[0] == ("x-name", "caf\u00e9")


@pytest.mark.parametrize("raw", [b"HTTP/1.1 200\r\n\r\n", b"HTTP/1.1 200 \r\n\r\n"])
def test_empty_reason(raw: bytes) -> None:
    p = Http1ResponseParser()
    p.start(False)
    head = p.feed(raw)[0]
    assert head is not None and head.reason == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", 'invalid Content-Length "abc"'),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "obsolete line folding"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "invalid HTTP version"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid chunk size line",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n",
            "CRLF required",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX",
            "expected CRLF after chunk data",
        ),
    ],
)
def test_protocol_errors(raw: bytes, message: str) -> None:
    p = Http1ResponseParser()
    p.start(False)
    with pytest.raises(ValueError, match=message):
        p.feed(raw)
    with pytest.raises(ValueError, match="earlier error"):
        p.feed(b"x")


def test_head_size_cap() -> None:
    p = Http1ResponseParser(max_head=64)
    p.start(False)
    with pytest.raises(ValueError, match="response head exceeds 64 bytes"):
        p.feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100 + b"\r\n\r\n")
    p = Http1ResponseParser(max_headers=1)
    p.start(False)
    with pytest.raises(ValueError, match="more than 1 header"):
        p.feed(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n")
    with pytest.raises(ValueError, match="max_head"):
        Http1ResponseParser(max_head=0)


def test_random_bytes_only_raise_value_error() -> None:
    rng = random.Random(3)
    for _ in range(300):
        p = Http1ResponseParser(max_head=256)
        p.start(rng.random() < 0.2)
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        if rng.random() < 0.5:
            data = SIMPLE[: rng.randrange(len(SIMPLE))] + data
        try:
            p.feed(data)
            p.feed_eof()
        except ValueError:
            pass
