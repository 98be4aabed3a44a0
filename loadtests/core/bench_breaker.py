"""Circuit breaker call path: agentgate (Rust core) against pybreaker.

`allow()` + `success()` is what a gateway does around each upstream call; `call(f)` is the
like-for-like comparison with `pybreaker.CircuitBreaker.call(f)`, trivial `f` in both.
"""

from __future__ import annotations

import pybreaker

from agentgate.breaker import CircuitBreaker
from loadtests.core.harness import Case


def _f() -> int:
    return 1


def cases() -> list[Case]:
    """Breaker call-path cases; the first is the baseline."""
    ours = CircuitBreaker()
    allow = ours.allow
    success = ours.success

    def allow_success() -> None:
        if allow():
            success()

    def ours_call() -> object:
        return ours.call(_f)

    peer = pybreaker.CircuitBreaker()

    def peer_call() -> object:
        return peer.call(_f)

    return [
        Case("breaker", "agentgate", allow_success, baseline=True),
        Case("breaker", "agentgate-call", ours_call),
        Case("breaker", "pybreaker", peer_call),
    ]


if __name__ == "__main__":
    import timeit

    for c in cases():
        n = 200_000
        t = min(timeit.repeat(c.fn, number=n, repeat=3)) / n
        print(f"{c.group:8} {c.name:16} {t * 1e9:8.1f} ns/op")
