"""`${secret:NAME}` in an agent's upstream headers through a real `agentgate serve`: the
upstream gets the value, a rotation through the API reaches it without a restart, and the
value shows nowhere else (issue 13, secrets injected into upstream headers)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_process import Gateway, eventually, running_gateway
from upstreams import Upstream

from agentgate.cli_control import bootstrap
from agentgate.security.keyring import open_kek
from agentgate.security.secrets import SecretService
from agentgate.store import open_store

FIRST, SECOND = "upstream-token-v1-d41d8cd9", "upstream-token-v2-8f00b204"


async def _prepare(data_dir: Path, env: dict[str, str]) -> str:
    store = await open_store(None, data_dir)
    try:
        system, _, admin = await bootstrap(store)
        await SecretService(store, await open_kek(store, env)).put(system.id, "up-token", FIRST)
    finally:
        await store.close()
    return admin


@pytest.fixture(scope="module")
def gw(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    tmp = tmp_path_factory.mktemp("secret-headers")
    env = {"AGENTGATE_MASTER_KEY": os.urandom(32).hex()}
    admin = asyncio.run(_prepare(tmp / "data", env))
    config = f"""
data_dir: {tmp / "data"}
agents:
  up:
    endpoints: [{{url: "{upstream.url}"}}]
    headers: {{Authorization: "Bearer ${{secret:up-token}}"}}
routes:
  - {{id: up, match: {{path_prefix: /up}}, agent: up, strip_prefix: true}}
"""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with running_gateway(config, tmp) as g:
            yield g, admin


async def _sent_authorization(http: aiohttp.ClientSession, gw: Gateway) -> str | None:
    async with http.get(f"{gw.url}/up/echo") as r:
        assert r.status == 200
        headers = {k.lower(): v for k, v in (await r.json())["headers"]}
        return headers.get("authorization")


async def test_rotation_reaches_the_upstream_without_restart(
    gw: tuple[Gateway, str], http: aiohttp.ClientSession
) -> None:
    g, admin = gw
    assert await _sent_authorization(http, g) == f"Bearer {FIRST}"
    async with http.post(
        f"{g.admin}/api/secrets/up-token/rotate",
        json={"value": SECOND},
        headers={"Authorization": f"Bearer {admin}"},
    ) as r:
        assert r.status == 200, await r.text()
        assert SECOND not in await r.text()

    async def rotated() -> bool:
        return await _sent_authorization(http, g) == f"Bearer {SECOND}"

    await eventually(rotated, within=20)
    # the config in force shows the reference, and no value is in the gateway's output
    async with http.get(f"{g.admin}/api/config") as r:
        shown = await r.text()
    assert "${secret:up-token}" in shown
    for value in (FIRST, SECOND):
        assert value not in shown
        assert value not in g.output()
