"""End-to-end proxy semantics through a real `agentgate serve` against real upstreams."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from gateway_process import API_KEY, API_KEY_HASH, Gateway, start_gateway, stop_gateway
from upstreams import Upstream, closed_port


def config(up: Upstream, up2: Upstream, extra_routes: str = "") -> str:
    """One config covering every behaviour under test."""
    return f"""
agents:
  up:
    endpoints: [{{url: "{up.url}"}}]
    timeouts: {{connect: 1s, first_byte: 500ms, idle: 500ms, total: 0}}
    retries: {{attempts: 2, backoff: {{base: 10ms, max: 1s}}, budget: 0.5}}
    circuit_breaker: {{consecutive_failures: 1000, min_requests: 1000}}
  dead:
    endpoints: [{{url: "http://127.0.0.1:{closed_port()}"}}]
    retries: {{attempts: 1, backoff: {{base: 1ms, max: 5ms}}}}
    circuit_breaker: {{consecutive_failures: 1000, min_requests: 1000}}
  brk:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 0}}
    circuit_breaker: {{consecutive_failures: 2, open_for: 60s}}
  hc:
    endpoints: [{{url: "{up2.url}"}}]
    health_check: {{path: /health, interval: 50ms, timeout: 1s, healthy: 1, unhealthy: 1}}
routes:
  - {{id: up, match: {{path_prefix: /up}}, agent: up, strip_prefix: true}}
  - {{id: keep, match: {{path_prefix: /keep, methods: [GET]}}, agent: up}}
  - id: auth
    match: {{path_prefix: /auth}}
    agent: up
    strip_prefix: true
    auth: required
  - id: limited
    match: {{path_prefix: /limited}}
    agent: up
    strip_prefix: true
    rate_limit: {{key: ip, rate: 1/m, burst: 2}}
  - id: small
    match: {{path_prefix: /small}}
    agent: up
    strip_prefix: true
    max_body: 10
  - {{id: dead, match: {{path_prefix: /dead}}, agent: dead, strip_prefix: true}}
  - {{id: brk, match: {{path_prefix: /brk}}, agent: brk, strip_prefix: true}}
  - {{id: hc, match: {{path_prefix: /hc}}, agent: hc, strip_prefix: true}}
{extra_routes}
auth:
  api_keys: [{{id: k1, hash: "{API_KEY_HASH}", tenant: acme, roles: [caller]}}]
