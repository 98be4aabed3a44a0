"""Agent messaging through the gateway: `/bus/{topic}` behind the gateway's own API keys, with
the tenant the gateway authenticated (a client cannot claim another), on a real `agentgate
serve` with the embedded bus."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gateway"))
from gateway_process import Gateway, start_gateway, stop_gateway


def _hash(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


CONFIG = f"""
bus: {{backend: memory}}
auth:
  api_keys:
    - {{id: a, hash: "{_hash("key-acme")}", tenant: acme}}
    - {{id: b, hash: "{_hash("key-beta")}", tenant: beta}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(CONFIG, tmp_path_factory.mktemp("busgw"))
    yield g
    stop_gateway(g)


def _auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def test_publish_and_consume_through_the_gateway(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        r = await c.post("/bus/orders", content=b"first", headers=_auth("key-acme"))
        assert r.status_code == 201, r.text
        r = await c.get(
            "/bus/orders/messages",
            params={"group": "g", "consumer": "c", "wait": 1},
            headers=_auth("key-acme"),
        )
        assert r.status_code == 200, r.text
        got = r.json()["messages"]
        assert [m["text"] for m in got] == ["first"]
        r = await c.post(
            "/bus/orders/ack",
            json={"group": "g", "consumer": "c", "ids": [got[0]["id"]]},
            headers=_auth("key-acme"),
        )
        assert r.status_code == 204, r.text


async def test_tenants_are_isolated_and_cannot_claim_another(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
        r = await c.post("/bus/secrets", content=b"acme only", headers=_auth("key-acme"))
        assert r.status_code == 201, r.text
        # beta, even claiming to be acme, reads its own (empty) topic of that name
        r = await c.get(
            "/bus/secrets/messages",
            params={"group": "g", "consumer": "c", "wait": 0},
            headers=_auth("key-beta", **{"X-Agentgate-Tenant": "acme"}),
        )
        assert r.status_code == 200, r.text
        assert r.json()["messages"] == []
        r = await c.get("/bus/secrets/messages", params={"group": "g", "wait": 0})
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
