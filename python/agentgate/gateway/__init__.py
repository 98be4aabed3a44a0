"""Data plane: the RSGI handler, the decision engine, the upstream client and health checks."""

from agentgate.gateway.engine import Engine, Flight, Rejected

__all__ = ["Engine", "Flight", "Rejected"]
