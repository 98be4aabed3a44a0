"""The Engine seam over the Rust GatewayCore, with a ManualClock (no sleeping for time logic)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from agentgate._core import ManualClock
from agentgate.config import parse_config
from agentgate.gateway.engine import Engine, Flight, Rejected

KEY = "sekrit"
CFG: dict[str, Any] = {
    "agents": {
        "a": {
            "endpoints": [{"url": "http://10.0.0.1:1"}, {"url": "http://10.0.0.2:1"}],
            "circuit_breaker": {"consecutive_failures": 2, "open_for": "10s"},
            "max_concurrency": 1,
            "max_queue": 2,
            "queue_timeout": "1s",
        },
        "b": {
            "endpoints": [{"url": "http://10.0.0.3:1"}],
            "circuit_breaker": {"consecutive_failures": 1, "open_for": "60s"},
        },
        "c": {"endpoints": [{"url": "http://10.0.0.4:1"}]},
    },
    "routes": [
        {"match": {"path_prefix": "/a"}, "agent": "a", "strip_prefix": True, "auth": "required"},
        {"match": {"path_prefix": "/a/deep"}, "agent": "a", "priority": "low"},
        {"id": "b", "match": {"path_prefix": "/b"}, "agent": "b"},
        {
            "id": "lim",
            "match": {"path_prefix": "/lim", "methods": ["GET"]},
            "agent": "c",
            "rate_limit": {"rate": "1/m", "burst": 2},
            "max_body": 10,
        },
        {"id": "t", "match": {"path_template": "/t/{id}", "host": "*.example.com"}, "agent": "b"},
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


def admit(
    e: Engine, method: str, path: str, h: dict[str, str] | None = None, host: str = "gw"
) -> Flight | Rejected:
    path, _, query = path.partition("?")
    return e.admit(method, host, path, query, h or {}, "1.2.3.4")


def flight(d: Flight | Rejected) -> Flight:
    assert isinstance(d, Flight), d
    return d


async def test_route_auth_strip_and_priority_cap() -> None:
    e = Engine(parse_config(CFG), ManualClock())
    d = flight(admit(e, "GET", "/a/x/y?q=1", {"x-api-key": KEY}))
    assert d.upstream_path == "/x/y?q=1" and d.key_id == "k" and d.priority == "normal"
    assert d.url in ("http://10.0.0.1:1", "http://10.0.0.2:1") and d.route.id == "a:/a"
    e.finish(d, 0.001, "success")
    deep = flight(admit(e, "GET", "/a/deep/z"))  # longest prefix wins; no auth there
    assert deep.upstream_path == "/a/deep/z" and deep.priority == "low"
    e.finish(deep, 0.001, "success")
    # a caller without a role cannot raise its priority, a boss can
    d = flight(admit(e, "GET", "/a", {"authorization": f"Bearer {KEY}", "x-priority": "critical"}))
    assert d.priority == "normal"
    e.finish(d, 0.001, "success")
    d = flight(admit(e, "GET", "/a", {"authorization": "Bearer boss", "x-priority": "critical"}))
    assert d.priority == "critical"
    e.finish(d, 0.001, "success")
    bad = admit(e, "GET", "/a", {"x-api-key": "nope"})
    assert isinstance(bad, Rejected) and bad.status == 401 and bad.title == "Unauthorized"


async def test_405_413_host_and_template() -> None:
    e = Engine(parse_config(CFG), ManualClock())
    r = admit(e, "POST", "/lim/x")
    assert isinstance(r, Rejected) and r.status == 405 and ("allow", "GET") in r.headers
    r = admit(e, "GET", "/lim/x", {"content-length": "11"})
    assert isinstance(r, Rejected) and r.status == 413 and r.reason == "too_large"
    assert isinstance(admit(e, "GET", "/t/1"), Rejected)  # wrong host
    d = flight(admit(e, "GET", "/t/1", host="api.example.com:8080"))
    assert d.route.id == "t"
    e.finish(d, 0.0, "success")
    assert e.core.stats()["c"]["in_flight"] == 0  # the 413 gave its slot back


async def test_breaker_ejects_endpoint_and_retry_moves_elsewhere() -> None:
    clock = ManualClock()
    e = Engine(parse_config(CFG), clock)
    for _ in range(2):  # two failures on endpoint 0 trip its breaker
        d = flight(admit(e, "GET", "/a/deep"))
        d.endpoint, d.url = 0, "http://10.0.0.1:1"
        e.finish(d, 0.01, "failure")
    for _ in range(10):
        d = flight(admit(e, "GET", "/a/deep"))
        assert d.endpoint == 1
        e.finish(d, 0.01, "success")
    e.set_healthy(0, 1, False)
    rej = admit(e, "GET", "/a/deep")
    # no endpoint is both healthy and closed
    assert isinstance(rej, Rejected) and rej.status == 503
    assert rej.reason in ("no_healthy_endpoint", "circuit_open")
    clock.advance(11)  # cool-down over: a half-open probe goes to the first endpoint
    d = flight(admit(e, "GET", "/a/deep"))
    assert d.endpoint == 0
    e.finish(d, 0.01, "success")


async def test_retry_only_idempotent_and_keeps_the_slot() -> None:
    e = Engine(parse_config(CFG), ManualClock())
    d = flight(admit(e, "POST", "/a/deep"))
    assert not e.retry(d, "POST", 0.01, "failure")
    assert e.retry(d, "GET", 0.01, "failure") and d.attempts == 2
    assert e.core.stats()["a"]["in_flight"] == 1  # the retry kept the admission slot
    e.finish(d, 0.01, "success")
    assert e.core.stats()["a"]["in_flight"] == 0


async def test_queue_wakes_by_priority_sheds_and_times_out() -> None:
    clock = ManualClock()
    e = Engine(parse_config(CFG), clock)
    first = flight(admit(e, "GET", "/a/deep"))  # takes the only slot
    low = flight(admit(e, "GET", "/a/deep"))
    assert low.ticket is not None and not low.has_slot
    boss = {"x-api-key": "boss", "x-priority": "high"}
    mid = flight(admit(e, "GET", "/a/x", boss))
    waits = {
        "low": asyncio.create_task(e.wait(low)),
        "mid": asyncio.create_task(e.wait(mid)),
    }
    await asyncio.sleep(0)
    crit = flight(admit(e, "GET", "/a/x", {"x-api-key": "boss", "x-priority": "critical"}))
    waits["crit"] = asyncio.create_task(e.wait(crit))
    await asyncio.sleep(0)
    shed = await waits.pop("low")  # queue full: the lowest class made room
    assert isinstance(shed, Rejected) and shed.status == 503 and shed.reason == "shed"
    e.finish(first, 0.01, "success")  # the slot goes straight to the critical waiter
    assert await waits.pop("crit") is None and crit.has_slot and crit.endpoint is not None
    clock.advance(2)  # mid has now waited longer than queue_timeout
    assert e.expire() == 1
    late = await waits.pop("mid")
    assert isinstance(late, Rejected) and late.reason == "queue_timeout"
    e.finish(crit, 0.01, "success")
    assert e.core.stats()["a"]["in_flight"] == 0 and e.queued == 0


async def test_cancel_while_queued_withdraws_the_ticket() -> None:
    e = Engine(parse_config(CFG), ManualClock())
    first = flight(admit(e, "GET", "/a/deep"))
    queued = flight(admit(e, "GET", "/a/deep"))
    task = asyncio.create_task(e.wait(queued))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sum(e.core.stats()["a"]["queue"]) == 0
    e.finish(first, 0.01, "success")
    assert e.core.stats()["a"]["in_flight"] == 0  # nobody was woken for the withdrawn ticket


async def test_reload_keeps_breaker_and_rate_limit_state() -> None:
    clock = ManualClock()
    cfg = parse_config(CFG)
    e = Engine(cfg, clock)
    d = flight(admit(e, "GET", "/b/x"))
    e.finish(d, 0.01, "failure")  # consecutive_failures 1: agent b's breaker is open
    assert flight(admit(e, "GET", "/lim/x")) and flight(admit(e, "GET", "/lim/y"))
    assert isinstance(admit(e, "GET", "/lim/z"), Rejected)
    extra = {"id": "new", "match": {"path_prefix": "/new"}, "agent": "a"}
    e.replace(parse_config({**CFG, "routes": [*CFG["routes"], extra]}))
    assert flight(admit(e, "GET", "/new/x")).route.id == "new"
    rej = admit(e, "GET", "/b/x")
    assert isinstance(rej, Rejected) and rej.reason == "circuit_open"
    rej = admit(e, "GET", "/lim/z")
    assert isinstance(rej, Rejected) and rej.status == 429  # the budget was not refilled
    # changing the limit itself does start a fresh budget
    routes = [dict(r) for r in CFG["routes"]]
    routes[3] = {**routes[3], "rate_limit": {"rate": "1/m", "burst": 3}}
    e.replace(parse_config({**CFG, "routes": routes}))
    assert isinstance(admit(e, "GET", "/lim/z"), Flight)


async def test_invalid_replace_keeps_running_config() -> None:
    e = Engine(parse_config(CFG), ManualClock())
    bad = {**CFG, "routes": [{"match": {"path_template": "/x/{a}{b}"}, "agent": "a"}]}
    try:
        e.replace(parse_config(bad))
    except ValueError as err:
        assert "routes[0]" in str(err)
    else:
        raise AssertionError("a bad template must be refused")
    assert isinstance(admit(e, "GET", "/b/x"), Flight)
