"""Rego policies evaluated on template publish, agent creation and deploy (Rust core)."""

from agentgate.policy.evaluator import (
    CompileProblem,
    DryRun,
    ModuleCoverage,
    PolicyCompileFailed,
    PolicyDecision,
    PolicyService,
    Reason,
    Stage,
    default_modules,
)

__all__ = [
    "CompileProblem",
    "DryRun",
    "ModuleCoverage",
    "PolicyCompileFailed",
    "PolicyDecision",
    "PolicyService",
    "Reason",
    "Stage",
    "default_modules",
]
