"""OpenAPI operations of the observability routes (metrics, health, system, alerts)."""

# ruff: noqa: E501  (the operation table reads best one route per line)

from __future__ import annotations

from typing import Any

from agentgate.api.routes import _observe_models as om
from agentgate.api.routes.alerts import AckIn, ChannelIn, SilenceIn
from agentgate.api.routes.observe import RecordIn, ThresholdIn
from agentgate.api.routes.slo_cost import BudgetIn, SloIn, UsageIn
from agentgate.observe.alerts.rules import Rule

__all__ = ["OPS"]

_RANGE = [("start", "number"), ("end", "number"), ("range", "number")]
OPS: list[tuple[str, str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    ("get", "/api/metrics/summary", "metricsSummary", "Golden signals of the fleet, an agent or a route", None, 200, om.SignalsOut, [*_RANGE, ("agent", "string"), ("route", "string")]),
    ("get", "/api/metrics/series", "metricsSeries", "Golden signals per time step (charts)", None, 200, om.SeriesOut, [*_RANGE, ("agent", "string"), ("points", "integer")]),
    ("get", "/api/metrics/agents", "metricsAgents", "Signals, state and health per agent", None, 200, [om.AgentRowOut], _RANGE),
    ("get", "/api/metrics/advanced", "queryCustomMetrics", "Custom metric names, or one metric aggregated", None, 200, om.CustomQueryOut, [*_RANGE, ("name", "string"), ("agg", "string"), ("by", "string"), ("agent", "string"), ("step", "integer")]),
    ("post", "/api/metrics/advanced", "recordCustomMetrics", "Record counters, gauges and histograms", RecordIn, 202, om.RecordedOut, []),
    ("get", "/api/metrics/advanced/export", "exportCustomMetrics", "A metric as CSV or JSON lines", None, 200, "ndjson", [*_RANGE, ("name", "string"), ("agg", "string"), ("by", "string"), ("step", "integer"), ("format", "string")]),
    ("get", "/api/metrics/advanced/thresholds", "listThresholds", "Thresholds on custom metrics", None, 200, [om.RuleOut], []),
    ("put", "/api/metrics/advanced/thresholds/{name}", "putThreshold", "Set a threshold (an alert rule) on a custom metric", ThresholdIn, 200, om.RuleOut, []),
    ("get", "/api/health/score", "healthScore", "Fleet and per-agent health scores", None, 200, om.HealthScoreOut, []),
    ("get", "/api/system/monitoring", "systemMonitoring", "Host CPU, memory, disk, load, fds and process figures", None, 200, om.MonitoringOut, []),
    ("get", "/api/alerts/rules", "listAlertRules", "Alert rules", None, 200, [om.RuleOut], []),
    ("post", "/api/alerts/rules", "createAlertRule", "Create an alert rule", Rule, 201, om.RuleOut, []),
    ("get", "/api/alerts/rules/{name}", "getAlertRule", "One alert rule", None, 200, om.RuleOut, []),
    ("put", "/api/alerts/rules/{name}", "putAlertRule", "Create or replace an alert rule", Rule, 200, om.RuleOut, []),
    ("delete", "/api/alerts/rules/{name}", "deleteAlertRule", "Delete an alert rule (its alerts resolve)", None, 204, None, []),
    ("get", "/api/alerts/active", "activeAlerts", "Pending and firing alerts", None, 200, [om.AlertOut], []),
    ("get", "/api/alerts/history", "alertHistory", "Alert state changes, newest first", None, 200, [om.EventOut], [("since", "number"), ("until", "number"), ("limit", "integer")]),
    ("get", "/api/alerts/stats", "alertStats", "Counts and times to acknowledge / resolve", None, 200, om.StatsOut, [("since", "number")]),
    ("get", "/api/alerts/silences", "listSilences", "Silences", None, 200, [om.SilenceOut], [("expired", "string")]),
    ("post", "/api/alerts/silences", "createSilence", "Silence alerts matching labels", SilenceIn, 201, om.SilenceOut, []),
    ("delete", "/api/alerts/silences/{silence_id}", "expireSilence", "End a silence now", None, 204, None, []),
    ("get", "/api/alerts/channels", "listAlertChannels", "Notification channels (secrets redacted)", None, 200, [om.ChannelOut], []),
    ("get", "/api/alerts/channels/{name}", "getAlertChannel", "One channel", None, 200, om.ChannelOut, []),
    ("put", "/api/alerts/channels/{name}", "putAlertChannel", "Create or replace a channel (slack, email, webhook, alertmanager)", ChannelIn, 200, om.ChannelOut, []),
    ("delete", "/api/alerts/channels/{name}", "deleteAlertChannel", "Delete a channel", None, 204, None, []),
    ("post", "/api/alerts/channels/{name}/test", "testAlertChannel", "Send a test notification through a channel", None, 200, om.TestSentOut, []),
    ("get", "/api/alerts/{alert_id}", "getAlert", "One alert with its events", None, 200, om.AlertOut, []),
    ("post", "/api/alerts/{alert_id}/ack", "acknowledgeAlert", "Acknowledge an alert", AckIn, 200, om.AlertOut, []),
    ("get", "/api/slos", "listSlos", "SLOs with SLI, error budget left and burn rates", None, 200, [om.SloOut], []),
    ("get", "/api/slos/{name}", "getSlo", "One SLO's status", None, 200, om.SloOut, []),
    ("put", "/api/slos/{name}", "putSlo", "Create or replace an SLO", SloIn, 200, om.SloOut, []),
    ("delete", "/api/slos/{name}", "deleteSlo", "Delete an SLO set over the API", None, 204, None, []),
    ("get", "/api/cost", "queryCost", "Requests, tokens and cost per agent, tenant or model", None, 200, om.CostOut, [*_RANGE, ("by", "string"), ("tenant", "string")]),
    ("post", "/api/cost/usage", "recordUsage", "Record token usage", UsageIn, 202, om.UsageRecordedOut, []),
    ("get", "/api/cost/budgets", "listBudgets", "Budgets and spend in their current period", None, 200, [om.BudgetOut], [("at", "number")]),
    ("put", "/api/cost/budgets/{tenant}", "putBudget", "Set a tenant's budget (system)", BudgetIn, 200, om.BudgetOut, []),
    ("delete", "/api/cost/budgets/{tenant}", "deleteBudget", "Remove a tenant's API budget (system)", None, 204, None, []),
]  # fmt: skip
