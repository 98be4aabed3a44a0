"""The state operations of the OpenAPI document (agents as of a time, restore)."""

# ruff: noqa: E501  (the operation table reads best one route per line)

from __future__ import annotations

from typing import Any

from agentgate.api.routes import state as st

__all__ = ["OPS", "REQUESTS", "RESPONSES"]

REQUESTS = st.REQUESTS
RESPONSES = st.RESPONSES

OPS: list[tuple[str, str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    ("get", "/api/state/agents", "agentsAt", "Every agent as of a time (at: ISO 8601 or epoch seconds; default now)", None, 200, st.AgentStatesOut, [("at", "string")]),
    ("get", "/api/state/agents/{name}", "agentAt", "One agent as of a time, from its event history", None, 200, st.AgentStateOut, [("at", "string")]),
    ("post", "/api/state/restore", "restoreState", "Write the state as of a time back as new events", st.RestoreIn, 200, st.RestoreOut, []),
]  # fmt: skip
