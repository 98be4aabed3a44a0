"""`agentgate secrets …` against a real API server (granian, SQLite); the server's log output is
searched for secret values too."""

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
from leakcheck import collect, new_secret, track


def _free_port() -> int:
    # granian takes a port number; the race window is the one the other CLI tests accept
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ag(env: dict[str, str], *argv: str, stdin: str | None = None, ok: bool = True) -> Any:
    """Run the CLI; its output goes to the leak check."""
    p = subprocess.run(
        [sys.executable, "-m", "agentgate", *argv],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )
    collect(f"cli:{argv[:2]}", p.stdout + p.stderr)
    if ok:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("clisec")
    env = dict(os.environ, AGENTGATE_DATA_DIR=str(data), HOME=str(data))
    env["AGENTGATE_MASTER_KEY"] = track(os.urandom(32).hex())
    env.pop("AGENTGATE_DATABASE_URL", None)
    env.pop("AGENTGATE_CONFIG", None)
    secret = ag(env, "admin", "bootstrap", "--data-dir", str(data)).stdout.splitlines()[-1].strip()
    port = _free_port()
    log = open(data / "server.log", "w+")  # noqa: SIM115 (open for the whole module)
    proc = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "debug", "agentgate.api.app:from_env"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env.update(AGENTGATE_URL=f"http://127.0.0.1:{port}", AGENTGATE_API_KEY=secret)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait(20)
        log.seek(0)
        collect("server log", log.read())
        log.close()


def test_secrets_cli(server: dict[str, str], tmp_path: Path) -> None:
    env = server
    v = new_secret("sk")
    out = json.loads(
        ag(env, "secrets", "set", "openai", "--class", "api_key", stdin=v + "\n").stdout
    )
    assert out["name"] == "openai" and out["class"] == "api_key"
    f = tmp_path / "v2"
    f.write_text(new_secret("sk"))
    assert (
        json.loads(ag(env, "secrets", "rotate", "openai", "--value-file", str(f)).stdout)["version"]
        == 2
    )
    p = ag(env, "secrets", "rotate", "openai", "--generate", ok=False)
    assert p.returncode == 1 and "not generated" in p.stderr
    p = ag(env, "secrets", "set", "openai", stdin=new_secret(), ok=False)
    assert p.returncode == 1 and "409" in p.stderr
    assert [s["name"] for s in json.loads(ag(env, "secrets", "list").stdout)] == ["openai"]
    assert json.loads(ag(env, "secrets", "get", "openai").stdout)["version"] == 2
    st = json.loads(ag(env, "secrets", "kek", "rotate").stdout)
    assert st["kek"]["latest_version"] == 2 and st["rewrapped"] == 2  # both versions (overlap)
    assert json.loads(ag(env, "secrets", "kek", "status").stdout)["latest_version"] == 2
    assert json.loads(ag(env, "secrets", "due").stdout) == []
    ag(env, "secrets", "delete", "openai")
    p = ag(env, "secrets", "get", "openai", ok=False)
    assert p.returncode == 1 and "404" in p.stderr


def test_privacy_cli(server: dict[str, str], tmp_path: Path) -> None:
    env = server
    s = "frank@example.com"
    ag(env, "privacy", "consent", "--subject", s, "--purpose", "ads", "--source", "x", "--granted")
    assert [
        c["granted"] for c in json.loads(ag(env, "privacy", "consents", "--subject", s).stdout)
    ] == [True]
    req = json.loads(ag(env, "privacy", "request", "access", "--subject", s).stdout)
    assert req["status"] == "received"
    assert [r["id"] for r in json.loads(ag(env, "privacy", "requests").stdout)] == [req["id"]]
    assert json.loads(ag(env, "privacy", "process", req["id"]).stdout)["status"] == "completed"
    out = tmp_path / "bundle.json"
    ag(env, "privacy", "export", req["id"], "--out", str(out))
    assert json.loads(out.read_text())["subject"] == s
    er = json.loads(ag(env, "privacy", "request", "erasure", "--subject", s).stdout)
    assert json.loads(ag(env, "privacy", "show", er["id"]).stdout)["kind"] == "erasure"
    ag(env, "privacy", "process", er["id"])
    assert json.loads(ag(env, "privacy", "consents", "--subject", s).stdout) == []
    assert json.loads(ag(env, "privacy", "requests", "--overdue").stdout) == []
    assert "audit" in json.loads(ag(env, "privacy", "retention").stdout)["periods"]
    assert "deleted" in json.loads(ag(env, "privacy", "retention", "--run").stdout)
