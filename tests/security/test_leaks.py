"""The leak check itself, and /api/config of a gateway whose upstream headers use secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import leakcheck
from leakcheck import collect, new_secret

from agentgate.config import load_config
from agentgate.security.keys import LocalKek
from agentgate.security.secrets import SecretService
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
    tmp_path: Path, store: Store, kek: LocalKek
) -> None:
    from agentgate.api.admin import create_app

    t = (await store.system.tenants.create("acme")).id
    v = new_secret("sk")
    svc = SecretService(store, kek)
    await svc.put(t, "openai", v)
    cfg_file = tmp_path / "gw.yaml"
    cfg_file.write_text(
        "agents:\n"
        "  llm:\n"
        "    endpoints: [{url: 'http://127.0.0.1:9'}]\n"
        "    headers: {Authorization: 'Bearer ${secret:openai}'}\n"
        "backup:\n"
        "  destinations: [{name: s3, type: s3, bucket: b, secret_access_key_env: S3_SECRET}]\n"
    )
    cfg = load_config(cfg_file)
    resolved = await svc.resolve_headers(t, cfg.agents["llm"].headers)
    assert resolved == {"Authorization": f"Bearer {v}"}
    app = create_app(cfg, str(cfg_file))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.get("/api/config")
    collect("http:/api/config", r.text)
    assert r.status_code == 200
    body = r.json()
    assert body["agents"]["llm"]["headers"] == {"Authorization": "Bearer ${secret:openai}"}
    assert body["backup"]["destinations"][0]["secret_access_key_env"] == "S3_SECRET"
