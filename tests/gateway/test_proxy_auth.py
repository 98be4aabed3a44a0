"""`Proxy-Authorization` end to end (issue 8.10): the gateway consumes it (RFC 9110 §11.7.2)
and drops the agent's `Proxy-Authenticate`, unless the route says `forward_proxy_auth: true`."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from gateway_process import API_KEY, API_KEY_HASH, Gateway, running_gateway
from upstreams import Upstream

CHALLENGE = 'Basic realm="agent"'
QUERY = f"?respond_header=Proxy-Authenticate:{CHALLENGE}&respond_header=X-Kept:yes"


def config(up: Upstream) -> str:
    """The same agent behind a default route, an opted-in route, and an authenticated one."""
    return f"""
agents:
  echo: {{endpoints: [{{url: "{up.url}"}}], retries: {{attempts: 0}}}}
routes:
  - {{id: plain, match: {{path_prefix: /plain}}, agent: echo}}
  - {{id: fwd, match: {{path_prefix: /fwd}}, agent: echo, forward_proxy_auth: true}}
  - {{id: auth, match: {{path_prefix: /auth}}, agent: echo, auth: required}}
auth:
  api_keys: [{{id: k1, hash: "{API_KEY_HASH}", tenant: acme}}]
"""


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(config(upstream), tmp_path_factory.mktemp("proxyauth")) as g:
        yield g


async def exchange(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(headers the agent got, headers the client got), names lower-cased."""
    async with http.get(url + QUERY, headers=headers) as r:
        assert r.status == 200
        sent = {k.lower(): v for k, v in (await r.json())["headers"]}
        return sent, {k.lower(): v for k, v in r.headers.items()}


async def test_dropped_both_ways_by_default(gw: Gateway, http: aiohttp.ClientSession) -> None:
    sent, got = await exchange(
        http, f"{gw.url}/plain/x", {"Proxy-Authorization": "Basic cHJveHk6c2VjcmV0"}
    )
    assert "proxy-authorization" not in sent
    assert "proxy-authenticate" not in got
    assert got["x-kept"] == "yes"  # other response fields pass


async def test_forwarded_both_ways_when_the_route_opts_in(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    sent, got = await exchange(
        http, f"{gw.url}/fwd/x", {"Proxy-Authorization": "Basic cHJveHk6c2VjcmV0"}
    )
    assert sent["proxy-authorization"] == "Basic cHJveHk6c2VjcmV0"
    assert got["proxy-authenticate"] == CHALLENGE


async def test_authenticated_route_consumes_both_credentials(
    gw: Gateway, http: aiohttp.ClientSession
) -> None:
    sent, got = await exchange(
        http,
        f"{gw.url}/auth/x",
        {"Authorization": f"Bearer {API_KEY}", "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0"},
    )
    assert "authorization" not in sent and "proxy-authorization" not in sent
    assert "proxy-authenticate" not in got
