"""Health scores per agent and for the fleet, from success rate, latency and health checks.

The formula (0 worst … 100 best), over the last `metrics.health_window` (5 min by default):

    success  = 1 − (5xx answers / requests)                        (1 without requests)
    apdex    = (satisfied + tolerating / 2) / requests, with T the agent's latency objective
               (its latency SLO threshold, else `metrics.apdex_t`, 0.5 s): satisfied ≤ T,
               tolerating ≤ 4T (from the latency sketch)            (1 without requests)
    checks   = endpoints healthy and not breaker-open / endpoints  (1 without endpoints known)
    score    = 100 × (0.4 × success + 0.3 × apdex + 0.3 × checks)
    an agent with no healthy endpoint scores 0 (it cannot serve)

The global score is the mean of the agents' scores weighted by 1 + log10(1 + requests), so a busy
agent counts more, but an idle broken one still pulls the score down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentgate.observe.feed import AgentState
from agentgate.observe.history import Signals

__all__ = ["Health", "agent_health", "fleet_health"]

W_SUCCESS, W_APDEX, W_CHECKS = 0.4, 0.3, 0.3


@dataclass(frozen=True, slots=True)
class Health:
    """One agent's score and its parts."""

    agent: str
    score: float
    success: float
    apdex: float
    checks: float
    requests: int

    def to_dict(self) -> dict[str, Any]:
        """JSON view (parts rounded to 4 places)."""
        return {
            "agent": self.agent,
            "score": round(self.score, 1),
            "success": round(self.success, 4),
            "apdex": round(self.apdex, 4),
            "checks": round(self.checks, 4),
            "requests": self.requests,
        }


def agent_health(
    agent: str, signals: Signals | None, state: AgentState | None, apdex_t: float
) -> Health:
    """The score of one agent (see the module doc for the formula)."""
    n = signals.requests if signals is not None else 0
    if signals is not None and n > 0:
        success = 1.0 - signals.errors / n
        sk = signals.latency
        if sk.count:
            sat = sk.fraction_below(apdex_t)
            tol = sk.fraction_below(4 * apdex_t) - sat
            apdex = sat + max(0.0, tol) / 2
        else:
            apdex = 1.0
    else:
        success = apdex = 1.0
    checks = 1.0
    if state is not None and state.endpoints > 0:
        checks = state.healthy / state.endpoints
    score = 100.0 * (W_SUCCESS * success + W_APDEX * apdex + W_CHECKS * checks)
    if state is not None and state.endpoints > 0 and state.healthy == 0:
        score = 0.0
    return Health(agent, max(0.0, min(100.0, score)), success, apdex, checks, n)


def fleet_health(scores: Mapping[str, Health]) -> float | None:
    """Weighted mean of the agents' scores (None without agents)."""
    total = weight = 0.0
    for h in scores.values():
        w = 1.0 + math.log10(1 + h.requests)
        total += w * h.score
        weight += w
    return round(total / weight, 1) if weight else None
