"""Rate-limit check: agentgate (GCRA in the Rust core) against the `limits` library in memory.

A few keys round-robin, a limit high enough that every request is allowed, so each call is the
full allowed path (read state, update, answer).
"""

from __future__ import annotations

from itertools import cycle

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from agentgate.limits import RateLimiter
from loadtests.core.harness import Case

KEYS = [f"tenant-{i}" for i in range(8)]


def cases() -> list[Case]:
    """Rate-limit cases; the first is the baseline."""
    ours = RateLimiter("1000000/s", burst=1_000_000)
    check = ours.check
    ours_keys = cycle(KEYS)

    def agentgate() -> object:
        return check(next(ours_keys))

    item = parse("1000000/second")
    moving = MovingWindowRateLimiter(MemoryStorage())
    fixed = FixedWindowRateLimiter(MemoryStorage())
    moving_keys = cycle(KEYS)
    fixed_keys = cycle(KEYS)

    def limits_moving() -> object:
        return moving.hit(item, next(moving_keys))

    def limits_fixed() -> object:
        return fixed.hit(item, next(fixed_keys))

    return [
        Case("ratelimit", "agentgate", agentgate, baseline=True),
        Case("ratelimit", "limits-moving-window", limits_moving),
        Case("ratelimit", "limits-fixed-window", limits_fixed),
    ]


if __name__ == "__main__":
    import timeit

    for c in cases():
        n = 100_000
        t = min(timeit.repeat(c.fn, number=n, repeat=3)) / n
        print(f"{c.group:10} {c.name:22} {t * 1e9:8.1f} ns/op")
