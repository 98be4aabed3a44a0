"""Rate limits shared by every gateway (`rate_limit: {scope: cluster}`): GCRA leases in Redis.

The shared limit lives in Redis as one GCRA state per key (its theoretical arrival time).
A gateway does not ask Redis per request: it leases a small batch of tokens with one atomic
script (cost = batch size), spends them locally, and refreshes the lease in the background
before it runs out. A token is spent only after it was leased, so all gateways together never
admit more than the shared GCRA allows; tokens leased and not spent in time (`lease_ttl`) are
dropped, which can only under-admit. The batch follows local demand (about `lease_period`
seconds' worth), so the error is bounded by a few batches per gateway.

Read and update are one Lua script (one round trip): a GET followed by a separate SET would let
a flood through between the two (Let's Encrypt boulder#7780). GCRA has no window edges, so no
2× burst at a boundary as fixed windows have (envoy ratelimit).

When a request needs a lease and Redis has not answered within `timeout`, that request passes
(`on_error="open"`) or is refused (`"closed"`) without waiting longer; the lease still completes
in the background. When Redis fails (refused, reset, no answer within the socket timeout),
requests take the failure mode without asking Redis until `retry_after` has passed;
`agentgate_cluster_limit_redis_up` and `health()` show it.

    limiter = ClusterLimiter(redis_url, rate=1000, burst=50)
    if await limiter.acquire("tenant:acme"):      # most calls: no await on Redis at all
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

__all__ = [
    "DECISIONS",
    "GCRA_LEASE",
    "LEASES",
    "REDIS_ERRORS",
    "REDIS_UP",
    "ClusterLimiter",
    "lease",
]

# KEYS[1]: the key's TAT (µs, server clock). ARGV: emission interval µs, capacity (tokens),
# wanted tokens, and (optional) owed tokens: spent by a gateway ahead of its lease (the data
# plane's credit), paid first, as far as the bucket has room. Grants as many as then fit
# (0..wanted); returns {granted, wait µs for one more, owed tokens paid}.
GCRA_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local owed = tonumber(ARGV[4] or '0')
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.max(0, math.floor((now + cap * T - tat) / T))
local paid = math.min(owed, room)
local grant = math.max(0, math.min(want, room - paid))
if grant + paid > 0 then
  tat = tat + (grant + paid) * T
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
local wait = math.max(0, tat + T - (now + cap * T))
return {grant, wait, paid}
"""

REDIS_UP = Gauge(
    "agentgate_cluster_limit_redis_up",
    "1 while the cluster rate limiter reaches Redis, 0 while it fails open or closed",
)
REDIS_ERRORS = Counter(
    "agentgate_cluster_limit_redis_errors_total",
    "Lease requests to Redis that failed or timed out",
)
DECISIONS = Counter(
    "agentgate_cluster_limit_decisions_total",
    "Cluster rate-limit decisions by outcome",
    ["outcome"],  # allowed, limited, fail_open, fail_closed; the data plane also borrowed, local
)
LEASES = Counter("agentgate_cluster_limit_leases_total", "Lease round trips to Redis")


def redis_client(url: str, timeout: float) -> aioredis.Redis:
    """A client for lease round trips: a dead Redis fails within max(1 s, 10 × `timeout`)."""
    return aioredis.Redis.from_url(
        url, socket_timeout=max(1.0, 10 * timeout), socket_connect_timeout=max(0.5, timeout)
    )


def interval_us(rate: float) -> int:
    """The GCRA emission interval of `rate`/s in µs, as the lease script takes it."""
    return max(1, round(1_000_000 / rate))


async def lease(
    client: aioredis.Redis, script: Any, key: str, rate: float, capacity: int, want: int
) -> tuple[int, float]:
    """One lease round trip: (tokens granted, seconds until one more would be)."""
    args = [interval_us(rate), capacity, want]
    granted, wait, _ = await script(keys=[key], args=args, client=client)
    return int(granted), int(wait) / 1_000_000


@dataclass(slots=True)
class _Bucket:
    tokens: int = 0
    expires: float = 0.0
    demand: float = 0.0  # tokens asked for per second, smoothed over windows
    window_start: float = field(default_factory=time.monotonic)
    window_count: int = 0
    refreshing: asyncio.Task[None] | None = None
    empty_until: float = 0.0  # Redis said no token before this


