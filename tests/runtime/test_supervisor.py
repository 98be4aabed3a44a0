"""The supervisor with real replicas: start, warm pools, scaling, drain, crashes, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rt_helpers import EXAMPLES, http, only_replica, spec

from agentgate.runtime.supervisor import Settings, Supervisor
from agentgate.store.runtime import RuntimeRepo

ECHO = {"app": "app:app", "python_path": [str(EXAMPLES / "echo_app")]}


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except FileNotFoundError:
        return False


# the never-ready replica's sleep, told apart from any other `sleep` on a shared host (a
# `sleep 300` elsewhere once matched a looser check)
NEVER_READY_SLEEP = f"30.{os.getpid()}"


def cmdlines() -> list[bytes]:
    out = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # gone meanwhile
            out.append(p.read_bytes())
    return out


async def eventually(cond: Any, what: str, tries: int = 400) -> None:
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def nothing_left(sup: Supervisor, pids: list[int | None], agent_id: str) -> None:
    assert not any(alive(p) for p in pids), pids
    assert not list((sup.settings.root / "replicas").iterdir())


async def test_command_agent_lifecycle(make_supervisor: Any, rt_store: Any) -> None:
    sup = await make_supervisor()
    res = await sup.start_agent(spec("a1", replicas=2))
    assert res.state == "running"
    reps = list(sup.agents["a1"].replicas.values())
    assert len(reps) == 2 and all(r.state == "ready" for r in reps)
    repo = RuntimeRepo(rt_store.db, rt_store.clock)
    ready = await repo.ready_endpoints()
    assert sorted(ready["a1"]) == sorted(r.endpoint for r in reps)
    assert all(e.startswith("unix:/") for e in ready["a1"])
    for r in reps:
        assert (await http(r.socket, "/health"))[0] == 200
        assert "probe agent starting" in r.logs.stderr.read_text()
    info = sup.replicas("a1")
    assert {i["state"] for i in info} == {"ready"}
    assert all(i["pid"] and i["socket"].endswith("agent.sock") for i in info)
    groups = [r.cgroup for r in reps]
    pids = [r.pid for r in reps]
    await sup.stop_agent("a1")
    nothing_left(sup, pids, "a1")
    assert "a1" not in await repo.ready_endpoints()
    assert await repo.replicas("a1") == []
    if sup.cgroups is not None:
        assert all(sup.cgroups.procs(g) == [] for g in groups if g)


async def test_warm_pool_claim_needs_no_fork(make_supervisor: Any) -> None:
    sup = await make_supervisor()
    s1 = spec("w1", scaling={"min_replicas": 0, "max_replicas": 4, "warm_pool": 2}, **ECHO)
    assert await sup.wait_pool(s1, 2) == 2
    pooled = {r.pid for r in sup.pools[s1.pool_key]}
    res = await sup.start_agent(s1)
    assert res.state == "running"
    r = only_replica(sup, "w1")
    assert r.pid in pooled  # claimed: forked before the create, not by it
    status, doc = await http(r.socket, "/hi?x=1")
    assert status == 200 and doc["replica"] == r.id
    # the pool refills in the background
    await eventually(lambda: len(sup.pools[s1.pool_key]) == 2, "pool refilled")
    # a second agent of the same template claims from the same pool
    s2 = spec("w2", scaling={"min_replicas": 0, "max_replicas": 4, "warm_pool": 2}, **ECHO)
    assert s2.pool_key == s1.pool_key
    pooled = {x.pid for x in sup.pools[s1.pool_key]}
    assert (await sup.start_agent(s2)).state == "running"
    assert only_replica(sup, "w2").pid in pooled


async def test_scale_up_down_drains_in_flight(make_supervisor: Any, rt_store: Any) -> None:
    # what the data plane reports to drains in `agentgate serve`: here the test's own requests,
    # counted from before they are sent until their answer is read
    in_flight: Counter[str] = Counter()
    sup = await make_supervisor(inflight=lambda endpoint: in_flight[endpoint], grace=30.0)
    s = spec("sc", **ECHO)
    assert (await sup.start_agent(s)).state == "running"
    assert await sup.scale("sc", 3) == 3
    reps = sorted(sup.agents["sc"].replicas.values(), key=lambda r: r.started_at)
    assert len(reps) == 3
    victim = reps[-1]  # scale-down stops the newest ready replicas first

    async def request() -> tuple[int, Any]:
        try:
            return await http(victim.socket, "/slow?delay=0.3")
        finally:
            in_flight[victim.endpoint] -= 1

    in_flight[victim.endpoint] += 1
    slow = asyncio.ensure_future(request())
    assert await sup.scale("sc", 1) == 1
    assert victim.id not in sup.agents["sc"].replicas  # chosen for the drain
    status, doc = await slow
    assert status == 200 and doc["path"] == "/slow"  # finished despite the drain
    assert doc["replica"] == victim.id
    await eventually(lambda: not alive(victim.pid), "drained replica exited")
    assert len(sup.agents["sc"].replicas) == 1
    repo = RuntimeRepo(rt_store.db, rt_store.clock)
    for _ in range(400):  # the drained replicas leave the published endpoints
        ready = await repo.ready_endpoints()
        if len(ready["sc"]) == 1:
            break
        await asyncio.sleep(0.025)
    assert len(ready["sc"]) == 1, ready
    # clamped to the template's bounds
    assert await sup.scale("sc", 100) == 8


async def test_drain_kills_after_grace(make_supervisor: Any) -> None:
    sup = await make_supervisor(grace=0.3)
    # sh ignores SIGTERM here: only the SIGKILL after the grace period ends it
    script = (
        f"trap '' TERM; exec {sys.executable} -c "
        f'"import signal,runpy,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
        f"sys.argv=['p']; runpy.run_path('{EXAMPLES.parent.parent}/tests/runtime/probe_agent.py',"
        f" run_name='__main__')\""
    )
    s = spec("stubborn", command=["/bin/sh", "-c", script])
    assert (await sup.start_agent(s)).state == "running"
    r = only_replica(sup, "stubborn")
    pid = r.pid
    await sup.stop_agent("stubborn")
    assert not alive(pid)
    assert r.last_exit is None or r.last_exit == -9


async def test_crash_restarts_with_backoff_then_crash_loop(
    make_supervisor: Any, rt_store: Any
) -> None:
    s = Settings(root=Path("/"), backoff_base=1.0, backoff_max=60.0)
    assert [s.backoff(n) for n in (1, 2, 3, 4, 7, 8)] == [1, 2, 4, 8, 60, 60]
    sup = await make_supervisor(crash_loop_after=3)
    assert (await sup.start_agent(spec("c", env={"CRASH_AFTER": "0.2"}))).state == "running"
    r = only_replica(sup, "c")
    endpoint = r.endpoint
    await eventually(lambda: r.state == "crash_loop", "crash loop", tries=800)
    assert r.restarts >= 3
    assert r.endpoint == endpoint  # same slot, same socket
    assert sup.agents["c"].state == "crash_loop"
    repo = RuntimeRepo(rt_store.db, rt_store.clock)
    for _ in range(400):  # the status row is written just after the state changes in memory
        st = await repo.status("c")
        if st is not None:
            break
        await asyncio.sleep(0.025)
    assert st is not None and st.state == "crash_loop"
    assert "crashing on purpose" in st.stderr
    rows = await repo.replicas("c")
    assert rows[0].state in ("crash_loop", "ready") and rows[0].restarts >= 3


async def test_crash_once_restarts_ready(make_supervisor: Any) -> None:
    sup = await make_supervisor()
    assert (await sup.start_agent(spec("once"))).state == "running"
    r = only_replica(sup, "once")
    first = r.pid
    with pytest.raises((aiohttp.ClientError, OSError)):
        await http(r.socket, "/try/exit?arg=3")
    await eventually(lambda: r.state == "ready" and r.pid != first, "restarted")
    assert r.last_exit == 3 and r.restarts == 1
    assert (await http(r.socket, "/health"))[0] == 200


@pytest.mark.parametrize(
    ("kind", "extra", "why", "stderr"),
    [
        ("command", {"command": ["no-such-agent-binary"]}, "status 127", "cannot run"),
        ("app", {"app": "no_such_module:app"}, "fork server failed", "ModuleNotFoundError"),
        (
            "app-attr",
            {"app": "app:nope", "python_path": [str(EXAMPLES / "echo_app")]},
            "fork server failed",
            "AttributeError",
        ),
        (
            "readiness",
            {
                "command": [
                    "/bin/sh",
                    "-c",
                    f"echo never serving >&2; exec sleep {NEVER_READY_SLEEP}",
                ],
                "readiness": {"path": "/health", "timeout": "4s"},
            },
            "not ready within 4s",
            "never serving",
        ),
    ],
)
async def test_bad_input_fails_cleanly(
    make_supervisor: Any, rt_store: Any, kind: str, extra: dict[str, Any], why: str, stderr: str
) -> None:
    sup = await make_supervisor()
    res = await sup.start_agent(spec(f"bad-{kind}", **extra))
    assert res.state == "failed"
    assert why in res.reason, res
    assert stderr in res.stderr, res
    assert len(res.stderr.splitlines()) <= 50
    assert f"bad-{kind}" not in sup.agents
    assert not list((sup.settings.root / "replicas").iterdir())
    repo = RuntimeRepo(rt_store.db, rt_store.clock)
    assert await repo.replicas(f"bad-{kind}") == []
    left = b"sleep\x00" + NEVER_READY_SLEEP.encode() + b"\x00"
    assert not any(left in c for c in cmdlines())


async def test_logs_rotate(make_supervisor: Any) -> None:
    sup = await make_supervisor(log_max_bytes=20_000, log_keep=2)
    assert (await sup.start_agent(spec("logs"))).state == "running"
    r = only_replica(sup, "logs")
    await http(r.socket, "/try/spam?arg=50000")
    rotated = r.logs.stderr.with_name("stderr.log.1")
    await eventually(rotated.exists, "rotation")
    assert r.logs.stderr.stat().st_size < 20_000
    await http(r.socket, "/try/spam?arg=30000")
    await eventually(lambda: r.logs.stderr.with_name("stderr.log.2").exists(), "second rotation")
    assert not r.logs.stderr.with_name("stderr.log.3").exists()


async def test_uids_are_unique_across_supervisors(
    make_supervisor: Any, caps: Any, rt_root: Path
) -> None:
    if not caps["unprivileged_uid"].available:
        pytest.skip(f"unprivileged_uid refused by this host: {caps['unprivileged_uid'].detail}")
    shared = {"uid_dir": rt_root / "uids", "uid_base": 120_000, "uid_count": 3}
    a = await make_supervisor(**shared)
    b = await make_supervisor(**shared)
    got = [a._alloc_uid(), a._alloc_uid(), b._alloc_uid()]
    assert sorted(got) == [120_000, 120_001, 120_002]  # type: ignore[type-var]
    assert b._alloc_uid() is None  # all three claimed on this host
    assert (rt_root / "uids" / str(got[0])).read_text() == str(os.getpid())
    a._free_uid(got[0])  # type: ignore[arg-type]
    assert b._alloc_uid() == got[0]
