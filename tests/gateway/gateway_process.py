"""A real `agentgate serve` process for tests: start, wait for its ports, stop."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def start_gateway(config_text: str, tmp: Path, workers: int = 1, timeout: float = 30) -> Gateway:
    """Write the config and run `python -m agentgate serve` on free ports until it serves."""
    cfg = tmp / "agentgate.yaml"
    cfg.write_text(config_text)
    log = tmp / "gateway.log"
    ports = tmp / "ports.json"
    ports.unlink(missing_ok=True)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgate",
            "serve",
            "--config",
            str(cfg),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ports-file",
            str(ports),
            "--workers",
            str(workers),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,  # the default data dir (.agentgate) is relative: one store per test gateway
    )
    end = time.monotonic() + timeout
    # the file appears (atomically) once both listeners serve
    while not ports.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError(log.read_text())
        time.sleep(0.02)
    bound = json.loads(ports.read_text())
    return Gateway(f"http://{bound['listen']}", f"http://{bound['admin']}", cfg, proc, log)


def stop_gateway(gw: Gateway) -> int:
    """SIGTERM and wait; returns the exit code."""
    if gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
    try:
        return gw.proc.wait(40)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        return -9
