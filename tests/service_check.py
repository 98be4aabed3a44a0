"""What a test does when a server it needs is missing: fail under CI=true, else skip naming why."""

from __future__ import annotations

import os

import pytest

__all__ = ["service_unavailable"]


def service_unavailable(what: str, reason: str) -> None:
    """Fail under CI=true (a required service is missing), else skip naming the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} required in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")
