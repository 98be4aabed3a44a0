"""Observability settings: the `metrics:`, `alerts:`, `tracing:`, `slos:` and `cost:` sections of
the gateway config file (validated like the rest of it, errors name the field).

The one-line setting for how long history is kept is `metrics: {retention: 3mo}`: it sets how
long the coarsest tiers (1 h and 1 d buckets) are kept; the finer tiers keep their own periods
unless `metrics.tiers` lists them.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AlertsConfig",
    "CostConfig",
    "MetricsConfig",
    "ModelPrice",
    "SloConfig",
    "Tier",
    "TracingConfig",
    "parse_period",
]

_PERIOD_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|mo|y)\s*$")
# a month is 31 days and a year 366, so "13mo" keeps at least 13 calendar months
_PERIOD_UNITS = {
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "mo": 31 * 86400.0,
    "y": 366 * 86400.0,
}


def parse_period(value: object) -> float:
    """Parse "10s", "5m", "2d", "13mo", "1y" or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a period like '30d' or '5m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"period must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a period like '30d' or '5m', got {value!r}")
    m = _PERIOD_RE.match(value)
    if m is None:
        if value.strip() == "0":
            return 0.0
        raise ValueError(f"expected a period like '10s', '5m', '30d' or '13mo', got {value!r}")
    return float(m.group(1)) * _PERIOD_UNITS[m.group(2)]


Period = Annotated[float, BeforeValidator(parse_period)]


def _parse_size(value: object) -> int:
    from agentgate.config import parse_size  # agentgate.config imports this module

    return parse_size(value)


Size = Annotated[int, BeforeValidator(_parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Model):
    """One rollup resolution: buckets of `step`, kept for `keep`."""

    step: Period
    keep: Period

    @field_validator("step")
    @classmethod
    def _whole_seconds(cls, v: float) -> float:
        if v < 1 or v != int(v):
            raise ValueError(f"step must be a whole number of seconds >= 1s, got {v}")
        return v


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(step=10, keep=2 * 86400),
    Tier(step=60, keep=30 * 86400),
    Tier(step=3600, keep=13 * 31 * 86400),
    # the day tier only makes long range queries cheap (30 days = 30 rows per agent)
    Tier(step=86400, keep=13 * 31 * 86400),
)


class MetricsConfig(_Model):
    """Metrics history: flush interval, rollup tiers and retention."""

    flush_interval: Period = 10.0
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    # one-line override of how long the coarsest tiers are kept, e.g. `retention: 3mo`
    retention: Period | None = None
    # the health score's latency objective (Apdex T) for agents without a latency SLO
    apdex_t: Period = 0.5
    health_window: Period = 300.0
    # memory for pre-merged per-agent tables of past buckets (fast 30-day per-agent queries)
    query_cache: Size = 128 * 1024 * 1024

    @model_validator(mode="after")
    def _check_tiers(self) -> MetricsConfig:
        steps = [int(t.step) for t in self.tiers]
        if not steps:
            raise ValueError("tiers: give at least one tier")
        if steps != sorted(set(steps)):
            raise ValueError("tiers: steps must be distinct and in increasing order")
        for a, b in itertools.pairwise(steps):
            if b % a:
                raise ValueError(f"tiers: step {b}s is not a multiple of {a}s")
        if self.flush_interval <= 0 or steps[0] % max(1, int(self.flush_interval)):
            raise ValueError(
                f"flush_interval must divide the finest step ({steps[0]}s), got "
                f"{self.flush_interval}s"
            )
        return self

    def effective_tiers(self) -> tuple[Tier, ...]:
        """The tiers with `retention` applied to those kept longest."""
        if self.retention is None:
            return self.tiers
        longest = max(t.keep for t in self.tiers)
        out = []
        for t in self.tiers:
            keep = self.retention if t.keep == longest else min(t.keep, self.retention)
            out.append(Tier(step=t.step, keep=max(keep, t.step)))
        return tuple(out)


class Grouping(_Model):
    """Alertmanager's grouping knobs, with its defaults."""

    group_by: tuple[str, ...] = ("alertname",)
    group_wait: Period = 30.0
    group_interval: Period = 300.0
    repeat_interval: Period = 4 * 3600.0


class AlertsConfig(_Model):
    """Alert evaluation and notification settings."""

    evaluation_interval: Period = 10.0
    grouping: Grouping = Grouping()
    # shipped rules (p99, error rate, agent down, queue depth, breaker/5xx burst)
    defaults: bool = True
    # outbox delivery: retries with exponential backoff, then the row is kept as dead
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base: Period = 2.0
    retry_max: Period = 300.0
    # the dashboard and notifications link here when set
    external_url: str | None = None


class TracingConfig(_Model):
    """OTLP/HTTP export of spans; the control plane uses the OpenTelemetry SDK."""

    otlp_endpoint: str | None = None
    sampling_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    service_name: str = "agentgate"
    headers: dict[str, str] = {}

    @field_validator("otlp_endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"otlp_endpoint must be an http(s) URL, got {v!r}")
        return v


class SloConfig(_Model):
    """One service-level objective from the config file (more can be added over the API)."""

    name: str
    agent: str
    route: str = "*"
    kind: Literal["availability", "latency"] = "availability"
    objective: float = Field(gt=0.0, lt=1.0)
    threshold: Period | None = None  # latency objective: requests faster than this are good
    period: Literal["28d", "30d"] = "30d"

    @model_validator(mode="after")
    def _latency_needs_threshold(self) -> SloConfig:
        if self.kind == "latency" and not self.threshold:
            raise ValueError("a latency SLO needs threshold (e.g. 500ms)")
        return self


class ModelPrice(_Model):
    """Price of one model per million tokens (input and output), in the table's currency."""

    input: float = Field(ge=0.0)
    output: float = Field(ge=0.0)


class Budget(_Model):
    """A tenant's spending limit over a period."""

    amount: float = Field(gt=0.0)
    period: Literal["day", "month"] = "month"
    action: Literal["alert", "limit"] = "alert"


class CostConfig(_Model):
    """Token prices per model and tenant budgets."""

    currency: str = "USD"
    prices: dict[str, ModelPrice] = {}
    budgets: dict[str, Budget] = {}


def as_dict(model: BaseModel) -> dict[str, Any]:
    """Plain JSON data of a settings model."""
    return model.model_dump(mode="json")
