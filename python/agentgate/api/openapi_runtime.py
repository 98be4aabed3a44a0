"""OpenAPI operations of the agent runtime routes (replicas, scaling, capabilities)."""

from __future__ import annotations

from typing import Any

from agentgate.api.routes.runtime import CapabilitiesOut, ReplicasOut, ScaleIn, ScaleOut

__all__ = ["OPS"]

OPS: list[tuple[str, str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    (
        "get",
        "/api/agents/{name}/replicas",
        "listReplicas",
        "An agent's replicas: state, pid, socket, restarts, CPU, memory",
        None,
        200,
        ReplicasOut,
        [],
    ),
    (
        "post",
        "/api/agents/{name}/scale",
        "scaleAgent",
        "Set an agent's replica count by hand (audited)",
        ScaleIn,
        200,
        ScaleOut,
        [],
    ),
    (
        "get",
        "/api/runtime/capabilities",
        "runtimeCapabilities",
        "Isolation mechanisms this host allows replicas",
        None,
        200,
        CapabilitiesOut,
        [],
    ),
]
