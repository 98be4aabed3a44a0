"""A real `agentgate serve` process for tests: start, wait for its ports, stop."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from upstreams import free_port

API_KEY = "test-key-1"
API_KEY_HASH = "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest()


@dataclass
class Gateway:
    """A running gateway process."""

    url: str
    admin: str
    config: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the gateway printed so far."""
        return self.log.read_text(errors="replace")


def _wait(port: int, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start_gateway(config_text: str, tmp: Path, workers: int = 1) -> Gateway:
    """Write the config and run `python -m agentgate serve` until the ports answer."""
    port, admin = free_port(), free_port()
    cfg = tmp / "agentgate.yaml"
    cfg.write_text(config_text)
    log = tmp / "gateway.log"
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgate",
            "serve",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin-listen",
            f"127.0.0.1:{admin}",
            "--workers",
            str(workers),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,  # the default data dir (.agentgate) is relative: one store per test gateway
    )
    try:
        _wait(port)
        _wait(admin)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(log.read_text()) from None
    return Gateway(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", cfg, proc, log)


def stop_gateway(gw: Gateway) -> int:
    """SIGTERM and wait; returns the exit code."""
    if gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
    try:
        return gw.proc.wait(40)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        return -9
