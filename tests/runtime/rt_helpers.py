"""Helpers of the runtime tests: agent specs, HTTP over a replica's socket, skips that name the
kernel's refusal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentgate.runtime.capabilities import Capability
from agentgate.runtime.spec import AgentSpec
from agentgate.runtime.supervisor import Supervisor

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLES = REPO / "examples" / "agents"
PROBE = str(HERE / "probe_agent.py")


def need(caps: dict[str, Capability], mechanism: str) -> None:
    """Skip (naming the kernel's refusal) when the host lacks a mechanism."""
    c = caps[mechanism]
    if not c.available:
        pytest.skip(f"{mechanism} refused by this host: {c.detail}")


def spec(
    agent_id: str = "a1",
    *,
    command: list[str] | None = None,
    app: str | None = None,
    python_path: list[str] | None = None,
    replicas: int = 1,
    scaling: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    digest: str = "sha256:test",
    **extra: Any,
) -> AgentSpec:
    """An AgentSpec from a minimal process template."""
    s: dict[str, Any] = {"kind": "process", **extra}
    if app is not None:
        s["app"] = app
        s["python_path"] = python_path or []
    else:
        s["command"] = command or [sys.executable, PROBE]
    body = {
        "name": "t",
        "version": "1.0.0",
        "spec": s,
        "scaling": scaling or {"min_replicas": 0, "max_replicas": 8},
        "resources": resources or {"cpu": 1, "memory": "256MiB"},
    }
    return AgentSpec.build(
        agent_id=agent_id,
        tenant_id="tenant",
        tenant="acme",
        name=agent_id,
        digest=digest,
        body=body,
        params={},
        replicas=replicas,
    )


async def http(sock: Path | str, path: str, method: str = "GET", **kw: Any) -> tuple[int, Any]:
    """One request to a replica over its Unix socket: (status, JSON body or text)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s,
        s.request(method, f"http://replica{path}", **kw) as r,
    ):
        text = await r.text()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, text


def only_replica(sup: Supervisor, agent_id: str) -> Any:
    """The single replica of an agent."""
    reps = list(sup.agents[agent_id].replicas.values())
    assert len(reps) == 1, reps
    return reps[0]
