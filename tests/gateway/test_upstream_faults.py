"""What misbehaving upstreams and clients do to a request (issue 9.2, 9.7), with a raw TCP
upstream scripted per test: a kept-alive connection the upstream closed is replaced without
the client noticing, a malformed answer is a 502 problem, and a client that leaves cancels the
upstream request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from gateway_process import Gateway, eventually, running_gateway
from upstreams import RawConn, ScriptedUpstream, response

NAMES = ("stale", "idle", "malformed", "leave")


def config(ups: dict[str, ScriptedUpstream]) -> str:
    """One agent per scripted upstream, without retries (any recovery is the gateway's own
    stale-connection rule) and with a breaker that never trips on these failures."""
    never = "circuit_breaker: {consecutive_failures: 1000, min_requests: 1000}"
    agents = "".join(
        f'  {n}: {{endpoints: [{{url: "{u.url}"}}], retries: {{attempts: 0}}, {never}}}\n'
        for n, u in ups.items()
    )
    routes = "".join(
        f"  - {{id: {n}, match: {{path_prefix: /{n}}}, agent: {n}, strip_prefix: true}}\n"
        for n in ups
    )
    return f"agents:\n{agents}routes:\n{routes}"


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, ScriptedUpstream]]:
    started = {n: ScriptedUpstream().start() for n in NAMES}
    yield started
    for u in started.values():
        u.stop()


@pytest.fixture(scope="module")
def gw(
    ups: dict[str, ScriptedUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(config(ups), tmp_path_factory.mktemp("faults")) as g:
        yield g


async def agent_state(http: aiohttp.ClientSession, gw: Gateway, agent: str) -> dict[str, Any]:
    """The agent as `/api/health/agents` reports it."""
    async with http.get(f"{gw.admin}/api/health/agents") as r:
        state: dict[str, Any] = (await r.json())[agent]
        return state


async def agent_in_flight(http: aiohttp.ClientSession, gw: Gateway, agent: str) -> int:
    return int((await agent_state(http, gw, agent))["in_flight"])


async def pooled(http: aiohttp.ClientSession, gw: Gateway, agent: str) -> None:
    """Wait until the agent's connection is back in the gateway's keep-alive pool."""

    async def idle() -> bool:
        ep = (await agent_state(http, gw, agent))["endpoints"][0]
        return bool(ep["idle_connections"] == 1)

    await eventually(idle)


async def test_stale_keep_alive_is_replaced(
    gw: Gateway, ups: dict[str, ScriptedUpstream], http: aiohttp.ClientSession
) -> None:
    """The upstream closes a kept-alive connection as the next request arrives on it (the race
    of an upstream's idle timeout): the gateway sends it again on a new connection."""
    up = ups["stale"]
    seen: list[int] = []

    async def script(conn: RawConn) -> None:
        while await conn.request() is not None:
            seen.append(conn.n)
            if conn.n == 0 and len(seen) == 2:
                up.event("dropped").set()
                return  # close without answering the second request
            await conn.send(response(f"conn {conn.n}".encode()))

    up.script = script
    async with http.get(f"{gw.url}/stale/x") as r:
        assert await r.read() == b"conn 0"
    await pooled(http, gw, "stale")
    # a POST too: the body is buffered, so sending it again is safe
    async with http.post(f"{gw.url}/stale/x", data=b"body") as r:
        assert r.status == 200
        assert await r.read() == b"conn 1"
    assert up.event("dropped").is_set()
    assert seen == [0, 0, 1] and up.connections == 2


async def test_connection_closed_while_idle_is_not_reused(
    gw: Gateway, ups: dict[str, ScriptedUpstream], http: aiohttp.ClientSession
) -> None:
    up = ups["idle"]

    async def script(conn: RawConn) -> None:
        if await conn.request() is not None:
            # keep-alive as far as the headers say, then closed as an idle timeout would
            await conn.send(response(f"conn {conn.n}".encode()))
            await asyncio.to_thread(up.event(f"close {conn.n}").wait, 10)

    up.script = script
    for n in range(3):
        async with http.get(f"{gw.url}/idle/x") as r:
            assert r.status == 200
            assert await r.read() == f"conn {n}".encode()
        await pooled(http, gw, "idle")
        up.event(f"close {n}").set()
    assert up.connections == 3


MALFORMED = {
    "not http": (b"hello there\r\n\r\n", "upstream_error"),
    "bad status": (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "upstream_error"),
    "bad header": (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "upstream_error"),
    "two lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
        "upstream_error",
    ),
    "bad version": (b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n", "upstream_error"),
    "huge head": (
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1024 * 1024 + b"\r\n\r\n",
        "upstream_error",
    ),
    "cut head": (b"HTTP/1.1 200 OK\r\nContent-Le", "upstream_reset"),
    "nothing": (b"", "upstream_reset"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_answer_is_a_502_problem(
    gw: Gateway, ups: dict[str, ScriptedUpstream], http: aiohttp.ClientSession, case: str
) -> None:
    answer, kind = MALFORMED[case]

    async def script(conn: RawConn) -> None:
        if await conn.request() is not None:
            await conn.send(answer)

    ups["malformed"].script = script
    async with http.get(f"{gw.url}/malformed/x") as r:
        assert r.status == 502
        assert r.headers["content-type"] == "application/problem+json"
        body = await r.json(content_type=None)
    assert body["type"] == f"urn:agentgate:problem:{kind}"
    assert await agent_in_flight(http, gw, "malformed") == 0


async def test_malformed_body_cuts_the_stream(
    gw: Gateway, ups: dict[str, ScriptedUpstream], http: aiohttp.ClientSession
) -> None:
    """Past the head, the status is gone: a broken body ends the client's stream early."""

    async def script(conn: RawConn) -> None:
        if await conn.request() is not None:
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await conn.send(b"3\r\nabc\r\nzz\r\n")

    ups["malformed"].script = script
    async with http.get(f"{gw.url}/malformed/x") as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()

    async def released() -> bool:
        return await agent_in_flight(http, gw, "malformed") == 0

    await eventually(released)


@pytest.mark.parametrize("when", ["before the head", "mid-body"])
async def test_client_leaving_cancels_the_upstream_request(
    gw: Gateway, ups: dict[str, ScriptedUpstream], http: aiohttp.ClientSession, when: str
) -> None:
    up = ups["leave"]
    key = when.replace(" ", "-")

    async def script(conn: RawConn) -> None:
        if await conn.request() is None:
            return
        if when == "mid-body":
            await conn.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
            )
        up.event(f"{key} answering").set()
        await conn.until_closed()
        up.event(f"{key} gone").set()

    up.script = script
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
    writer.write(b"GET /leave/x HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await writer.drain()
    assert await asyncio.to_thread(up.event(f"{key} answering").wait, 5)
    if when == "mid-body":
        assert b"first" in await asyncio.wait_for(reader.readuntil(b"first\n"), 5)
    assert await agent_in_flight(http, gw, "leave") == 1
    writer.close()
    # the gateway closed its upstream connection, and the agent's slot is free again
    assert await asyncio.to_thread(up.event(f"{key} gone").wait, 5)

    async def released() -> bool:
        return await agent_in_flight(http, gw, "leave") == 0

    await eventually(released)
