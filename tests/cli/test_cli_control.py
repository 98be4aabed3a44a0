"""The control-plane CLI against a real API server (granian serving `agentgate.api.app:from_env`
on a free port, SQLite in a temp dir), bootstrapped through `agentgate admin bootstrap`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
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
