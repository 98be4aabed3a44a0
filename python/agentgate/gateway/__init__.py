"""Data plane: the RSGI handler, the decision engine, the upstream client and health checks."""

from agentgate.gateway.engine import Admitted, Engine, Rejected

__all__ = ["Admitted", "Engine", "Rejected"]
