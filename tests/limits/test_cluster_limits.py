"""Cluster-wide rate limits: GCRA leases in a real redis-server, fail open / closed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis_ephemeral import RedisServer

from agentgate.config import ConfigError, parse_config
from agentgate.limits_cluster import GCRA_LEASE, ClusterLimiter, lease

pytestmark = pytest.mark.timeout(60)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_lease_script_is_atomic_under_concurrency(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(redis_server.url)
    script = r.register_script(GCRA_LEASE)
    key = f"atomic-{time.time_ns()}"
    # a nearly empty refill rate: only the bucket's 10 tokens exist, however many ask at once
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(8)]
    results = await asyncio.gather(
        *(lease(clients[i % 8], script, key, 0.001, 10, 1) for i in range(200))
    )
    assert sum(g for g, _ in results) == 10
    assert all(w > 0 for g, w in results if g == 0)
    granted, _ = await lease(r, script, key, 0.001, 10, 5)
    assert granted == 0
    for c in [r, *clients]:
        await c.aclose()


async def test_gateways_together_never_exceed_the_shared_bound(redis_server: RedisServer) -> None:
    key = f"shared-{time.time_ns()}"
    rate, burst = 200.0, 20
    # closed on errors: a slow Redis on a loaded machine must not turn into admissions here
    gateways = [
        ClusterLimiter(redis_server.url, rate=rate, burst=burst, on_error="closed", timeout=2.0)
        for _ in range(3)
    ]
    capacity = gateways[0].capacity
    allowed = 0
    start = time.monotonic()

    async def hammer(g: ClusterLimiter) -> None:
        nonlocal allowed
        for _ in range(400):
            if await g.acquire(key):
                allowed += 1
            await asyncio.sleep(0.001)

    await asyncio.gather(*(hammer(g) for g in gateways))
    elapsed = time.monotonic() - start
    # the shared GCRA bound: what the rate refills in the elapsed time plus one full bucket
    assert 0 < allowed <= rate * elapsed + capacity
    assert allowed < 1200  # demand was far above the limit: something was refused
    for g in gateways:
        assert g.health()["ok"]
        await g.close()


async def test_redis_unreachable_fails_open_or_closed_without_hanging(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nothing-here.sock"
    errors = metric("agentgate_cluster_limit_redis_errors_total")
    now = [100.0]
    opened = ClusterLimiter(url, rate=100, on_error="open", timeout=0.2, clock=lambda: now[0])
    closed = ClusterLimiter(url, rate=100, on_error="closed", timeout=0.2, clock=lambda: now[0])
    assert await asyncio.wait_for(opened.acquire("k"), 5) is True
    assert await asyncio.wait_for(closed.acquire("k"), 5) is False
    # within retry_after nobody waits for Redis again
    assert await asyncio.wait_for(opened.acquire("k"), 0.1) is True
    assert await asyncio.wait_for(closed.acquire("k"), 0.1) is False
    h = closed.health()
    assert h["ok"] is False and h["mode"] == "closed" and h["error"]
    assert metric("agentgate_cluster_limit_redis_up") == 0.0
    assert metric("agentgate_cluster_limit_redis_errors_total") >= errors + 2
    assert metric("agentgate_cluster_limit_decisions_total", outcome="fail_closed") >= 2
    await opened.close()
    await closed.close()


async def test_recovers_when_redis_comes_back(redis_server: RedisServer, tmp_path: Path) -> None:
    now = [0.0]
    lim = ClusterLimiter(
        redis_server.url, rate=1000, on_error="closed", timeout=1.0, clock=lambda: now[0]
    )
    key = f"recover-{time.time_ns()}"
    assert await lim.acquire(key)
    await asyncio.to_thread(redis_server.stop)
    try:
        now[0] += 5  # the lease expired: the next request needs Redis
        assert await asyncio.wait_for(lim.acquire(key), 5) is False
        assert not lim.health()["ok"]
    finally:
        await asyncio.to_thread(redis_server.start)
    now[0] += 2  # past retry_after
    assert await asyncio.wait_for(lim.acquire(key), 5) is True
    assert lim.health()["ok"] and metric("agentgate_cluster_limit_redis_up") == 1.0
    await lim.close()


def test_config_scope_cluster_needs_redis() -> None:
    route = {
        "match": {"path_prefix": "/"},
        "agent": "a",
        "rate_limit": {"rate": "100/s", "scope": "cluster", "on_redis_error": "closed"},
    }
    agents = {"a": {"endpoints": [{"url": "http://127.0.0.1:9"}]}}
    with pytest.raises(ConfigError, match=r"routes\[0\]\.rate_limit\.scope: scope cluster"):
        parse_config({"agents": agents, "routes": [route]}, "gw.yaml")
    cfg = parse_config(
        {"agents": agents, "routes": [route], "redis": {"url": "redis://:pw@h:6379/0"}}
    )
    rl = cfg.routes[0].rate_limit
    assert rl is not None and (rl.scope, rl.on_redis_error) == ("cluster", "closed")
    assert cfg.redacted()["redis"]["url"] == "<redacted>"
    with pytest.raises(ConfigError, match=r"redis\.url"):
        parse_config({"redis": {"url": "http://h"}}, "gw.yaml")
    with pytest.raises(ConfigError, match=r"bus\.backend: backend redis needs redis"):
        parse_config({"bus": {"backend": "redis"}}, "gw.yaml")
    with pytest.raises(ConfigError, match="retry_max <= visibility_timeout"):
        parse_config({"bus": {"defaults": {"visibility_timeout": "1s", "retry_max": "2s"}}})
