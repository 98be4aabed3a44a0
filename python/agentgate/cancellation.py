"""Cancellation that a library lost, noticed and raised again.

Python 3.11's `asyncio.wait_for` returns the awaited result, and drops the cancellation, when a
task is cancelled in the loop iteration in which the awaited call finished (CPython gh-86296;
3.12 rebuilt `wait_for` on `asyncio.timeout`). redis-py sends every command through `wait_for`
once a socket timeout is set, so a task cancelled just as it sends a command carries on as if
nothing had happened. A loop in such a task never ends: a gateway's change-feed task went on
reading Redis after shutdown had cancelled it, in about 1 run in 10 of
`tests/bus/test_gateway_changes.py`. aiosmtplib waits for replies the same way. asyncpg and
aiokafka ship their own fixed `wait_for`, and our code uses `asyncio.timeout` (ruff bans
`asyncio.wait_for` in `python/`).

The lost request still counts on the task (`Task.cancelling()` stays above zero until someone
calls `uncancel()`), which is how `raise_if_cancelled` notices it.
"""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelled"]


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled and the error got lost on the way.

    Call it at the top of each turn of a loop that awaits redis-py or aiosmtplib, never in
    cleanup code: a `finally` that runs because of a cancellation runs while the request still
    counts. Inside an expired `asyncio.timeout` block the raise becomes that block's TimeoutError,
    as the lost cancellation would have.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError
