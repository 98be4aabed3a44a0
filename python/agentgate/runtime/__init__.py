"""Agents made from templates: the agent factory (create, update, delete with drain), which puts
each agent's pool and routes into the store for the gateway workers to pick up."""

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
