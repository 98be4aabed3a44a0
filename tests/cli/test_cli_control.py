"""The control-plane CLI against a real API server (granian serving `agentgate.api.app:from_env`
on a free port, SQLite in a temp dir), bootstrapped through `agentgate admin bootstrap`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ag(env: dict[str, str], *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "agentgate", *argv], env=env, capture_output=True, text=True
    )
    if ok:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, AGENTGATE_DATA_DIR=str(data), HOME=str(data))
    env.pop("AGENTGATE_DATABASE_URL", None)
    out = _ag(env, "admin", "bootstrap", "--data-dir", str(data)).stdout.splitlines()
    secret = out[-1].strip()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "agentgate.api.app:from_env"],
        env=env,
    )  # fmt: skip
    env.update(AGENTGATE_URL=f"http://127.0.0.1:{port}", AGENTGATE_API_KEY=secret)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait(20)


def _json(p: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(p.stdout)


def test_sign_publish_agent_policy_audit(server: dict[str, str], tmp_path: Path) -> None:
    env = server
    gen = _ag(env, "keys", "gen", str(tmp_path / "pub"), "--register")
    assert "keyid" in gen.stdout
    doc = {
        "name": "echo",
        "version": "1.0.0",
        "description": "echo agent",
        "capabilities": ["echo"],
        "spec": {"kind": "http", "endpoints": [{"url": "http://127.0.0.1:9"}]},
    }
    (tmp_path / "echo.json").write_text(json.dumps(doc))
    _ag(env, "template", "sign", str(tmp_path / "echo.json"), "--key", str(tmp_path / "pub.key"),
        "--out", str(tmp_path / "echo.signed.json"))  # fmt: skip
    pub = _json(_ag(env, "template", "publish", str(tmp_path / "echo.signed.json")))
    assert pub["template"]["version"] == "1.0.0" and pub["verified"]["keyids"]
    doc["version"] = "1.1.0"
    (tmp_path / "echo.json").write_text(json.dumps(doc))
    _ag(env, "template", "publish", str(tmp_path / "echo.json"), "--key", str(tmp_path / "pub.key"))
    assert _json(_ag(env, "template", "show", "echo@^1"))["template"]["version"] == "1.1.0"
    _ag(env, "template", "tag", "echo", "stable", "1.0.0")
    _ag(env, "template", "tag", "echo", "stable", "1.1.0")
    assert _json(_ag(env, "template", "rollback", "echo", "stable"))["tag"] == "stable"
    assert _json(_ag(env, "template", "show", "echo@stable"))["template"]["version"] == "1.0.0"
    assert len(_json(_ag(env, "template", "list", "--capability", "echo"))) == 2
    # unsigned publish is refused with the problem's path on stderr
    bad = _ag(env, "template", "publish", str(tmp_path / "echo.json"), ok=False)
    assert (bad.returncode == 1 and "$.template" in bad.stderr) or "signature" in bad.stderr

    a = _json(_ag(env, "agent", "create", "echo@^1", "--replicas", "2"))
    assert a["name"] == "echo" and a["replicas"] == 2
    assert [x["name"] for x in _json(_ag(env, "agent", "list"))] == ["echo"]
    _ag(env, "agent", "delete", "echo")

    (tmp_path / "in.json").write_text(
        json.dumps({"request": {"replicas": 1}, "signature": {"verified": True, "key_id": "k"}})
    )
    assert _ag(env, "policy", "test", str(tmp_path / "in.json")).returncode == 0
    (tmp_path / "deny.rego").write_text(
        'package agentgate.rules.always\n\ndeny contains "no" if { true }\n'
    )
    denied = _ag(env, "policy", "test", str(tmp_path / "in.json"), "--rego",
                 str(tmp_path / "deny.rego"), ok=False)  # fmt: skip
    assert denied.returncode == 3 and "always" in _json(denied)["rules"]

    created = _json(_ag(env, "keys", "create", "ci", "--role", "viewer"))
    assert created["secret"].startswith("ag_")
    rotated = _json(_ag(env, "keys", "rotate", created["key"]["id"], "--overlap", "0"))
    assert rotated["key"]["rotated_from"] == created["key"]["id"]

    assert _json(_ag(env, "audit", "verify"))["ok"] is True
    export = _ag(env, "audit", "export", "--all").stdout
    (tmp_path / "trail.jsonl").write_text(export)
    assert _json(_ag(env, "audit", "verify", "--file", str(tmp_path / "trail.jsonl")))["ok"]
    lines = export.splitlines()
    entry = json.loads(lines[1])
    entry["outcome"] = "tampered"
    lines[1] = json.dumps(entry)
    (tmp_path / "trail.jsonl").write_text("\n".join(lines) + "\n")
    bad_v = _ag(env, "audit", "verify", "--file", str(tmp_path / "trail.jsonl"), ok=False)
    assert bad_v.returncode == 4 and _json(bad_v)["first_bad_seq"] == 2


def test_profile_file(server: dict[str, str], tmp_path: Path) -> None:
    env = dict(server)
    key = env.pop("AGENTGATE_API_KEY")
    url = env.pop("AGENTGATE_URL")
    prof = tmp_path / "profile.toml"
    prof.write_text(f'[prod]\nurl = "{url}"\napi_key = "{key}"\n')
    env["AGENTGATE_PROFILE_FILE"] = str(prof)
    assert _ag(env, "keys", "--profile", "prod", "list").returncode == 0
    missing = _ag(env, "keys", "list", ok=False)
    assert missing.returncode == 1 and "no API key" in missing.stderr


def _without_url(server: dict[str, str]) -> dict[str, str]:
    env = dict(server)
    env.pop("AGENTGATE_URL")
    env.pop("AGENTGATE_CONFIG", None)
    env["AGENTGATE_PROFILE_FILE"] = "/nonexistent/profile.toml"
    return env


def test_url_defaults_to_the_configs_admin_listener(server: dict[str, str], tmp_path: Path) -> None:
    port = server["AGENTGATE_URL"].rpartition(":")[2]
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"listen: 127.0.0.1:1\nadmin_listen: 0.0.0.0:{port}\n")
    env = _without_url(server)
    # --config FILE: its admin_listen (a wildcard bind is reached on loopback)
    keys = _json(_ag(env, "keys", "--config", str(cfg), "list"))
    assert "bootstrap-admin" in [k["name"] for k in keys]
    # AGENTGATE_CONFIG, as `agentgate serve` sets it for its children
    env["AGENTGATE_CONFIG"] = str(cfg)
    assert "bootstrap-admin" in [k["name"] for k in _json(_ag(env, "keys", "list"))]


def test_default_url_is_the_default_admin_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentgate.cli_client import admin_url, resolve_url

    monkeypatch.delenv("AGENTGATE_URL", raising=False)
    monkeypatch.delenv("AGENTGATE_CONFIG", raising=False)
    url, source = resolve_url(None, {})
    assert url == "http://127.0.0.1:8001" and "default" in source
    assert admin_url("[::]:8001") == "http://[::1]:8001"
    assert admin_url("10.0.0.5:8001") == "http://10.0.0.5:8001"


def test_connection_failure_names_the_url_and_how_to_change_it(
    server: dict[str, str], tmp_path: Path
) -> None:
    env = _without_url(server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound but never listening: every connect is refused
        port = s.getsockname()[1]
        cfg = tmp_path / "gw.yaml"
        cfg.write_text(f"admin_listen: 127.0.0.1:{port}\n")
        p = _ag(env, "keys", "--config", str(cfg), "list", ok=False)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert f"http://127.0.0.1:{port}" in p.stderr and str(cfg) in p.stderr
        assert "AGENTGATE_URL" in p.stderr and "--profile" in p.stderr
        env["AGENTGATE_URL"] = f"http://127.0.0.1:{port}"
        p = _ag(env, "agent", "list", ok=False)
        assert p.returncode == 1 and f"http://127.0.0.1:{port}" in p.stderr
        assert "That URL is AGENTGATE_URL" in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("admin_listen: nope\n")
    p = _ag(_without_url(server), "keys", "--config", str(bad), "list", ok=False)
    assert p.returncode == 1 and "admin_listen" in p.stderr and str(bad) in p.stderr


def test_redirect_is_not_followed_with_the_key(server: dict[str, str]) -> None:
    seen: list[str | None] = []

    class Sink(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)

    class Redirect(Sink):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{sink.server_port}/api/keys")
            self.end_headers()

    hop = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (sink, hop)]
    for t in threads:
        t.start()
    try:
        env = dict(server, AGENTGATE_URL=f"http://127.0.0.1:{hop.server_port}")
        p = _ag(env, "keys", "list", ok=False)
        assert p.returncode == 1 and "307" in p.stderr and "not followed" in p.stderr
        assert seen == []
    finally:
        for s in (sink, hop):
            s.shutdown()
            s.server_close()


def test_tenant_create_with_admin_key(server: dict[str, str]) -> None:
    out = _json(_ag(server, "tenant", "create", "acme", "--admin-key"))
    assert out["tenant"]["name"] == "acme" and out["secret"].startswith("ag_")
    assert out["key"]["tenant_id"] == out["tenant"]["id"] and out["key"]["roles"] == ["admin"]
    as_acme = dict(server, AGENTGATE_API_KEY=out["secret"])
    assert [k["name"] for k in _json(_ag(as_acme, "keys", "list"))] == ["acme-admin"]
    # more keys for that tenant, and the refusal for a tenant admin, from the CLI too
    more = _json(_ag(server, "tenant", "key", out["tenant"]["id"], "--role", "viewer"))
    assert more["key"]["roles"] == ["viewer"]
    denied = _ag(as_acme, "tenant", "key", out["tenant"]["id"], ok=False)
    assert denied.returncode == 1 and "403" in denied.stderr
    names = [t["name"] for t in _json(_ag(server, "tenant", "list"))]
    assert "acme" in names and "system" in names
    dup = _ag(server, "tenant", "create", "acme", ok=False)
    assert dup.returncode == 1 and "409" in dup.stderr
