"""`admin_auth: required`: the admin listener's /metrics, /api/config and /api/health/agents want
a viewer-or-above API key (config-file key or system-tenant store key); a real Prometheus scrapes
with a bearer token. Open by default, and a config reload switches it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_process import Gateway, start_gateway, stop_gateway

from agentgate.cli_control import bootstrap
from agentgate.config import ConfigError, parse_config
from agentgate.store import open_store
from agentgate.tenancy import create_key, create_tenant

VIEWS = ("/metrics", "/api/config", "/api/health/agents")
SCRAPE_KEY = "scrape-key-0123456789"
CLIENT_KEY = "client-key-0123456789"


def _sha(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def _config(data_dir: Path, admin_auth: str | None) -> str:
    line = f"admin_auth: {admin_auth}\n" if admin_auth else ""
    return f"""{line}data_dir: {data_dir}
auth:
  api_keys:
    - {{id: scraper, hash: "{_sha(SCRAPE_KEY)}", roles: [viewer]}}
    - {{id: client, hash: "{_sha(CLIENT_KEY)}", tenant: acme, roles: [caller]}}
"""


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


async def _store_keys(data_dir: Path) -> dict[str, str]:
    store = await open_store(None, data_dir)
    try:
        system, _, admin = await bootstrap(store)
        _, viewer = await create_key(store.scoped(system.id), "sys-viewer", ["viewer"])
        acme = await create_tenant(store, "acme")
        _, acme_admin = await create_key(store.scoped(acme.id), "acme-admin", ["admin"])
    finally:
        await store.close()
    return {"admin": admin, "viewer": viewer, "acme_admin": acme_admin}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("admin-auth")
    keys = asyncio.run(_store_keys(tmp / "data"))
    gw = start_gateway(_config(tmp / "data", "required"), tmp)
    try:
        yield gw, keys
    finally:
        stop_gateway(gw)


def test_views_need_a_viewer_key(guarded: tuple[Gateway, dict[str, str]]) -> None:
    gw, keys = guarded
    bearer = {
        "config viewer": {"Authorization": f"Bearer {SCRAPE_KEY}"},
        "config viewer, X-API-Key": {"X-API-Key": SCRAPE_KEY},
        "system admin": {"Authorization": f"Bearer {keys['admin']}"},
        "system viewer": {"Authorization": f"Bearer {keys['viewer']}"},
    }
    for path in VIEWS:
        status, headers, body = _get(gw.admin + path)
        assert status == 401, (path, body)
        assert headers["content-type"] == "application/problem+json"
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["status"] == 401
        status, _, _ = _get(gw.admin + path, {"Authorization": "Bearer not-a-key"})
        assert status == 401, path
        # a data-plane key (role caller) and another tenant's admin are refused
        status, _, body = _get(gw.admin + path, {"Authorization": f"Bearer {CLIENT_KEY}"})
        assert status == 403 and b"viewer" in body, (path, body)
        status, _, body = _get(gw.admin + path, {"Authorization": f"Bearer {keys['acme_admin']}"})
        assert status == 403 and b"system tenant" in body, (path, body)
        for who, h in bearer.items():
            status, _, body = _get(gw.admin + path, h)
            assert status == 200, (path, who, body)
    _, _, body = _get(gw.admin + "/api/config", bearer["config viewer"])
    cfg: dict[str, Any] = json.loads(body)
    assert cfg["admin_auth"] == "required"
    assert {k["hash"] for k in cfg["auth"]["api_keys"]} == {"<redacted>"}
    # probes stay open
    assert _get(gw.admin + "/healthz")[0] == 200
    assert _get(gw.admin + "/readyz")[0] == 200


def _prometheus_config(path: Path, target: str) -> None:
    job = """  - job_name: {name}
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs: [{{targets: ["{target}"]}}]
"""
    text = "global: {scrape_interval: 1s}\nscrape_configs:\n"
    text += job.format(name="with_key", target=target)
    text += f"    authorization: {{type: Bearer, credentials: {SCRAPE_KEY}}}\n"
    text += job.format(name="without_key", target=target)
    path.write_text(text)


@pytest.mark.timeout(90)
def test_prometheus_scrapes_with_a_bearer_token(
    guarded: tuple[Gateway, dict[str, str]], tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not installed: run scripts/services.sh (Debian package prometheus)")
    gw, _ = guarded
    _prometheus_config(tmp_path / "prometheus.yml", gw.admin.removeprefix("http://"))
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--web.listen-address=127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )  # fmt: skip
    try:
        up: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(up) < 2:
            time.sleep(0.2)
            m = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', log.read_text())
            if m is None:
                continue
            status, _, body = _get(f"http://127.0.0.1:{m.group(1)}/api/v1/query?query=up")
            if status != 200:
                continue
            result = json.loads(body)["data"]["result"]
            up = {r["metric"]["job"]: r["value"][1] for r in result}
        assert up == {"with_key": "1", "without_key": "0"}, log.read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(20)


def test_open_by_default_and_reload_switches(tmp_path: Path) -> None:
    gw = start_gateway(_config(tmp_path / "data", None), tmp_path)
    try:
        for path in VIEWS:
            assert _get(gw.admin + path)[0] == 200, path
        gw.config.write_text(_config(tmp_path / "data", "required"))
        deadline = time.monotonic() + 10
        while _get(gw.admin + "/metrics")[0] != 401:
            assert time.monotonic() < deadline, "admin_auth: required did not take on reload"
            time.sleep(0.05)
        for path in VIEWS:
            assert _get(gw.admin + path)[0] == 401, path
            assert _get(gw.admin + path, {"Authorization": f"Bearer {SCRAPE_KEY}"})[0] == 200
    finally:
        stop_gateway(gw)


def test_exposure_warning() -> None:
    from agentgate.api.auth import admin_exposure_warning

    assert admin_exposure_warning("127.0.0.1:8001", "none") is None
    assert admin_exposure_warning("[::1]:8001", "none") is None
    assert admin_exposure_warning("localhost:8001", "none") is None
    assert admin_exposure_warning("0.0.0.0:8001", "required") is None
    warning = admin_exposure_warning("0.0.0.0:8001", "none")
    assert warning is not None and "admin_auth: required" in warning


def test_admin_auth_key_and_config_redaction() -> None:
    assert parse_config({}).admin_auth == "none"
    with pytest.raises(ConfigError) as ei:
        parse_config({"admin_auth": "sometimes"}, "gw.yaml")
    assert ei.value.file == "gw.yaml" and ei.value.path == "admin_auth"
    # /api/config shows the database URL: never its password
    url = "postgresql://ag:s3cret@db.internal:5432/ag?sslmode=require&password=other"
    shown = parse_config({"database_url": url}).redacted()["database_url"]
    assert "s3cret" not in shown and "other" not in shown
    assert shown == (
        "postgresql://ag:<redacted>@db.internal:5432/ag?sslmode=require&password=<redacted>"
    )
    assert parse_config({"database_url": "postgresql:///ag"}).redacted()["database_url"] == (
        "postgresql:///ag"
    )
    # header values written inline (upstream, OTLP) may be tokens; secret references show
    headers = {"Authorization": "Bearer sk-live-123", "X-Key": "Bearer ${secret:openai}"}
    cfg = parse_config(
        {
            "agents": {"a": {"endpoints": [{"url": "http://127.0.0.1:9"}], "headers": headers}},
            "tracing": {"otlp_endpoint": "http://127.0.0.1:4318", "headers": {"api-key": "k-9"}},
        }
    ).redacted()
    assert cfg["agents"]["a"]["headers"] == {
        "Authorization": "<redacted>",
        "X-Key": "Bearer ${secret:openai}",
    }
    assert cfg["tracing"]["headers"] == {"api-key": "<redacted>"}
