"""Rate limiting by key (API key, tenant, IP) with GCRA in the Rust core.

`RateLimiter("100/s", burst=20)` allows bursts of 20 and 100 per second sustained, per key; a
request of `cost` n takes n units (a cost above the burst is always rejected, see
`RateLimitDecision.cost_exceeds_burst`). Memory is bounded by `max_keys`: idle keys (whose bucket
is full again) are dropped first. `headers(decision)` gives the draft-IETF `RateLimit-Policy` and
`RateLimit` header values (and `Retry-After` on a retryable rejection):

    d = limiter.check(api_key)
    if not d:
        return 429, limiter.headers(d)

A bad rate, burst or `max_keys` raises `LimiterError` (a ValueError) whose `kind` names it; a
negative integer argument raises `SettingError` naming the argument.
"""

from __future__ import annotations

from agentgate._core import (
    LimiterError,
    LimiterErrorKind,
    RateLimitDecision,
    RateLimiter,
    SettingError,
)

__all__ = ["LimiterError", "LimiterErrorKind", "RateLimitDecision", "RateLimiter", "SettingError"]
