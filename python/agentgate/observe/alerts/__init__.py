"""Alerts: rules and their evaluation, notification grouping, channels and the delivery outbox."""

from agentgate.observe.alerts.channels import DeliveryError, Notification
from agentgate.observe.alerts.manager import AlertManager, MetricsView
from agentgate.observe.alerts.outbox import Outbox
from agentgate.observe.alerts.rules import DEFAULT_RULES, Rule

__all__ = [
    "DEFAULT_RULES",
    "AlertManager",
    "DeliveryError",
    "MetricsView",
    "Notification",
    "Outbox",
    "Rule",
]
