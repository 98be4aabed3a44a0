"""The event log and event-sourced agent state on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgate.errors import Invalid, NotFound
from agentgate.state import AgentHistory, AgentStateView, ReplicaCheckpoints, Tailer, fold
from agentgate.store import Store, open_store
from agentgate.store.events import NewEvent, VersionConflict

YEAR = 365 * 86400.0


def doc(replicas: int, state: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "id": "a1",
        "name": "bot",
        "template_ref": "bot@^1",
        "template_digest": "sha256:" + "0" * 64,
        "params": {"model": "m"},
        "replicas": replicas,
        "routes": [],
        "state": state,
        "revision": replicas,
        **extra,
    }


async def tenant(store: Store, name: str = "acme") -> str:
    return (await store.system.tenants.create(name)).id


async def test_append_versions_positions_and_optimistic_concurrency(store: Store) -> None:
    tid = await tenant(store)
    ev = store.events
    a = await ev.append(
        tid, "s1", [NewEvent("x", {"n": 1}), NewEvent("x", {"n": 2})], kind="k", name="s1"
    )
    assert [e.version for e in a] == [1, 2]
    assert a[0].position < a[1].position
    b = await ev.append(
        tid, "s1", [NewEvent("x", {"n": 3})], kind="k", name="s1", expected_version=2
    )
    assert b[0].version == 3
    with pytest.raises(VersionConflict, match="at version 3, expected 2"):
        await ev.append(tid, "s1", [NewEvent("x", {})], kind="k", name="s1", expected_version=2)
    with pytest.raises(VersionConflict):
        await ev.append(tid, "s2", [NewEvent("x", {})], kind="k", name="s2", expected_version=1)
    assert [e.data["n"] for e in await ev.read("s1")] == [1, 2, 3]
    # another tenant cannot append to (or see) the stream
    other = await tenant(store, "other")
    with pytest.raises(NotFound):
        await ev.append(other, "s1", [NewEvent("x", {})], kind="k", name="s1")
    assert (await ev.info("s1")).version == 3  # type: ignore[union-attr]


async def test_point_in_time_snapshots_and_projection(store: Store, clock: Any) -> None:
    tid = await tenant(store)
    h = AgentHistory(store.events, snapshot_every=3)
    times = []
    for i in range(1, 8):
        await h.record(
            tid, "bot", "agent.created" if i == 1 else "agent.updated", {"agent": doc(i)}
        )
        times.append(clock())
        clock.advance(10)
    await h.record(tid, "bot", "agent.draining", {})
    clock.advance(10)
    await h.record(tid, "bot", "agent.deleted", {"agent": None})
    # snapshots at versions 3 and 6 (and 9)
    snap = await store.events.snapshot_before("agent:" + tid + ":bot")
    assert snap is not None and snap.version == 9 and snap.state is None
    for i, t in enumerate(times, start=1):
        st_ = await h.state_at(tid, "bot", t + 5)
        assert st_.agent == doc(i) and st_.version == i
    assert (await h.state_at(tid, "bot", times[0] - 1)).agent is None
    assert (await h.state_at(tid, "bot", times[-1] + 10)).agent == doc(7, "draining")
    assert (await h.state_at(tid, "bot")).agent is None
    assert [s.name for s in await h.all_at(tid, times[3])] == ["bot"]
    assert await h.all_at(tid) == []
    with pytest.raises(NotFound):
        await h.state_at(tid, "nobody")
    # the view follows the log and a rebuild gives the same
    await h.record(tid, "other", "agent.created", {"agent": doc(1, name="other")})
    view = AgentStateView(store.events)
    assert await view.catch_up() == 10
    assert await view.get(tid, "bot") is None
    assert (await view.get(tid, "other")) == doc(1, name="other")
    assert await view.rebuild() == 10
    assert (await view.get(tid, "other")) == doc(1, name="other")


async def test_retention_prunes_keeps_current_state_refuses_older(store: Store, clock: Any) -> None:
    tid = await tenant(store)
    h = AgentHistory(store.events, snapshot_every=100)
    await h.record(tid, "bot", "agent.created", {"agent": doc(1)})
    old = clock()
    clock.advance(10)
    await h.record(tid, "bot", "agent.updated", {"agent": doc(2)})
    clock.advance(YEAR)
    await h.record(tid, "bot", "agent.updated", {"agent": doc(3)})
    cps = ReplicaCheckpoints(store.events)
    await cps.append(tid, "bot", "r0", {"cursor": 1})
    clock.advance(31 * 86400)
    # checkpoints kept 30 days, lifecycle the default year
    gone = await h.prune(clock(), {"checkpoint": 30 * 86400})
    assert gone == 3
    assert await cps.latest(tid, "bot", "r0") is None
    assert (await h.state_at(tid, "bot")).agent == doc(3)
    assert (await h.state_at(tid, "bot", old + YEAR + 20)).agent == doc(3)
    with pytest.raises(Invalid, match="pruned by retention"):
        await h.state_at(tid, "bot", old + 5)
    assert await h.prune(clock()) == 0


async def test_replica_checkpoints(store: Store, clock: Any) -> None:
    tid = await tenant(store)
    cps = ReplicaCheckpoints(store.events)
    assert await cps.latest(tid, "bot", "r0") is None
    first = await cps.append(tid, "bot", "r0", {"cursor": 1})
    t1 = clock()
    clock.advance(5)
    await cps.append(tid, "bot", "r0", {"cursor": 2}, expected_version=1)
    with pytest.raises(VersionConflict):
        await cps.append(tid, "bot", "r0", {"cursor": 3}, expected_version=1)
    await cps.append(tid, "bot", "r1", {"cursor": 9})
    assert (await cps.latest(tid, "bot", "r0")).data == {"cursor": 2}  # type: ignore[union-attr]
    assert (await cps.latest(tid, "bot", "r0", at=t1)).version == first.version  # type: ignore[union-attr]
    other = await tenant(store, "other")
    assert await cps.latest(other, "bot", "r0") is None


# --- the property: replaying up to T equals the state observed at T ---------------------------

step = st.one_of(
    st.tuples(st.just("agent.created"), st.integers(0, 5)),
    st.tuples(st.just("agent.updated"), st.integers(0, 5)),
    st.tuples(st.just("agent.draining"), st.just(0)),
    st.tuples(st.just("agent.deleted"), st.just(0)),
    st.tuples(st.just("agent.restored"), st.integers(-1, 5)),
)
history_st = st.lists(st.tuples(step, st.sampled_from([0.0, 0.5, 3.0])), min_size=1, max_size=25)


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


async def _replay_example(
    url: str | None, data_dir: Path, steps: list[tuple[tuple[str, int], float]], every: int
) -> None:
    clock = _Clock()
    store = await open_store(url, data_dir, clock=clock)
    try:
        tid = await tenant(store, f"t{uuid.uuid4().hex[:12]}")
        h = AgentHistory(store.events, snapshot_every=every)
        # the state observed at T: after the last event stamped at or before T
        observed: dict[float, Any] = {clock() - 1: None}
        current: Any = None
        for (type_, n), gap in steps:
            agent = None if n < 0 else doc(n)
            if type_ in ("agent.created", "agent.updated") and agent is None:
                agent = doc(0)
            e = await h.record(tid, "bot", type_, {"agent": agent})
            current = fold(current, [e])
            observed[clock()] = current
            clock.t += gap
        for t, expect in observed.items():
            assert (await h.state_at(tid, "bot", t)).agent == expect, t
        assert (await h.state_at(tid, "bot")).agent == current
    finally:
        await store.close()


@pytest.mark.timeout(300)
def test_replay_up_to_t_equals_state_observed_at_t(
    database_url: str | None, tmp_path: Path
) -> None:
    """For random histories (and snapshot intervals), the state as of each time T equals the
    state observed right after the last event at or before T."""

    @settings(
        max_examples=40 if database_url is None else 15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(history_st, st.integers(1, 7))
    def check(steps: list[tuple[tuple[str, int], float]], every: int) -> None:
        asyncio.run(_replay_example(database_url, tmp_path, steps, every))

    check()


# --- PostgreSQL: tailing by position past sequence gaps ----------------------------------------


async def test_tailer_waits_for_late_commits_and_passes_dead_gaps(
    store: Store, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has one writer: positions become visible in order")
    import asyncpg  # type: ignore[import-untyped]

    tid = await tenant(store)
    ev = store.events
    now = [0.0]
    tail = Tailer(ev, gap_timeout=3.0, clock=lambda: now[0])
    await ev.append(tid, "s", [NewEvent("x", {"n": 0})], kind="k", name="s")
    assert [e.data["n"] for e in await tail.poll()] == [0]
    pool = ev.db._pool  # type: ignore[attr-defined]
    slow: asyncpg.Connection = await pool.acquire()
    tx = slow.transaction()
    await tx.start()
    # the slow writer takes the next position but has not committed yet
    await slow.execute(
        "INSERT INTO event_streams (stream, tenant_id, kind, name, version, updated_at) "
        "VALUES ('late', $1, 'k', 'late', 1, 0)",
        tid,
    )
    await slow.execute(
        "INSERT INTO events (tenant_id, stream, version, type, class, data, meta, at) "
        "VALUES ($1, 'late', 1, 'x', 'lifecycle', '{\"n\": 1}', '{}', 0)",
        tid,
    )
    await ev.append(tid, "s", [NewEvent("x", {"n": 2})], kind="k", name="s")
    assert await tail.poll() == []  # 2 is visible, 1 is not: wait
    await tx.commit()
    await pool.release(slow)
    assert [e.data["n"] for e in await tail.poll()] == [1, 2]
    # a rolled-back insert leaves a gap for good: passed once it is older than the timeout
    async with pool.acquire() as conn:
        tx2 = conn.transaction()
        await tx2.start()
        await conn.execute(
            "INSERT INTO events (tenant_id, stream, version, type, class, data, meta, at) "
            "VALUES ($1, 'late', 2, 'x', 'lifecycle', '{}', '{}', 0)",
            tid,
        )
        await tx2.rollback()
    await ev.append(tid, "s", [NewEvent("x", {"n": 3})], kind="k", name="s")
    assert await tail.poll() == []
    now[0] += 3.5
    assert [e.data["n"] for e in await tail.poll()] == [3]
