"""The package as a user installs it: the wheel is built once per session (`maturin build
--release`) and installed into a fresh venv with its declared dependencies only (no dev
requirements). From that venv: every CLI command's `--help`, then the README's control-plane flow
(admin bootstrap, keys gen --register, template publish, agent create, a request to the agent,
audit verify) against a real `agentgate serve` started from the same venv."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 1500  # a cold release build of the core on two cores, plus pip


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release wheel of this checkout, built once per session."""
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which(
        "maturin"
    )
    if maturin is None:
        pytest.fail("maturin not found: install the dev requirements (make dev)")
    out = tmp_path_factory.mktemp("wheel")
    # the interpreter path `maturin develop` (make dev) gave cargo: pyo3's build scripts rerun
    # when PYO3_PYTHON changes (`…/python3` vs `…/python`), recompiling pyo3 and the core
    venv_python = Path(sys.prefix) / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    p = subprocess.run(
        [maturin, "build", "--release", "--interpreter", python, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    [whl] = out.glob("agentgate-*.whl")
    return whl


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its declared dependencies, nothing else."""
    d = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    p = subprocess.run(
        [d / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         str(wheel)],
        env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    # The point of this venv: what a dev requirement would hide is missing here.
    probe = subprocess.run([d / "bin" / "python", "-c", "import httpx"], capture_output=True)
    assert probe.returncode != 0, "a dependency pulls in httpx: this test would not notice"
    return d


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def _commands(parser: argparse.ArgumentParser) -> list[list[str]]:
    out: list[list[str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append([name])
                out += [[name, *rest] for rest in _commands(sub)]
    return out


@pytest.mark.timeout(BUILD_TIMEOUT * 2)
def test_every_command_has_help(venv: Path, tmp_path: Path) -> None:
    from agentgate.cli import build_parser

    commands = [[], *_commands(build_parser())]
    assert ["tenant", "create"] in commands and ["template", "publish"] in commands
    env = _clean_env(venv, tmp_path)

    def run(cmd: list[str]) -> tuple[list[str], subprocess.CompletedProcess[str]]:
        argv = [str(venv / "bin" / "agentgate"), *cmd, "--help"]
        return cmd, subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        for cmd, p in pool.map(run, commands):
            assert p.returncode == 0, (cmd, p.stderr)
            assert p.stdout.startswith(f"usage: agentgate {' '.join(cmd)}".rstrip()), (
                cmd,
                p.stdout,
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int, int]]:
    """`agentgate serve` from the venv with a demo echo agent; stopped with its whole process
    group, and checked to leave no process behind."""
    echo = _free_port()  # the demo agent takes a fixed address; the gateway binds port 0
    (tmp_path / "agentgate.yaml").write_text(
        f"listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndemo_echo: 127.0.0.1:{echo}\n"
    )
    env = _clean_env(venv, tmp_path)
    log = tmp_path / "serve.log"
    ports = tmp_path / "ports.json"
    proc = subprocess.Popen(
        [venv / "bin" / "agentgate", "serve", "--config", "agentgate.yaml",
         "--ports-file", str(ports)],
        cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: nothing it starts can outlive the test
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ports.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        bound = json.loads(ports.read_text())
        port = int(bound["listen"].rpartition(":")[2])
        admin = bound["admin"]
        env["AGENTGATE_URL"] = f"http://{admin}"  # the README's way to name another listener
        while _get(f"http://{admin}/healthz")[0] != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield tmp_path, env, port, echo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(45)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
            leftover = True
        except ProcessLookupError:
            leftover = False
        if proc.poll() is None:
            proc.wait(10)
        assert not leftover, "agentgate serve left processes running after SIGTERM"
        assert proc.returncode == 0, log.read_text()


def _ag(venv: Path, env: dict[str, str], cwd: Path, *argv: str) -> str:
    p = subprocess.run(
        [venv / "bin" / "agentgate", *argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p.stdout


@pytest.mark.timeout(BUILD_TIMEOUT * 2)
def test_readme_control_plane_flow(
    venv: Path, served: tuple[Path, dict[str, str], int, int]
) -> None:
    cwd, env, port, echo_port = served
    out = _ag(venv, env, cwd, "admin", "bootstrap", "--data-dir", ".agentgate")
    env = dict(env, AGENTGATE_API_KEY=out.splitlines()[-1].strip())
    assert "keyid" in _ag(venv, env, cwd, "keys", "gen", "my-publisher", "--register")
    template = {
        "name": "summarizer",
        "version": "1.2.0",
        "description": "summarises documents",
        "capabilities": ["text.summarize"],
        "spec": {"kind": "http", "endpoints": [{"url": f"http://127.0.0.1:{echo_port}"}]},
        "params_schema": {"type": "object", "properties": {"model": {"type": "string"}}},
    }
    (cwd / "template.json").write_text(json.dumps(template))
    pub = json.loads(
        _ag(venv, env, cwd, "template", "publish", "template.json", "--key", "my-publisher.key")
    )
    assert pub["template"]["version"] == "1.2.0" and pub["verified"]["keyids"]
    agent = json.loads(
        _ag(venv, env, cwd, "agent", "create", "summarizer@^1.2", "--param", "model=small",
            "--replicas", "2")
    )  # fmt: skip
    assert agent["name"] == "summarizer" and agent["replicas"] == 2
    url = f"http://127.0.0.1:{port}/t/system/agents/summarizer/hello?x=1"
    deadline = time.monotonic() + 10
    status, body = _get(url)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body = _get(url)
    assert status == 200, body
    assert json.loads(body)["agent"] == "demo-echo"
    verify = json.loads(_ag(venv, env, cwd, "audit", "verify"))
    assert verify["ok"] is True and verify["checked"] >= 3
