"""The Engine decision seam and its policies, with an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from agentgate.config import parse_config
from agentgate.gateway.engine import Admitted, Engine, Rejected
from agentgate.gateway.policy import AdmissionPool, Breaker, Gcra, Shed


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


KEY = "sekrit"
CFG = {
    "agents": {
        "a": {
            "endpoints": [{"url": "http://10.0.0.1:1"}, {"url": "http://10.0.0.2:1"}],
            "circuit_breaker": {"consecutive_failures": 2, "open_for": "10s"},
        }
    },
    "routes": [
        {"match": {"path_prefix": "/a"}, "agent": "a", "strip_prefix": True, "auth": "required"},
        {"match": {"path_prefix": "/a/deep"}, "agent": "a", "priority": "low"},
    ],
    "auth": {
        "roles": {"boss": {"max_priority": "critical"}},
        "api_keys": [
            {"id": "k", "hash": "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()},
            {
                "id": "b",
                "hash": "sha256:" + hashlib.sha256(b"boss").hexdigest(),
                "roles": ["boss"],
            },
        ],
    },
}


def hdr(d: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda name: d.get(name)


def test_route_auth_strip_and_priority_cap() -> None:
    e = Engine(parse_config(CFG), Clock())
    d = e.admit("GET", "/a/x/y", "q=1", hdr({"x-api-key": KEY}), "1.2.3.4")
    assert isinstance(d, Admitted)
    assert d.upstream_path == "/x/y?q=1" and d.key_id == "k" and d.priority == 1
    assert d.base_url in ("http://10.0.0.1:1", "http://10.0.0.2:1")
    # longest prefix wins; no auth there
    deep = e.admit("GET", "/a/deep/z", "", hdr({}), "ip")
    assert isinstance(deep, Admitted) and deep.upstream_path == "/a/deep/z" and deep.priority == 0
    # a caller without a role cannot raise its priority, a boss can
    h = {"authorization": f"Bearer {KEY}", "x-priority": "critical"}
    assert e.admit("GET", "/a", "", hdr(h), "ip").priority == 1  # type: ignore[union-attr]
    h = {"authorization": "Bearer boss", "x-priority": "critical"}
    assert e.admit("GET", "/a", "", hdr(h), "ip").priority == 3  # type: ignore[union-attr]
    bad = e.admit("GET", "/a", "", hdr({"x-api-key": "nope"}), "ip")
    assert isinstance(bad, Rejected) and bad.status == 401


def test_breaker_ejects_endpoint_and_retry_moves_elsewhere() -> None:
    clock = Clock()
    e = Engine(parse_config(CFG), clock)
    first = e.pools["a"].endpoints[0]
    first.breaker.record(False)
    first.breaker.record(False)
    for _ in range(20):
        d = e.admit("GET", "/a/deep", "", hdr({}), "ip")
        assert isinstance(d, Admitted) and d.endpoint.index == 1
    e.pools["a"].endpoints[1].healthy = False
    rej = e.admit("GET", "/a/deep", "", hdr({}), "ip")
    assert isinstance(rej, Rejected) and rej.status == 503
    clock.t += 11  # open_for elapsed: a half-open probe goes to the first endpoint
    d = e.admit("GET", "/a/deep", "", hdr({}), "ip")
    assert isinstance(d, Admitted) and d.endpoint.index == 0


def test_retry_only_idempotent() -> None:
    e = Engine(parse_config(CFG), Clock())
    d = e.admit("POST", "/a/deep", "", hdr({}), "ip")
    assert isinstance(d, Admitted)
    assert not e.retry(d, "POST")
    assert e.retry(d, "GET") and d.attempts == 2


def test_gcra_burst_then_rate() -> None:
    clock = Clock()
    g = Gcra(rate=10, burst=3, clock=clock)
    assert [g.check("k")[0] for _ in range(4)] == [True, True, True, False]
    ok, _, retry = g.check("k")
    assert not ok and retry == pytest.approx(0.1, abs=1e-6)
    clock.t += 0.1
    assert g.check("k")[0]
    assert g.check("other")[0]


def test_breaker_error_rate_and_half_open() -> None:
    clock = Clock()
    b = Breaker(consecutive=100, error_rate=0.5, min_requests=4, open_for=5, clock=clock)
    for ok in (True, False, True, False):
        b.record(ok)
    assert b.state == Breaker.OPEN and not b.allow()
    clock.t += 5
    assert b.allow() and not b.allow()  # exactly one probe
    b.record(True)
    assert b.state == Breaker.CLOSED


async def test_admission_queue_priority_and_shedding() -> None:
    pool = AdmissionPool(max_concurrency=1, max_queue=2)
    assert pool.try_acquire()
    order: list[str] = []

    async def wait(name: str, prio: int) -> None:
        try:
            await pool.acquire(prio, 5)
            order.append(name)
        except Shed:
            order.append(f"shed:{name}")

    low = asyncio.create_task(wait("low", 0))
    mid = asyncio.create_task(wait("mid", 1))
    await asyncio.sleep(0)
    high = asyncio.create_task(wait("high", 3))  # queue full: sheds the lowest waiter
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == ["shed:low"]
    pool.release()
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == ["shed:low", "high"]
    pool.release()
    await asyncio.gather(low, mid, high)
    assert order == ["shed:low", "high", "mid"]
    with pytest.raises(TimeoutError):
        await pool.acquire(0, 0.01)