"""


@pytest.fixture(scope="module")
def gw(
    upstream: Upstream, upstream2: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    g = start_gateway(config(upstream, upstream2), tmp_path_factory.mktemp("gw"))
    yield g
    stop_gateway(g)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


def hdrs(echo: dict[str, object]) -> dict[str, str]:
    return {k.lower(): v for k, v in echo["headers"]}  # type: ignore[attr-defined, misc]


async def test_forwards_method_path_query_headers_body(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{gw.url}/up/a/b%20c?x=1&y=%2F",
        data=b"hello",
        headers={
            "X-Custom": "v",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "x",
            "X-Request-Id": "rid-123",
        },
    ) as r:
        assert r.status == 200
        assert r.headers["x-request-id"] == "rid-123"
        echo = await r.json()
    assert echo["method"] == "POST"
    assert echo["raw_path"] == "/a/b%20c?x=1&y=/"
    assert echo["query"] == "x=1&y=/"
    assert echo["body_len"] == 5
    h = hdrs(echo)
    assert h["x-custom"] == "v"
    for hop in ("x-hop", "keep-alive", "proxy-connection"):
        assert hop not in h
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == gw.url.removeprefix("http://")
    assert h["x-request-id"] == "rid-123"
    assert h["host"] != gw.url.removeprefix("http://")  # host_header: upstream (default)


async def test_request_id_generated_and_prefix_kept(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gw.url}/keep/x") as r:
        echo = await r.json()
        rid = r.headers["x-request-id"]
    assert echo["path"] == "/keep/x"
    assert len(rid) == 32 and hdrs(echo)["x-request-id"] == rid


async def test_no_route_and_method_not_allowed(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/nowhere") as r:
        assert r.status == 404
        assert r.headers["content-type"] == "application/problem+json"
        body = orjson.loads(await r.read())
        assert body["status"] == 404 and body["title"] == "Not Found"
    async with http.get(f"{gw.url}/upx") as r:  # prefixes match whole segments only
        assert r.status == 404
    async with http.post(f"{gw.url}/keep/x") as r:
        assert r.status == 405


async def test_auth(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/auth/x") as r:
        assert r.status == 401
        assert r.headers["content-type"] == "application/problem+json"
    async with http.get(f"{gw.url}/auth/x", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    async with http.get(f"{gw.url}/auth/x", headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status == 200
        h = hdrs(await r.json())
        assert "authorization" not in h  # the gateway's key is not leaked upstream
    async with http.get(f"{gw.url}/auth/x", headers={"X-API-Key": API_KEY}) as r:
        assert r.status == 200


async def test_rate_limit_429_headers(gw: Gateway, http: aiohttp.ClientSession) -> None:
    statuses = []
    for _ in range(3):
        async with http.get(f"{gw.url}/limited/x") as r:
            statuses.append(r.status)
            last = r
            body = orjson.loads(await r.read()) if r.status == 429 else {}
            if r.status == 200:  # admitted responses carry the budget left too
                assert r.headers["ratelimit-policy"] == '"default";q=2;w=120'
    assert statuses == [200, 200, 429]
    assert int(last.headers["retry-after"]) >= 1
    # IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers), from the core's limiter
    assert last.headers["ratelimit"].startswith('"default";r=0;')
    assert last.headers["ratelimit-policy"] == '"default";q=2;w=120'
    assert body["type"] == "urn:agentgate:problem:rate_limited"


async def test_body_too_large_413(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gw.url}/small/x", data=b"x" * 11) as r:
        assert r.status == 413
    async with http.post(f"{gw.url}/small/x", data=b"x" * 10) as r:
        assert r.status == 200


async def test_sse_first_event_before_upstream_finishes(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gate = "sse-gate"
    async with http.get(f"{gw.url}/up/sse?key=s1&events=3&wait={gate}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert first == b"id: 0\ndata: event 0\n\n"
        # the upstream is still holding event 1: nothing was buffered until the end
        assert "s1" not in upstream.finished
        upstream.event(upstream.first_chunk, gate).set()
        rest = await asyncio.wait_for(r.content.read(), 5)
    assert rest.count(b"data: event") == 2


async def test_big_request_body_streams(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    chunk = os.urandom(256 * 1024)
    arrived = upstream.event(upstream.first_chunk, "big")

    async def body() -> AsyncIterator[bytes]:
        yield chunk
        # the upstream must see bytes before we send the rest: proof of streaming
        assert await asyncio.to_thread(arrived.wait, 5)
        for _ in range(15):
            yield chunk

    async with http.post(
        f"{gw.url}/up/upload?key=big",
        data=body(),
        headers={"Content-Length": str(16 * len(chunk))},
    ) as r:
        assert r.status == 200
        res = await r.json()
    assert res["len"] == 16 * len(chunk)
    assert res["sha256"] == hashlib.sha256(chunk * 16).hexdigest()


async def test_big_response(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/up/size/3000000") as r:
        data = await r.read()
    assert len(data) == 3_000_000


async def test_client_disconnect_cancels_upstream(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gone = upstream.event(upstream.disconnected, "h1")
    r = await http.get(f"{gw.url}/up/hang?key=h1")
    await r.content.readline()
    r.close()
    assert await asyncio.to_thread(gone.wait, 5)


async def test_retries_idempotent_only(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gw.url}/up/flaky?key=g1&fail=2") as r:
        assert r.status == 200
    assert upstream.hits["g1"] == 3
    async with http.post(f"{gw.url}/up/flaky?key=p1&fail=2") as r:
        assert r.status == 503
    assert upstream.hits["p1"] == 1
    async with http.get(f"{gw.url}/up/flaky?key=g2&fail=5") as r:
        assert r.status == 503  # out of attempts: the upstream's answer passes through
    assert upstream.hits["g2"] == 3
    async with http.get(f"{gw.url}/up/flaky?key=g3&fail=1&mode=reset") as r:
        assert r.status == 200  # a reset before any byte is retried too
    assert upstream.hits["g3"] == 2


async def test_retry_after_longer_than_backoff_max_is_passed_on(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gw.url}/up/flaky?key=ra&fail=1&retry_after=30") as r:
        assert r.status == 503
        assert r.headers["retry-after"] == "30"
    assert upstream.hits["ra"] == 1


async def test_connect_failure_and_reset_502(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/dead/x") as r:
        assert r.status == 502
        body = orjson.loads(await r.read())
        assert "connect" in body["detail"]
    async with http.post(f"{gw.url}/up/reset") as r:
        assert r.status == 502


async def test_timeouts_504(gw: Gateway, http: aiohttp.ClientSession) -> None:
    # a bounded wait: a lost first-byte timer must fail here, not after aiohttp's 5 minutes
    bounded = aiohttp.ClientTimeout(total=15)
    async with http.post(f"{gw.url}/up/slow-first?delay=2", timeout=bounded) as r:
        assert r.status == 504
        body = orjson.loads(await r.read())
        assert "first byte" in body["detail"]
    async with http.get(f"{gw.url}/up/slow-chunks?chunks=3&delay=2", timeout=bounded) as r:
        # headers went out already; the idle timeout can only cut the stream short
        assert r.status == 200
        try:
            data = await r.read()
        except aiohttp.ClientPayloadError:
            data = b"chunk0\n"
        assert data == b"chunk0\n"


async def test_breaker_opens_and_answers_fast(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        async with http.get(f"{gw.url}/brk/flaky?key=b1&fail=100") as r:
            assert r.status == 503
    assert upstream.hits["b1"] == 2
    async with http.get(f"{gw.url}/brk/flaky?key=b1&fail=100") as r:
        assert r.status == 503
        body = orjson.loads(await r.read())
        assert "breaker" in body["detail"]
    assert upstream.hits["b1"] == 2  # the open breaker did not touch the upstream


async def test_health_check_ejects_and_readmits(
    gw: Gateway, upstream2: Upstream, http: aiohttp.ClientSession
) -> None:
    async def status() -> int:
        async with http.get(f"{gw.url}/hc/x") as r:
            return r.status

    assert await status() == 200
    upstream2.healthy = False
    try:
        for _ in range(100):
            if await status() == 503:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("endpoint never ejected")
        async with http.get(f"{gw.url}/hc/x") as r:
            assert "no healthy endpoint" in orjson.loads(await r.read())["detail"]
    finally:
        upstream2.healthy = True
    for _ in range(100):
        if await status() == 200:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("endpoint never readmitted")


async def test_admin_endpoints(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/up/x") as r:
        assert r.status == 200
    async with http.get(f"{gw.admin}/healthz") as r:
        assert r.status == 200
    want = 'agentgate_requests_total{agent="up",route="up",status_class="2xx"}'
    for _ in range(50):  # the worker flushes its counts every 0.5 s
        async with http.get(f"{gw.admin}/metrics") as r:
            text = await r.text()
        if want in text and "agentgate_rejected_total" in text:
            break
        await asyncio.sleep(0.1)
    assert want in text
    assert "agentgate_request_duration_seconds_bucket" in text
    assert "agentgate_rejected_total" in text
    async with http.get(f"{gw.admin}/api/health/agents") as r:
        agents = await r.json()
    assert set(agents) == {"up", "dead", "brk", "hc"}
    async with http.get(f"{gw.admin}/api/config") as r:
        cfg = await r.json()
    assert API_KEY_HASH not in str(cfg)
    assert cfg["auth"]["api_keys"][0]["hash"] == "<redacted>"


async def test_reload_on_change_and_invalid_config_refused(
    upstream: Upstream, upstream2: Upstream, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    g = start_gateway(config(upstream, upstream2), tmp_path)
    try:
        async with http.get(f"{g.url}/new/x") as r:
            assert r.status == 404
        extra = "  - {id: new, match: {path_prefix: /new}, agent: up, strip_prefix: true}\n"
        g.config.write_text(config(upstream, upstream2, extra))
        for _ in range(100):
            async with http.get(f"{g.url}/new/x") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("route never appeared after reload")
        g.config.write_text(
            config(upstream, upstream2, extra).replace("agent: up,", "agent: nope,")
        )
        await asyncio.sleep(1.5)
        async with http.get(f"{g.url}/new/x") as r:
            assert r.status == 200  # the running config stayed in force
        assert "routes[" in g.output() and "unknown agent 'nope'" in g.output()
    finally:
        assert stop_gateway(g) == 0


async def test_reload_keeps_tripped_breaker_and_spent_rate_limit(
    upstream: Upstream, upstream2: Upstream, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    g = start_gateway(config(upstream, upstream2), tmp_path)
    try:
        for _ in range(2):
            async with http.get(f"{g.url}/brk/flaky?key=rl-b&fail=100") as r:
                assert r.status == 503
            async with http.get(f"{g.url}/limited/x") as r:
                assert r.status == 200
        extra = "  - {id: new, match: {path_prefix: /new}, agent: up, strip_prefix: true}\n"
        g.config.write_text(config(upstream, upstream2, extra))
        for _ in range(100):
            async with http.get(f"{g.url}/new/x") as r:
                if r.status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("route never appeared after reload")
        async with http.get(f"{g.url}/brk/flaky?key=rl-b&fail=100") as r:
            assert r.status == 503
            assert orjson.loads(await r.read())["type"] == "urn:agentgate:problem:circuit_open"
        assert upstream.hits["rl-b"] == 2  # still open after the reload: upstream untouched
        async with http.get(f"{g.url}/limited/x") as r:
            assert r.status == 429  # the reload did not hand out a fresh budget
    finally:
        assert stop_gateway(g) == 0