class ClusterLimiter:
    """A shared GCRA limit of `rate`/s (bucket `burst`) per key (see the module docstring)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        rate: float,
        burst: int = 0,
        client: aioredis.Redis | None = None,
        on_error: Literal["open", "closed"] = "open",
        timeout: float = 0.05,
        lease_period: float = 0.05,
        lease_ttl: float = 1.0,
        retry_after: float = 0.5,
        prefix: str = "ag:rl:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.max_batch = max(1, math.ceil(rate * lease_period))
        # the shared bucket holds at least a lease for every gateway
        self.capacity = max(burst, 1, self.max_batch)
        self.on_error = on_error
        self.timeout = timeout
        self.lease_period = lease_period
        self.lease_ttl = lease_ttl
        self.retry_after = retry_after
        self.prefix = prefix
        self._clock = clock
        self._r = client or redis_client(redis_url or "", timeout)
        self._script = self._r.register_script(GCRA_LEASE)
        self._buckets: dict[str, _Bucket] = {}
        self._down_until = 0.0
        self._last_error: str | None = None
        REDIS_UP.set(1)

    def health(self) -> dict[str, Any]:
        """`{"ok": bool, "error": str | None, "mode": "open"|"closed"}` for a health check."""
        ok = self._clock() >= self._down_until
        return {"ok": ok, "error": None if ok else self._last_error, "mode": self.on_error}

    def _batch(self, b: _Bucket) -> int:
        if not b.demand:
            return 1  # no estimate yet: lease one at a time
        return max(1, min(self.max_batch, math.ceil(b.demand * self.lease_period)))

    async def acquire(self, key: str, cost: int = 1) -> bool:
        """Whether a request of `cost` may pass now; waits for Redis only when this gateway
        holds no leased token for `key` (then at most `timeout`)."""
        now = self._clock()
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket()
        # demand over windows of ~2 lease periods: per-call gaps would read a burst of calls
        # as a huge rate and make this gateway hoard the shared bucket
        b.window_count += cost
        span = now - b.window_start
        if span >= 2 * self.lease_period:
            rate = b.window_count / span
            b.demand = rate if not b.demand else 0.5 * b.demand + 0.5 * rate
            b.window_start, b.window_count = now, 0
        if b.tokens and now > b.expires:
            b.tokens = 0  # an old lease: dropping it only under-admits
        if b.tokens >= cost:
            b.tokens -= cost
            if b.tokens < self._batch(b) // 2 + 1:
                self._refresh(key, b)
            DECISIONS.labels("allowed").inc()
            return True
        if now < self._down_until:
            return self._failed()
        if now < b.empty_until:
            DECISIONS.labels("limited").inc()
            return False
        self._refresh(key, b, want=cost)
        task = b.refreshing
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await asyncio.shield(task)
            if not task.done():
                # a slow answer: this request gets the configured failure mode, the lease
                # itself completes in the background and its tokens serve the next ones
                return self._failed()
        if self._clock() < self._down_until:
            return self._failed()
        if b.tokens >= cost:
            b.tokens -= cost
            DECISIONS.labels("allowed").inc()
            return True
        DECISIONS.labels("limited").inc()
        return False

    def _failed(self) -> bool:
        if self.on_error == "open":
            DECISIONS.labels("fail_open").inc()
            return True
        DECISIONS.labels("fail_closed").inc()
        return False

    def _refresh(self, key: str, b: _Bucket, want: int = 0) -> None:
        if b.refreshing is not None and not b.refreshing.done():
            return
        n = max(want, self._batch(b))
        b.refreshing = asyncio.get_running_loop().create_task(self._lease(key, b, n))

    async def _lease(self, key: str, b: _Bucket, n: int) -> None:
        try:
            LEASES.inc()
            # not cancelled at `timeout`: a reply that comes late still carries granted tokens
            # (cancelling would leak them from the shared bucket); the socket timeout bounds it
            granted, wait = await lease(
                self._r, self._script, self.prefix + key, self.rate, self.capacity, n
            )
        except (RedisError, OSError, TimeoutError) as e:
            REDIS_ERRORS.inc()
            REDIS_UP.set(0)
            self._last_error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self._down_until = self._clock() + self.retry_after
            return
        REDIS_UP.set(1)
        now = self._clock()
        self._down_until = 0.0
        if granted:
            b.tokens = (b.tokens if now <= b.expires else 0) + granted
            b.expires = now + self.lease_ttl
        if granted < n:
            b.empty_until = now + wait

    async def close(self) -> None:
        """Stop refreshing and disconnect."""
        for b in self._buckets.values():
            if b.refreshing is not None:
                b.refreshing.cancel()
        await self._r.aclose()
