"""Request and response models of the observability routes, for the OpenAPI document.

Request bodies are the models the handlers validate with; responses are described by their
main fields (extra fields allowed: the JSON carries more detail than the document pins down).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agentgate.api.routes.alerts import AckIn, ChannelIn, Matcher, SilenceIn
from agentgate.api.routes.observe import PointIn, RecordIn, ThresholdIn
from agentgate.api.routes.slo_cost import BudgetIn, SloIn, UsageIn, UsageRecord
from agentgate.observe.alerts.rules import Condition, Custom, Escalation, Rule

__all__ = ["REQUESTS", "RESPONSES"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SignalsOut(_Open):
    """Golden signals over a range."""

    start: int
    end: int
    requests: int
    rate: float
    error_rate: float
    latency: dict[str, float | None]


class SeriesOut(_Open):
    """Signals per time step."""

    agent: str
    step: int
    points: list[dict[str, Any]]


class AgentRowOut(_Open):
    """One agent's signals, state and health."""

    agent: str
    requests: int


class HealthScoreOut(_Open):
    """Fleet and per-agent health scores (formula in the README)."""

    score: float | None
    window: float
    agents: list[dict[str, Any]]


class MonitoringOut(_Open):
    """Host and process figures."""

    at: float
    host: dict[str, Any] | None
    processes: list[dict[str, Any]]


class RecordedOut(_Open):
    """How many points were recorded."""

    recorded: int


class CustomQueryOut(_Open):
    """Metric names, or the aggregated results of one metric."""


class RuleOut(_Open):
    """An alert rule."""

    name: str
    conditions: list[dict[str, Any]]
    severity: str


class AlertOut(_Open):
    """An alert (one rule and label set)."""

    id: str
    rule: str
    state: str
    labels: dict[str, str]


class EventOut(_Open):
    """One alert state change."""

    at: float
    kind: str


class StatsOut(_Open):
    """Alert counts and times to acknowledge / resolve."""

    fired: int


class SilenceOut(_Open):
    """A silence."""

    id: str
    starts_at: float
    ends_at: float


class ChannelOut(_Open):
    """A notification channel, secrets redacted."""

    name: str
    kind: str


class TestSentOut(_Open):
    """The test notification was accepted."""

    sent: bool


class SloOut(_Open):
    """An SLO with its status."""

    name: str
    objective: float
    sli: float | None
    budget_remaining: float | None


class CostOut(_Open):
    """Spend per group."""

    currency: str
    total: float
    items: list[dict[str, Any]]


class UsageRecordedOut(_Open):
    """Usage records taken and their cost."""

    recorded: int
    cost: float


class BudgetOut(_Open):
    """A budget and the spend of its current period."""

    tenant: str
    amount: float
    spent: float
    exceeded: bool


REQUESTS: tuple[type[BaseModel], ...] = (
    PointIn,
    RecordIn,
    ThresholdIn,
    Rule,
    Condition,
    Custom,
    Escalation,
    Matcher,
    SilenceIn,
    ChannelIn,
    AckIn,
    SloIn,
    UsageRecord,
    UsageIn,
    BudgetIn,
)
RESPONSES: tuple[type[BaseModel], ...] = (
    SignalsOut,
    SeriesOut,
    AgentRowOut,
    HealthScoreOut,
    MonitoringOut,
    RecordedOut,
    CustomQueryOut,
    RuleOut,
    AlertOut,
    EventOut,
    StatsOut,
    SilenceOut,
    ChannelOut,
    TestSentOut,
    SloOut,
    CostOut,
    UsageRecordedOut,
    BudgetOut,
)
