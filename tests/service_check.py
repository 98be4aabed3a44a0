"""What a test does when a server it needs is missing: fail under CI=true, else skip naming why."""

from __future__ import annotations

import os
import subprocess

import pytest

__all__ = ["service_unavailable", "terminate"]


def terminate(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the exit."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def service_unavailable(what: str, reason: str) -> None:
    """Fail under CI=true (a required service is missing), else skip naming the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} required in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")
