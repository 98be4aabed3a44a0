"""Agents made from templates: the factory, and the runtime that runs `process` templates
(supervisor, warm pools, autoscaling, isolation, checkpoints, Ray backend).

The factory's names are loaded on first use: the replica launcher and fork server import
modules of this package and must not pay for the registry's imports (jsonschema alone takes
seconds on a loaded host) on every replica start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentgate.runtime.factory import (
        AgentFactory,
        AgentRecord,
        AuditLog,
        PolicyEvaluator,
        ScopeAudit,
        gateway_name,
        gateway_parts,
        mount_path,
        render_spec,
    )

__all__ = [
    "AgentFactory",
    "AgentRecord",
    "AuditLog",
    "PolicyEvaluator",
    "ScopeAudit",
    "gateway_name",
    "gateway_parts",
    "mount_path",
    "render_spec",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("agentgate.runtime.factory"), name)
    raise AttributeError(f"module 'agentgate.runtime' has no attribute {name!r}")
