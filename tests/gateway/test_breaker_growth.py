"""The breaker's growing cool-down end to end (issue 8.5): each trip in a row doubles the time
an endpoint stays open, up to `circuit_breaker.open_for_max` (default 8 × `open_for`).

The gateway reports every endpoint's trip count and current cool-down on
`/api/health/agents`, so the growth is read from the gateway instead of timed from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from gateway_process import Gateway, eventually, running_gateway
from upstreams import Upstream


def config(up: Upstream) -> str:
    """Two agents whose every failure trips the breaker: one capped at 1 s, one at the default."""
    breaker = "consecutive_failures: 1, min_requests: 1000"
    return f"""
agents:
  capped:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 0}}
    circuit_breaker: {{{breaker}, open_for: 200ms, open_for_max: 1s}}
  default:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 0}}
    circuit_breaker: {{{breaker}, open_for: 100ms}}
routes:
  - {{id: capped, match: {{path_prefix: /capped}}, agent: capped, strip_prefix: true}}
  - {{id: default, match: {{path_prefix: /default}}, agent: default, strip_prefix: true}}
"""


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(config(upstream), tmp_path_factory.mktemp("breaker")) as g:
        yield g


async def endpoint(http: aiohttp.ClientSession, gw: Gateway, agent: str) -> dict[str, Any]:
    """The agent's only endpoint as `/api/health/agents` reports it."""
    async with http.get(f"{gw.admin}/api/health/agents") as r:
        assert r.status == 200
        ep: dict[str, Any] = (await r.json())[agent]["endpoints"][0]
        return ep


async def trip_in_a_row(
    http: aiohttp.ClientSession, gw: Gateway, up: Upstream, agent: str, expected: list[float]
) -> None:
    """Fail one request per trip, each let through once the last cool-down ended."""
    key = f"trips-{agent}"
    ep = await endpoint(http, gw, agent)
    assert (ep["breaker"], ep["breaker_trips"], ep["breaker_open_for"]) == ("closed", 0, 0)
    for n, open_for in enumerate(expected, start=1):
        async with http.get(f"{gw.url}/{agent}/flaky?key={key}&fail=1000") as r:
            assert r.status == 503
        assert up.hits[key] == n  # closed, then half-open: the failure reached the upstream
        ep = await endpoint(http, gw, agent)
        assert ep["breaker_trips"] == n
        assert ep["breaker_open_for"] == pytest.approx(open_for)

        async def half_open() -> bool:
            # the next request is then the probe, whose failure is the next trip in a row
            return (await endpoint(http, gw, agent))["breaker"] == "half_open"

        await eventually(half_open)


async def test_open_time_doubles_up_to_open_for_max(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    await trip_in_a_row(http, gw, upstream, "capped", [0.2, 0.4, 0.8, 1.0, 1.0])


async def test_open_for_max_defaults_to_eight_times_open_for(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    await trip_in_a_row(http, gw, upstream, "default", [0.1, 0.2, 0.4, 0.8, 0.8])
