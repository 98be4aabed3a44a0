"""Typed control-plane errors; the API layer maps each to an RFC 9457 problem (`status`, `title`).

Raise these from store/, tenancy/, registry/, policy/ … and let the API turn them into
problem+json. `detail` is the human message; subclasses add the fields a client can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AgentgateError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PolicyDenied",
    "Unauthorized",
]


class AgentgateError(Exception):
    """Base of all control-plane errors; `status` and `title` feed RFC 9457 problem documents."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 members this error contributes (type/instance are the API's business)."""
        return {"title": self.title, "status": self.status, "detail": self.detail}


class NotFound(AgentgateError):
    """The object does not exist, or exists in another tenant (never say which)."""

    status = 404
    title = "Not found"


class Conflict(AgentgateError):
    """The write clashes with existing state (duplicate name/version, stale update …)."""

    status = 409
    title = "Conflict"


class Invalid(AgentgateError):
    """The input is malformed; `path` is the JSON path of the bad field (e.g. `$.params.x`)."""

    status = 422
    title = "Invalid input"

    def __init__(self, detail: str, path: str = "$") -> None:
        super().__init__(detail)
        self.path = path

    def problem(self) -> dict[str, Any]:
        """Problem members plus the JSON path of the bad field."""
        return {**super().problem(), "path": self.path}


class Unauthorized(AgentgateError):
    """No valid credentials (missing, unknown, expired or revoked key)."""

    status = 401
    title = "Unauthorized"


class Forbidden(AgentgateError):
    """Authenticated, but the principal's roles do not allow the action."""

    status = 403
    title = "Forbidden"


class PolicyDenied(AgentgateError):
    """A policy refused the operation; `decision` is the full policy decision (rules, reasons)."""

    status = 403
    title = "Denied by policy"

    def __init__(self, detail: str, decision: Mapping[str, Any]) -> None:
        super().__init__(detail)
        self.decision = dict(decision)

    def problem(self) -> dict[str, Any]:
        """Problem members plus the decision that denied the operation."""
        return {**super().problem(), "decision": self.decision}
