"""The leak check itself, and /api/config of a gateway whose upstream headers use secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import leakcheck
from leakcheck import collect, new_secret

from agentgate.config import load_config
from agentgate.security.keys import ENV_MASTER_KEY
from agentgate.security.services import Security
from agentgate.store import Store


def test_the_check_catches_a_leak() -> None:
    v = new_secret()
    before = len(leakcheck.CORPUS)
    logging.getLogger("agentgate.test").info("oops %s", v)
    collect("http:GET /x", f'{{"detail": "bad {v}"}}')
    try:
        assert {w for w, x in leakcheck.find_leaks() if x == v} == {
            "log:agentgate.test",
            "http:GET /x",
        }
    finally:
        del leakcheck.CORPUS[before:]  # this test's own leak must not fail it
        leakcheck.VALUES.discard(v)


async def test_api_config_shows_references_not_values(
    tmp_path: Path, store: Store, master_hex: str
) -> None:
    """A gateway whose upstream header uses `${secret:openai}` sends the value upstream, while
    the admin listener's /api/config, its other views and the logs show only the reference."""
    from aiohttp import web

    from agentgate.api.admin import create_app
    from agentgate.gateway.dataplane import Gateway
    from agentgate.security.upstream_secrets import UpstreamSecrets

    system = await store.system.tenants.create("system")
    security = Security(store, env={ENV_MASTER_KEY: master_hex})
    v = new_secret("sk")
    await (await security.secrets()).put(system.id, "openai", v)
    # a real upstream that records the header it got (its answer does not echo it)
    seen: list[str | None] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg_file = tmp_path / "gw.yaml"
    cfg_file.write_text(
        "agents:\n"
        "  llm:\n"
        f"    endpoints: [{{url: 'http://127.0.0.1:{port}'}}]\n"
        "    headers: {Authorization: 'Bearer ${secret:openai}'}\n"
        "routes:\n"
        "  - {id: llm, match: {path_prefix: /llm}, agent: llm, strip_prefix: true}\n"
        "backup:\n"
        "  destinations: [{name: s3, type: s3, bucket: b, secret_access_key_env: S3_SECRET}]\n"
    )
    cfg = load_config(cfg_file)
    gw = await Gateway.create(cfg, resolve=UpstreamSecrets(security, store).resolve)
    try:
        listen = gw.listen("127.0.0.1:0")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}") as c:
            r = await c.get("/llm/chat")
        collect("http:GET /llm/chat", r.text)
        assert r.status_code == 200 and r.text == "ok"
        assert seen == [f"Bearer {v}"]  # the value went upstream
        # the admin listener as `agentgate serve` builds it over this gateway
        admin = create_app(gw)
        transport = httpx.ASGITransport(app=admin)
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as c:
            for path in ("/api/config", "/api/health/agents", "/metrics"):
                got = await c.get(path)
                collect(f"http:{path}", got.text)
                assert got.status_code == 200, path
            r = await c.get("/api/config")
        body = r.json()
        assert body["agents"]["llm"]["headers"] == {"Authorization": "Bearer ${secret:openai}"}
        assert body["backup"]["destinations"][0]["secret_access_key_env"] == "S3_SECRET"
        # a reload naming a secret that does not exist is refused (and logged) without the
        # values of the ones that do
        bad = cfg_file.read_text().replace("${secret:openai}", "${secret:openai} ${secret:nope}")
        cfg_file.write_text(bad)
        assert not await gw.install(load_config(cfg_file))
        assert gw.config.agents["llm"].headers == {"Authorization": "Bearer ${secret:openai}"}
    finally:
        await gw.shutdown(5.0)
        await runner.cleanup()
        await security.close()
