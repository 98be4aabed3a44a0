"""Token usage read by the data plane from real upstream responses (headers, a JSON body, the
last server-sent event), priced into the cost rollups, and a tenant over a `limit` budget
answered 429 `budget-exceeded` by the core while other tenants pass (issue 11, cost)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from gateway_process import Gateway, bootstrap_admin, eventually, running_gateway
from upstreams import LoopThread

ACME, BETA = "acme-secret-key", "beta-secret-key"


def _hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class FakeLLM(LoopThread):
    """An upstream that answers like LLM APIs do: usage in headers, in a JSON body, or in the
    last event of a stream; the model and token counts come from the query."""

    url = ""

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get("/json", self._json)
        app.router.add_get("/sse", self._sse)
        app.router.add_get("/headers", self._headers)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _close(self) -> None:
        await self._runner.cleanup()

    @staticmethod
    def _ask(r: web.Request) -> tuple[str, int, int]:
        return r.query["model"], int(r.query["in"]), int(r.query["out"])

    async def _json(self, r: web.Request) -> web.Response:
        model, i, o = self._ask(r)
        body = {
            "model": model,
            "choices": [{"message": {"content": "x" * 20_000}}],  # usage beyond the head
            "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o},
        }
        return web.json_response(body, status=int(r.query.get("status", "200")))

    async def _sse(self, r: web.Request) -> web.StreamResponse:
        model, i, o = self._ask(r)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(r)
        for n in range(200):
            chunk = {"model": model, "choices": [{"delta": {"content": f"t{n}"}}], "usage": None}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        last = {
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": i, "completion_tokens": o},
        }
        await resp.write(b"data: " + orjson.dumps(last) + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _headers(self, r: web.Request) -> web.Response:
        model, i, o = self._ask(r)
        h = {
            "X-Usage-Input-Tokens": str(i),
            "X-Usage-Output-Tokens": str(o),
            "X-Usage-Model": model,
        }
        return web.Response(text="plain answer", headers=h)


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    up = FakeLLM()
    up._serve_in_thread("fake-llm")
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    tmp = tmp_path_factory.mktemp("usage")
    admin = asyncio.run(bootstrap_admin(tmp / "data"))
    config = f"""
data_dir: {tmp / "data"}
agents:
  llm: {{endpoints: [{{url: "{llm.url}"}}], retries: {{attempts: 0}}}}
routes:
  - {{id: llm, match: {{path_prefix: /llm}}, agent: llm, strip_prefix: true, auth: required}}
auth:
  api_keys:
    - {{id: acme, hash: "{_hash(ACME)}", tenant: acme}}
    - {{id: beta, hash: "{_hash(BETA)}", tenant: beta}}
cost:
  prices:
    small: {{input: 1.0, output: 2.0}}
    huge: {{input: 1000000.0, output: 0.0}}
  budgets:
    beta: {{amount: 1.5, period: day, action: limit}}
"""
    with running_gateway(config, tmp) as g:
        yield g, admin


async def _call(http: aiohttp.ClientSession, gw: Gateway, key: str, query: str) -> int:
    async with http.get(f"{gw.url}/llm/{query}", headers={"Authorization": f"Bearer {key}"}) as r:
        await r.read()
        return r.status


async def _cost(http: aiohttp.ClientSession, gw: Gateway, admin: str, by: str) -> dict[str, Any]:
    async with http.get(
        f"{gw.admin}/api/cost?by={by}", headers={"Authorization": f"Bearer {admin}"}
    ) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_usage_from_headers_json_and_streams_is_priced(
    gw: tuple[Gateway, str], http: aiohttp.ClientSession
) -> None:
    g, admin = gw
    assert await _call(http, g, ACME, "json?model=small&in=100&out=10") == 200
    assert await _call(http, g, ACME, "sse?model=small&in=30&out=200") == 200
    assert await _call(http, g, ACME, "headers?model=small&in=7&out=3") == 200
    # an error answer's usage is not billed
    assert await _call(http, g, ACME, "json?model=small&in=999&out=999&status=500") == 500

    async def recorded() -> dict[str, Any] | None:
        items = {i["model"]: i for i in (await _cost(http, g, admin, "model"))["items"]}
        small = items.get("small")
        return small if small is not None and small["requests"] >= 3 else None

    small = await eventually(recorded, within=30)
    assert (small["requests"], small["input_tokens"], small["output_tokens"]) == (3, 137, 213)
    assert small["cost"] == pytest.approx((137 * 1.0 + 213 * 2.0) / 1e6)
    by_tenant = {i["tenant"]: i for i in (await _cost(http, g, admin, "tenant"))["items"]}
    assert by_tenant["acme"]["input_tokens"] == 137


async def test_a_tenant_over_its_limit_budget_gets_429(
    gw: tuple[Gateway, str], http: aiohttp.ClientSession
) -> None:
    g, admin = gw
    # 2 input tokens of `huge` cost 2.0, over beta's 1.5 a day
    assert await _call(http, g, BETA, "json?model=huge&in=2&out=0") == 200

    async def refused() -> dict[str, Any] | None:
        async with http.get(
            f"{g.url}/llm/headers?model=small&in=1&out=1",
            headers={"Authorization": f"Bearer {BETA}"},
        ) as r:
            if r.status != 429:
                return None
            assert r.content_type == "application/problem+json"
            body: dict[str, Any] = await r.json()
            return body

    problem = await eventually(refused, within=30)
    assert problem["type"] == "urn:agentgate:problem:budget-exceeded"
    assert "beta" in problem["detail"]
    # other tenants are not affected
    assert await _call(http, g, ACME, "headers?model=small&in=1&out=1") == 200
    budgets = {
        b["tenant"]: b
        for b in (
            await (
                await http.get(
                    f"{g.admin}/api/cost/budgets", headers={"Authorization": f"Bearer {admin}"}
                )
            ).json()
        )
    }
    assert budgets["beta"]["exceeded"] is True
