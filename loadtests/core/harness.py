"""Shared shape of a core micro-benchmark case, so one harness can interleave all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One operation to time: `fn()` performs `per` units of work (e.g. 64 verifies = per 64)."""

    group: str  # cases in one group are compared with each other, e.g. "ratelimit"
    name: str  # "agentgate", "limits-moving-window", ...
    fn: Callable[[], object]
    per: int = 1
    baseline: bool = False  # the case other cases in the group are divided by
