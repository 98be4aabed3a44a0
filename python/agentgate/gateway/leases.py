"""The lease loop of cluster rate limits (`rate_limit: {scope: cluster}`) in the gateway host.

The core enforces a cluster route's limit from tokens this gateway leased from the shared GCRA
in Redis (`rust/src/cluster_limit.rs`); a request never waits for Redis and never crosses into
Python. This loop keeps the leases filled: it waits until a key runs low (or `period` passes),
reads the demand per (route, key), leases about `lease_period` seconds of each key's demand with
one atomic script per key (`agentgate.limits_cluster.GCRA_LEASE`, all keys pipelined in one
round trip), and grants the tokens to the core.

Bounds, per key, with G gateways: together they admit at most `rate·t + burst + G·credit` in
any span t (`credit` = the tokens a key may spend ahead of its lease, ~50 ms of its rate; the
next leases pay that debt first, as the shared bucket has room, and only then is the credit
there again). Each lease covers the demand until the next one lands: `lease_period`, or twice
the measured round trip when Redis is slower. Tokens leased and not spent within `ttl` are
void, which only under-admits.

Redis unreachable (refused, reset, no answer within the socket timeout): the loop reports it
to the core and every cluster route follows its `on_redis_error` (`open`: admit; `closed`:
503; `local`: this gateway enforces the whole limit alone) until a lease round succeeds again,
tried every `retry_after`. If the loop itself stops reporting for 3 s, the core assumes the
same. `agentgate_cluster_limit_redis_up` and `health()` show the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from agentgate._core import (
    ClusterLeases,
    DataPlane,
    KeyDemand,
    LeaseDemand,
    LeaseGrant,
    RedisState,
)
from agentgate.cancellation import raise_if_cancelled
from agentgate.limits_cluster import (
    DECISIONS,
    GCRA_LEASE,
    LEASES,
    REDIS_ERRORS,
    REDIS_UP,
    interval_us,
    redis_client,
)

__all__ = ["LeaseLoop"]

log = logging.getLogger("agentgate.gateway.leases")

IDLE_WAIT = 0.5
"""Longest sleep of the loop with nothing to lease (well inside the core's 3 s staleness)."""


_OUTCOMES = {
    o: DECISIONS.labels(o)
    for o in ("allowed", "borrowed", "limited", "fail_open", "fail_closed", "local")
}


@dataclass(slots=True)
class _Key:
    demand: float = 0.0  # requests per second, smoothed
    seen: float = 0.0
    empty_until: float = 0.0  # Redis said no token before this


class LeaseLoop:
    """Keeps a data plane's cluster-limit leases filled from Redis (see the module docstring)."""

    def __init__(
        self,
        core: DataPlane,
        redis_url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        timeout: float = 0.05,
        period: float = 0.05,
        lease_period: float = 0.05,
        ttl: float = 1.0,
        retry_after: float = 0.5,
        min_gap: float = 0.005,
        prefix: str = "ag:rl:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = ClusterLeases(core)
        self.period = period
        self.lease_period = lease_period
        self.ttl = ttl
        self.retry_after = retry_after
        self.min_gap = min_gap
        self.prefix = prefix
        self._clock = clock
        self._r = client or redis_client(redis_url or "", timeout)
        self._sha: str | None = None
        self._rtt = 0.0  # lease round trip, seconds: rises at once, decays slowly
        self._keys: dict[tuple[str, str], _Key] = {}
        self._down_until = 0.0
        self._error: str | None = "not connected yet"
        self.rounds = 0  # lease rounds that reached Redis
        self.errors = 0  # lease rounds or probes that failed

    def health(self) -> dict[str, Any]:
        """`{"redis": "up"|"down", "error": str | None}` for a health check."""
        up = self.leases.state() == RedisState.Up
        return {"redis": "up" if up else "down", "error": None if up else self._error}

    async def run(self) -> None:
        """Lease until cancelled."""
        try:
            while True:
                raise_if_cancelled()  # redis-py can lose the cancellation that ends this loop
                await self.round()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self._r.aclose()

    async def round(self, wait: float | None = None) -> int:
        """One pass: wait for demand (at most `wait`, default `period`, or `IDLE_WAIT` with no
        key tracked), lease, grant; returns the number of keys granted tokens."""
        if wait is None:
            wait = self.period if self._keys else IDLE_WAIT
        # a key already hungry (the usual case under load): no thread hop
        if not self.leases.wait(0.0):
            await asyncio.to_thread(self.leases.wait, wait)
        d = self.leases.take()
        self._count(d)
        now = self._clock()
        if now < self._down_until:
            self.leases.report(RedisState.Down)
            return 0
        calls = self._plan(d.keys, now)
        try:
            if calls:
                results = await self._lease(calls)
            elif self._error is not None and self.leases.active():
                await self._r.ping()  # not reached yet, or down: probe before trusting it
                results = []
            else:
                if self._error is None:
                    self.leases.report(RedisState.Up)
                await asyncio.sleep(self.min_gap)
                return 0
        except (RedisError, OSError, TimeoutError) as e:
            self._failed(e)
            return 0
        if self._error is not None and self._down_until:
            log.warning("cluster rate limits reach Redis again")
        self._error = None
        self._down_until = 0.0
        REDIS_UP.set(1)
        self.leases.report(RedisState.Up)
        granted = self._grant(calls, results, self._clock()) if calls else 0
        self.rounds += 1
        await asyncio.sleep(self.min_gap)
        return granted

    def _count(self, d: LeaseDemand) -> None:
        for r in d.decisions:
            for outcome, n in (
                ("allowed", r.allowed),
                ("borrowed", r.borrowed),
                ("limited", r.limited),
                ("fail_open", r.fail_open),
                ("fail_closed", r.fail_closed),
                ("local", r.local),
            ):
                if n:
                    _OUTCOMES[outcome].inc(n)

    def _plan(self, keys: list[KeyDemand], now: float) -> list[tuple[KeyDemand, int, int, int]]:
        """(demand, wanted, owed, target balance) for each key worth a Redis call."""
        calls = []
        for k in keys:
            st = self._keys.get((k.route, k.key))
            if st is None:
                st = self._keys[(k.route, k.key)] = _Key(seen=now - self.period)
            span = max(now - st.seen, 1e-3)
            rate = k.asked / span
            st.demand = rate if not st.demand else 0.5 * st.demand + 0.5 * rate
            st.seen = now
            if now < st.empty_until:
                continue  # the shared bucket is empty: owed tokens wait for the next lease
            # enough demand to last until the next lease lands: `lease_period`, or twice the
            # round trip when Redis is slower (an fsync per write, a loaded host); at most that
            # much of the shared rate and one bucket
            horizon = min(max(self.lease_period, 2 * self._rtt), self.ttl)
            cap = max(1, min(k.burst, math.ceil(k.rate * horizon)))
            target = max(1, min(cap, math.ceil(st.demand * horizon)))
            owed = max(0, -k.tokens)
            want = max(0, target - max(0, k.tokens))
            if want or owed:
                calls.append((k, want, owed, target))
        # keys not heard of for a while: their leases expired long ago
        stale = now - 10 * max(self.ttl, IDLE_WAIT)
        if len(self._keys) > len(keys):
            for name in [n for n, s in self._keys.items() if s.seen < stale]:
                del self._keys[name]
        return calls

    async def _lease(self, calls: list[tuple[KeyDemand, int, int, int]]) -> list[Any]:
        if self._sha is None:
            self._sha = str(await self._r.script_load(GCRA_LEASE))
        pipe = self._r.pipeline(transaction=False)
        for k, want, owed, _ in calls:
            args = [interval_us(k.rate), k.burst, want, owed]
            pipe.evalsha(self._sha, 1, f"{self.prefix}{k.route}|{k.key}", *args)
        LEASES.inc(len(calls))
        t0 = self._clock()
        results: list[Any] = await pipe.execute(raise_on_error=False)
        took = self._clock() - t0
        self._rtt = took if took > self._rtt else 0.8 * self._rtt + 0.2 * took
        if any(isinstance(r, NoScriptError) for r in results):
            self._sha = None  # Redis restarted and lost the script: load it next round
        return results

    def _grant(
        self, calls: list[tuple[KeyDemand, int, int, int]], results: list[Any], now: float
    ) -> int:
        grants = []
        for (k, want, owed, target), res in zip(calls, results, strict=True):
            if isinstance(res, Exception):
                continue  # not run: nothing leased, the debt stays on the key
            granted, wait_us, paid = int(res[0]), int(res[1]), int(res[2])
            retry = 0.0
            if granted < want or paid < owed:
                # the shared bucket is short: come back when it holds half a lease again, not
                # for every single token (other gateways share it)
                more = max(0, max(1, target // 2) - 1) / k.rate
                retry = min(wait_us / 1_000_000 + more, 3600.0)
                self._keys[(k.route, k.key)].empty_until = now + retry
            grants.append(
                LeaseGrant(
                    k.route,
                    k.key,
                    paid + granted,
                    refill_at=target // 2,
                    ttl=self.ttl,
                    retry_after=retry,
                )
            )
        return self.leases.grant(grants)

    def _failed(self, e: BaseException) -> None:
        self.errors += 1
        REDIS_ERRORS.inc()
        REDIS_UP.set(0)
        first = not self._down_until
        self._error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self._down_until = self._clock() + self.retry_after
        self.leases.report(RedisState.Down)
        if first:
            log.error("cluster rate limits cannot reach Redis: %s", self._error)
