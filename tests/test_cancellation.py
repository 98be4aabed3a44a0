"""`agentgate.cancellation`: a cancellation that Python 3.11's `wait_for` lost is raised again
at the next turn of the loop, and an expired `asyncio.timeout` still ends as a TimeoutError."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from agentgate.cancellation import raise_if_cancelled

pytestmark = pytest.mark.timeout(30)


async def test_a_cancellation_that_wait_for_lost_ends_the_loop_at_its_next_turn() -> None:
    loop = asyncio.get_running_loop()
    waits: list[asyncio.Future[int]] = []
    returned: list[int] = []

    async def consume() -> None:
        while True:
            raise_if_cancelled()
            f: asyncio.Future[int] = loop.create_future()
            waits.append(f)
            returned.append(await asyncio.wait_for(f, 10))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # its first step: parked in wait_for
    assert len(waits) == 1
    waits[0].set_result(1)  # the awaited call finishes in the loop iteration ...
    task.cancel()  # ... in which the cancellation arrives
    done, _ = await asyncio.wait({task}, timeout=5.0)
    assert done and task.cancelled()
    assert len(waits) == 1, "the loop went on waiting after it was cancelled"
    if sys.version_info < (3, 12):
        assert returned == [1], "3.11's wait_for returned the result (the case under test)"


async def test_nothing_is_raised_in_a_task_nobody_cancelled() -> None:
    raise_if_cancelled()
    await asyncio.sleep(0)
    raise_if_cancelled()


async def test_inside_an_expired_timeout_it_ends_as_the_timeout() -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            with contextlib.suppress(asyncio.CancelledError):  # as a library that loses it
                await asyncio.sleep(1)
            raise_if_cancelled()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
