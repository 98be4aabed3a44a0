"""Priority admission through the real extension, with real asyncio waiting."""

from __future__ import annotations

import asyncio

import pytest

from agentgate._core import ManualClock, PriorityAdmission, SettingError
from agentgate.admission import AdmissionController, AdmissionRejected, Priority, Refusal

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
    assert e.value.reason == Refusal.Shed
    with pytest.raises(AdmissionRejected) as e:
        await c.acquire("low")
    assert e.value.reason == Refusal.Shed, "a more important request waits"
    with pytest.raises(AdmissionRejected) as e:
        await c.acquire(Priority.High)
    assert e.value.reason == Refusal.QueueFull
    assert str(e.value) == "admission rejected: queue_full"
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
    assert e.value.reason == Refusal.Timeout
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
    assert e.value.reason == Refusal.Timeout
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


def test_validation_names_the_setting() -> None:
    with pytest.raises(SettingError) as e:
        AdmissionController(0)
    assert e.value.field == "max_concurrency"
    with pytest.raises(SettingError) as e:
        AdmissionController(1, max_queue=-1)
    assert e.value.field == "max_queue"
    with pytest.raises(SettingError) as e:
        AdmissionController(1, max_wait={Priority.Normal: -1.0})
    assert e.value.field == 'max_wait["normal"]'
    assert isinstance(e.value, ValueError), "callers that catch ValueError keep working"
    with pytest.raises(ValueError, match="max_wait"):
        AdmissionController(1, max_wait={"urgent": 1.0})


async def test_bad_priority() -> None:
    c = AdmissionController(1)
    with pytest.raises(ValueError, match="priority"):
        await c.acquire("urgent")


def test_priority_names_and_the_core_outcome() -> None:
    assert [str(p) for p in (Priority.Critical, Priority.Low)] == ["critical", "low"]
    assert Priority("HIGH") == Priority.High, "names are case-insensitive, as in the config"
    assert {Priority.High: 1}[Priority("high")] == 1
    assert int(Priority.Critical) == 0 and int(Priority.Low) == 3
    core = PriorityAdmission(1, 1, {})
    first = core.acquire(Priority.Normal)
    assert first.admitted and first.ticket is None and first.refusal is None
    queued = core.acquire(Priority.Low)
    assert not queued.admitted and queued.ticket is not None and queued.refusal is None
    evicting = core.acquire(Priority.High)
    assert evicting.shed == [queued.ticket]
    refused = core.acquire(Priority.Low)
    assert refused.refusal == Refusal.Shed and refused.ticket is None
    assert core.depths() == {
        Priority.Critical: 0,
        Priority.High: 1,
        Priority.Normal: 0,
        Priority.Low: 0,
    }
