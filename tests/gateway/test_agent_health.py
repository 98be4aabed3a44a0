"""`/api/health/agents` end to end (issue 8.4): every agent, from the config file or created
through the API, with per-endpoint state as the data plane sees it (breaker, health checks,
last probe, in flight), and `POST /api/health/agents/{agent}` probing an agent now."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_process import Gateway, eventually, running_gateway
from store_agents import OPERATOR, prepare
from upstreams import Upstream, closed_port

from agentgate.store import Store, open_store

ENDPOINT_FIELDS = {
    "url",
    "healthy",
    "breaker",
    "breaker_trips",
    "breaker_open_for",
    "in_flight",
    "last_probe",
    "last_status",
    "last_error",
    "probe_successes",
    "probe_failures",
}


def config(up: Upstream, data_dir: Path) -> str:
    """A health-checked agent, an agent that cannot be reached, and the store's data dir."""
    return f"""
data_dir: "{data_dir}"
agents:
  checked:
    endpoints: [{{url: "{up.url}"}}]
    health_check: {{path: /health, interval: 50ms, timeout: 1s, healthy: 1, unhealthy: 1}}
  down:
    endpoints: [{{url: "http://127.0.0.1:{closed_port()}"}}]
    retries: {{attempts: 0}}
    circuit_breaker: {{consecutive_failures: 2, min_requests: 1000, open_for: 60s}}
routes:
  - {{id: checked, match: {{path_prefix: /checked}}, agent: checked, strip_prefix: true}}
  - {{id: down, match: {{path_prefix: /down}}, agent: down, strip_prefix: true}}
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("health-data")


@pytest.fixture(scope="module")
def gw(
    upstream: Upstream, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    assert "AGENTGATE_DATA_DIR" not in os.environ  # it would override the config's data_dir
    with running_gateway(config(upstream, data_dir), tmp_path_factory.mktemp("health")) as g:
        yield g


@pytest.fixture
async def store(gw: Gateway, data_dir: Path) -> AsyncIterator[Store]:
    s = await open_store(None, data_dir)  # the gateway's own SQLite file
    yield s
    await s.close()


async def report(http: aiohttp.ClientSession, gw: Gateway) -> dict[str, Any]:
    async with http.get(f"{gw.admin}/api/health/agents") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_file_agents_with_endpoint_state(gw: Gateway, http: aiohttp.ClientSession) -> None:
    agents = await report(http, gw)
    assert {"checked", "down"} <= set(agents)
    for name in ("checked", "down"):
        a = agents[name]
        assert a["source"] == "file"
        assert set(a["endpoints"][0]) >= ENDPOINT_FIELDS
    assert agents["checked"]["health_checked"] is True
    assert agents["down"]["health_checked"] is False

    async def probed() -> dict[str, Any] | None:
        ep: dict[str, Any] = (await report(http, gw))["checked"]["endpoints"][0]
        return ep if ep["last_probe"] and ep["probe_successes"] >= 1 else None

    ep = await eventually(probed)
    assert ep["last_status"] == 200 and ep["healthy"] is True and ep["last_error"] is None


async def test_breaker_state_as_the_data_plane_sees_it(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        async with http.get(f"{gw.url}/down/x") as r:
            assert r.status == 502
    ep = (await report(http, gw))["down"]["endpoints"][0]
    assert ep["breaker"] == "open"
    assert ep["breaker_trips"] == 1 and ep["breaker_open_for"] == 60


async def test_in_flight_per_agent_and_endpoint(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    gate = "health-in-flight"
    async with http.get(f"{gw.url}/checked/sse?key=hif&events=2&wait={gate}") as r:
        await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        a = (await report(http, gw))["checked"]
        assert a["in_flight"] == 1 and a["endpoints"][0]["in_flight"] == 1
        upstream.event(upstream.first_chunk, gate).set()
        await r.read()

    async def idle() -> bool:
        a = (await report(http, gw))["checked"]
        return bool(a["in_flight"] == 0 and a["endpoints"][0]["in_flight"] == 0)

    await eventually(idle)


async def test_probe_now_with_retries(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gw.admin}/api/health/agents/down?attempts=2") as r:
        assert r.status == 200
        res = await r.json()
    assert res["agent"] == "down" and res["healthy"] == 0
    [ep] = res["endpoints"]
    assert ep["ok"] is False and ep["attempts"] == 2 and "connect" in ep["error"]
    # the result is recorded as the endpoint's last probe
    ep = (await report(http, gw))["down"]["endpoints"][0]
    assert ep["last_probe"] and "connect" in ep["last_error"] and ep["probe_failures"] >= 1

    async with http.post(f"{gw.admin}/api/health/agents/checked") as r:
        res = await r.json()
    assert res["healthy"] == 1
    assert res["endpoints"][0] | {"latency_ms": 0} == {
        "url": res["endpoints"][0]["url"],
        "ok": True,
        "status": 200,
        "error": None,
        "latency_ms": 0,
        "attempts": 1,
    }


async def test_probe_unknown_agent_or_bad_attempts(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{gw.admin}/api/health/agents/nobody") as r:
        assert r.status == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert "nobody" in (await r.json(content_type=None))["detail"]
    async with http.post(f"{gw.admin}/api/health/agents/down?attempts=99") as r:
        assert r.status == 422


async def test_api_agents_appear_and_can_be_probed(
    gw: Gateway, store: Store, http: aiohttp.ClientSession
) -> None:
    api_up = Upstream("api-agent").start()
    try:
        factory, scope, secret = await prepare(store, api_up.url)
        try:
            await factory.create(scope, OPERATOR, "echo@^1", name="bot")

            async def listed() -> dict[str, Any] | None:
                agents = await report(http, gw)
                return agents.get("acme/bot")

            bot = await eventually(listed)
            assert bot["source"] == "api"
            assert bot["endpoints"][0]["url"] == api_up.url
            assert set(bot["endpoints"][0]) >= ENDPOINT_FIELDS
            async with http.get(
                f"{gw.url}/t/acme/agents/bot/x", headers={"X-API-Key": secret}
            ) as r:
                assert r.status == 200
            async with http.post(f"{gw.admin}/api/health/agents/acme/bot") as r:
                assert r.status == 200
                res = await r.json()
            assert res["agent"] == "acme/bot" and res["endpoints"][0]["ok"] is True
            assert (await report(http, gw))["acme/bot"]["endpoints"][0]["last_status"] == 200
            # the file's agents are still reported beside it
            assert (await report(http, gw))["checked"]["source"] == "file"
        finally:
            await factory.close()
    finally:
        api_up.stop()
