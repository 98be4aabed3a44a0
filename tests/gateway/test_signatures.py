"""RFC 9421 signed requests through a real gateway: real signatures made with sign_request."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from gateway_process import Gateway, start_gateway, stop_gateway
from upstreams import Upstream

from agentgate.signing import sign_request

B26 = json.loads(Path("/work/shared/testdata/rfc9421_b26_ed25519.json").read_text())
KEYID = B26["params"]["keyid"]
PRIVATE = B26["private_key_pem"]
OTHER_SEED = bytes(range(32))  # a key the gateway does not trust


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cfg = f"""
agents:
  up:
    endpoints: [{{url: "{upstream.url}"}}]
routes:
  - {{id: sig, match: {{path_prefix: /sig}}, agent: up, strip_prefix: true, signature: required}}
  - {{id: open, match: {{path_prefix: /open}}, agent: up, strip_prefix: true}}
signatures:
  trusted_keys: [{{keyid: {KEYID}, public_key: "{B26["public_key_raw_hex"]}"}}]
  window: 60s
  max_body: 1KiB
"""
    g = start_gateway(cfg, tmp_path_factory.mktemp("sig"))
    yield g
    stop_gateway(g)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


async def send(
    http: aiohttp.ClientSession,
    gw: Gateway,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    sign_path: str | None = None,
    key: str | bytes = PRIVATE,
    keyid: str = KEYID,
    send_body: bytes | None = None,
    created: int | None = None,
) -> tuple[int, dict[str, object]]:
    url = f"{gw.url}{path}"
    signed = f"{gw.url}{sign_path or path}"
    headers = sign_request(method, signed, {}, body, key=key, keyid=keyid, created=created)
    data = body if send_body is None else send_body
    async with http.request(method, url, data=data, headers=headers) as r:
        raw = await r.read()
        return r.status, orjson.loads(raw) if raw else {}


async def test_signed_get_and_post_pass(gw: Gateway, http: aiohttp.ClientSession) -> None:
    status, echo = await send(http, gw, "GET", "/sig/a/b?x=1")
    assert status == 200 and echo["path"] == "/a/b"
    status, echo = await send(http, gw, "POST", "/sig/post", b'{"hello": "world"}')
    assert status == 200 and echo["body_len"] == 18


async def test_unsigned_and_untrusted_are_401(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/sig/x") as r:
        assert r.status == 401
        body = orjson.loads(await r.read())
        assert body["type"] == "urn:agentgate:problem:bad_signature"
        assert r.headers["www-authenticate"].startswith("Signature")
    status, body = await send(http, gw, "GET", "/sig/x", key=OTHER_SEED, keyid="stranger")
    assert status == 401 and "stranger" in str(body["detail"])
    status, _ = await send(http, gw, "GET", "/sig/x", key=OTHER_SEED)  # trusted keyid, wrong key
    assert status == 401
    async with http.get(f"{gw.url}/open/x") as r:  # unsigned routes do not care
        assert r.status == 200


async def test_tampered_components_are_401(gw: Gateway, http: aiohttp.ClientSession) -> None:
    status, body = await send(http, gw, "GET", "/sig/b", sign_path="/sig/a")  # @path
    assert status == 401, body
    status, _ = await send(http, gw, "GET", "/sig/a?x=2", sign_path="/sig/a?x=1")  # @query
    assert status == 401
    status, body = await send(
        http, gw, "POST", "/sig/post", b"original", send_body=b"tampered"
    )  # body no longer matches the signed Content-Digest
    assert status == 401 and "Content-Digest" in str(body["detail"])


async def test_window_replay_and_size(gw: Gateway, http: aiohttp.ClientSession) -> None:
    status, _ = await send(http, gw, "GET", "/sig/x", created=int(time.time()) - 3600)
    assert status == 401  # outside the 60 s window
    nonce = f"n-{time.time_ns()}"
    url = f"{gw.url}/sig/x"
    headers = sign_request("GET", url, {}, None, key=PRIVATE, keyid=KEYID, nonce=nonce)
    async with http.get(url, headers=headers) as r:
        assert r.status == 200
    async with http.get(url, headers=headers) as r:
        assert r.status == 401  # the same nonce again is a replay
        assert "replay" in str(orjson.loads(await r.read())["detail"]).lower()
    status, _ = await send(http, gw, "POST", "/sig/post", b"x" * 2000)
    assert status == 413  # over signatures.max_body
