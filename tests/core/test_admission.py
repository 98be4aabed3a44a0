"""Priority admission through the real extension, with real asyncio waiting."""

from __future__ import annotations

import asyncio

import pytest

from agentgate._core import ManualClock
from agentgate.admission import AdmissionController, AdmissionRejected

NO_LIMIT = {"critical": None, "high": None, "normal": None, "low": None}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_admit_queue_and_wake_in_class_order() -> None:
    c = AdmissionController(1, max_queue=10, max_wait=NO_LIMIT)
    order: list[str] = []

    async def worker(name: str, prio: str) -> None:
        async with c.slot(prio):
            order.append(name)

    await c.acquire("normal")
    tasks = [
        asyncio.create_task(worker(n, p))
        for n, p in [("l1", "low"), ("n1", "normal"), ("c1", "critical"), ("n2", "normal")]
    ]
    await settle()
    assert c.depths() == {"critical": 1, "high": 0, "normal": 2, "low": 1}
    assert c.in_flight == 1
    c.release()
    await asyncio.gather(*tasks)
    assert order == ["c1", "n1", "n2", "l1"]
    assert c.in_flight == 0


async def test_shed_lowest_class_when_full() -> None:
    c = AdmissionController(1, max_queue=1, max_wait=NO_LIMIT)
    await c.acquire("normal")
    low = asyncio.create_task(c.acquire("low"))
    await settle()
    high = asyncio.create_task(c.acquire("high"))
    await settle()
    with pytest.raises(AdmissionRejected) as e:
        await low
    assert e.value.reason == "shed"
    with pytest.raises(AdmissionRejected) as e:
        await c.acquire("low")
    assert e.value.reason == "shed", "a more important request waits"
    with pytest.raises(AdmissionRejected) as e:
        await c.acquire("high")
    assert e.value.reason == "queue_full"
    c.release()
    await high
    assert c.in_flight == 1
    c.release()


async def test_manual_clock_expiry_per_class() -> None:
    clock = ManualClock()
    c = AdmissionController(1, max_queue=10, clock=clock)  # default waits: low 0.5, normal 1
    await c.acquire("critical")
    low = asyncio.create_task(c.acquire("low"))
    normal = asyncio.create_task(c.acquire("normal"))
    await settle()
    clock.advance(0.5)
    assert c.expire() == 1
    with pytest.raises(AdmissionRejected) as e:
        await low
    assert e.value.reason == "timeout"
    assert not normal.done()
    clock.advance(0.5)
    assert c.expire() == 1
    with pytest.raises(AdmissionRejected):
        await normal
    c.release()
    assert c.in_flight == 0


async def test_real_timer_timeout() -> None:
    c = AdmissionController(1, max_queue=10, max_wait={"normal": 0.02})
    await c.acquire("normal")
    with pytest.raises(AdmissionRejected) as e:
        await c.acquire("normal")
    assert e.value.reason == "timeout"
    assert c.depths()["normal"] == 0
    c.release()
    assert c.in_flight == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    c = AdmissionController(1, max_queue=10, max_wait=NO_LIMIT)
    await c.acquire("normal")
    t = asyncio.create_task(c.acquire("normal"))
    await settle()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert c.depths()["normal"] == 0
    c.release()
    assert c.in_flight == 0


async def test_cancel_after_grant_releases_the_slot() -> None:
    c = AdmissionController(1, max_queue=10, max_wait=NO_LIMIT)
    await c.acquire("normal")
    t = asyncio.create_task(c.acquire("normal"))
    await settle()
    c.release()  # the slot passes to t's ticket and resolves its future
    t.cancel()  # ...but t is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await t
    assert c.in_flight == 0, "the granted slot was given back"


async def test_release_skips_a_cancelled_future_and_passes_the_slot_on() -> None:
    c = AdmissionController(1, max_queue=10, max_wait=NO_LIMIT)
    await c.acquire("normal")
    a = asyncio.create_task(c.acquire("normal"))
    b = asyncio.create_task(c.acquire("normal"))
    await settle()
    a.cancel()  # a's future is cancelled now; its handler has not run yet
    c.release()  # the core grants a's ticket: the slot must go on to b
    with pytest.raises(asyncio.CancelledError):
        await a
    await b
    assert c.in_flight == 1
    c.release()
    assert c.in_flight == 0


async def test_concurrency_limit_holds_under_load() -> None:
    c = AdmissionController(3, max_queue=1000, max_wait=NO_LIMIT)
    live = 0
    peak = 0

    async def job(prio: str) -> None:
        nonlocal live, peak
        async with c.slot(prio):
            live += 1
            peak = max(peak, live)
            await asyncio.sleep(0)
            live -= 1

    prios = ["critical", "high", "normal", "low"]
    await asyncio.gather(*(job(prios[i % 4]) for i in range(200)))
    assert peak == 3
    assert c.in_flight == 0
    assert sum(c.depths().values()) == 0


def test_validation() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        AdmissionController(0)
    with pytest.raises(ValueError, match="unknown classes"):
        AdmissionController(1, max_wait={"urgent": 1.0})
    with pytest.raises(ValueError, match="normal"):
        AdmissionController(1, max_wait={"normal": -1.0})


async def test_bad_priority() -> None:
    c = AdmissionController(1)
    with pytest.raises(ValueError, match="priority"):
        await c.acquire("urgent")
