"""Alert rules: thresholds on metrics over a window, with `for:`, severity, labels, annotations.

A rule holds one or more conditions (`match: any` fires when one holds, `all` when every one
does). A condition compares one metric of an agent (or of the fleet) with a threshold:

| metric            | value                                              | window |
|-------------------|----------------------------------------------------|--------|
| p50/p95/p99_latency | request latency quantile, seconds                | yes    |
| error_rate        | 5xx / requests (0 below `min_requests`)            | yes    |
| requests, rate    | request count, requests per second                 | yes    |
| status_5xx, status_4xx | answers of that class                         | yes    |
| healthy_endpoints | endpoints healthy and not breaker-open (now)       | no     |
| breakers_open     | endpoints whose breaker is open (now)              | no     |
| queue_depth, in_flight | waiting / running requests (now)              | no     |
| custom            | `custom.name` aggregated with `custom.agg`         | yes    |

`agent: "*"` evaluates the rule for each agent separately (one alert per agent), `fleet` once for
the whole fleet, any other value for that agent only. Annotations are templates: `{agent}`,
`{value}`, `{threshold}`, `{rule}`, `{severity}` and any label in braces are filled in.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agentgate.observe.settings import parse_period

__all__ = ["DEFAULT_RULES", "OPS", "Condition", "Custom", "Escalation", "Rule", "render"]

Period = Annotated[float, BeforeValidator(parse_period)]
Metric = Literal[
    "p50_latency",
    "p95_latency",
    "p99_latency",
    "error_rate",
    "requests",
    "rate",
    "status_5xx",
    "status_4xx",
    "healthy_endpoints",
    "breakers_open",
    "queue_depth",
    "in_flight",
    "custom",
]
INSTANT: frozenset[str] = frozenset(
    {"healthy_endpoints", "breakers_open", "queue_depth", "in_flight"}
)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Custom(_Model):
    """Which custom metric a `custom` condition reads."""

    name: str = Field(min_length=1, max_length=200)
    agg: Literal["avg", "min", "max", "sum", "count", "last", "rate", "p50", "p95", "p99"] = "avg"
    labels: dict[str, str] = {}


class Condition(_Model):
    """`metric` over `window` compared with `threshold` by `op`."""

    metric: Metric
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    threshold: float
    window: Period = 300.0
    min_requests: int = Field(default=0, ge=0)
    custom: Custom | None = None

    @model_validator(mode="after")
    def _custom_needs_name(self) -> Condition:
        if self.metric == "custom" and self.custom is None:
            raise ValueError("metric custom needs custom: {name, agg}")
        if self.window < 10 and self.metric not in INSTANT:
            raise ValueError("window must be at least 10s")
        return self


class Escalation(_Model):
    """Unacknowledged for `after` since firing → notify `channels`."""

    after: Period
    channels: tuple[str, ...] = Field(min_length=1)


class Rule(_Model):
    """One alert rule."""

    name: str
    conditions: tuple[Condition, ...] = Field(min_length=1, max_length=10)
    match: Literal["any", "all"] = "any"
    agent: str = "*"
    for_: Period = Field(default=0.0, alias="for")
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    cooldown: Period = 0.0
    channels: tuple[str, ...] = ()
    escalation: tuple[Escalation, ...] = ()
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name must match {_NAME.pattern}")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k in ("alertname", "agent", "severity") or not re.match(r"^[A-Za-z_]\w{0,99}$", k):
                raise ValueError(f"label {k!r} is reserved or not a valid label name")
        return v

    def to_json(self) -> dict[str, Any]:
        """The rule as the API shows and stores it."""
        return self.model_dump(mode="json", by_alias=True)


def render(template: str, values: dict[str, Any]) -> str:
    """Fill `{name}` placeholders; unknown names stay as they are."""
    return re.sub(
        r"\{([A-Za-z_]\w*)\}",
        lambda m: _fmt(values[m.group(1)]) if m.group(1) in values else m.group(0),
        template,
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _rule(**kw: Any) -> Rule:
    if "for_" in kw:
        kw["for"] = kw.pop("for_")
    return Rule.model_validate(kw)


DEFAULT_RULES: tuple[Rule, ...] = (
    _rule(
        name="HighLatencyP99",
        conditions=(Condition(metric="p99_latency", op=">", threshold=1.0, window=300),),
        for_=60,
        severity="warning",
        annotations={"summary": "p99 latency of {agent} is {value}s (above {threshold}s)"},
    ),
    _rule(
        name="HighErrorRate",
        conditions=(
            Condition(metric="error_rate", op=">", threshold=0.01, window=300, min_requests=20),
        ),
        for_=60,
        severity="critical",
        annotations={"summary": "{agent} answers 5xx to {value} of requests (above 1 %)"},
    ),
    _rule(
        name="AgentDown",
        conditions=(Condition(metric="healthy_endpoints", op="==", threshold=0),),
        for_=30,
        severity="critical",
        annotations={"summary": "{agent} has no healthy endpoint"},
    ),
    _rule(
        name="QueueDepth",
        conditions=(Condition(metric="queue_depth", op=">", threshold=10),),
        for_=30,
        severity="warning",
        annotations={"summary": "{value} requests wait in {agent}'s queue (above 10)"},
    ),
    _rule(
        name="BreakerOpenOr5xxBurst",
        conditions=(
            Condition(metric="breakers_open", op=">", threshold=0),
            Condition(metric="status_5xx", op=">=", threshold=20, window=60),
        ),
        match="any",
        severity="critical",
        annotations={"summary": "{agent}: breaker open or a burst of 5xx ({value})"},
    ),
)
