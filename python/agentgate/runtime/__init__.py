"""Agents made from templates: the factory now; managed workers, pools and scaling later."""

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
