"""Combined admission call: route + auth + rate limit + admission + breaker-aware pick, from Python.

The peer is the same decision composed the way a Python gateway would: regex routes, a hashed
API-key dict, the `limits` fixed-window limiter (its cheapest: the moving window keeps one entry
per hit), `pybreaker` breakers and a random pick.
"""

from __future__ import annotations

import hashlib
import random
import re

import orjson
import pybreaker
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from agentgate._core import GatewayCore
from loadtests.core.harness import Case

SECRET = "bench-secret"
HEADERS = {"authorization": f"Bearer {SECRET}", "x-priority": "high"}
ROUTES = 50


def _spec() -> bytes:
    routes = [
        {
            "id": f"r{i}",
            "path_prefix": f"/agents/a{i}",
            "methods": ["GET", "POST"],
            "agent": "pool",
            "strip_prefix": True,
            "auth_required": True,
            "rate_limit": {"key": "api_key", "per_second": 1e9, "burst": 1_000_000_000},
        }
        for i in range(ROUTES)
    ]
    return orjson.dumps(
        {
            "agents": [
                {
                    "name": "pool",
                    "endpoints": [{"url": f"http://127.0.0.1:{9000 + i}"} for i in range(4)],
                }
            ],
            "routes": routes,
            "api_keys": [
                {
                    "id": "k1",
                    "sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
                    "tenant": "acme",
                    "roles": ["caller"],
                }
            ],
            "role_max_priority": {"caller": "high"},
        }
    )


def _agentgate() -> Case:
    core = GatewayCore(_spec())
    admit, finish = core.admit, core.finish
    path = f"/agents/a{ROUTES - 1}/chat"

    def call() -> None:
        d = admit("POST", "gw.local", path, HEADERS, "10.0.0.1")[0]
        finish(d.agent, d.endpoint, 0.001)

    return Case("admission-combined", "agentgate", call, baseline=True)


def _python_peer() -> Case:
    routes = [(re.compile(rf"^/agents/a{i}(/|$)"), f"r{i}") for i in range(ROUTES)]
    keys = {hashlib.sha256(SECRET.encode()).hexdigest(): ("k1", "acme")}
    limiter = FixedWindowRateLimiter(MemoryStorage())
    limit = parse("1000000000/second")
    endpoints = [f"http://127.0.0.1:{9000 + i}" for i in range(4)]
    breakers = [pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10) for _ in endpoints]
    path = f"/agents/a{ROUTES - 1}/chat"

    def ok() -> None:
        return None

    def call() -> None:
        for rx, _rid in routes:
            if rx.match(path):
                break
        auth = HEADERS["authorization"]
        ident = keys.get(hashlib.sha256(auth[7:].encode()).hexdigest())
        if ident is None or not limiter.hit(limit, ident[0]):
            return
        i = random.randrange(len(endpoints))
        breakers[i].call(ok)

    return Case("admission-combined", "python: re + limits + pybreaker", call)


def cases() -> list[Case]:
    """The combined admission call and its pure-Python equivalent."""
    return [_agentgate(), _python_peer()]
