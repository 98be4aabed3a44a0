"""Gateway metrics with prometheus-client, counted in the core and flushed on a timer.

The core counts every request with atomics; `Gateway.run` moves the deltas into these
families every half second and copies per-agent state (in flight, queue depth, breaker and
health per endpoint) into the gauges. One process serves the data plane and the admin
listener, so `/metrics` renders this process's registry.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from agentgate._core import LATENCY_BOUNDS, AgentState, BreakerState, LatencyCounts, StatsDelta

__all__ = ["Metrics", "render_latest"]

# `_created` series double every family for a value nobody scrapes for (a process start time)
disable_created_metrics()  # type: ignore[no-untyped-call]

# the core counts latencies into these buckets, so the histograms must declare the same ones
_BUCKETS = LATENCY_BOUNDS
REQUESTS = Counter(
    "agentgate_requests",
    "Proxied requests by agent, route and status class",
    ["agent", "route", "status_class"],
)
REJECTED = Counter(
    "agentgate_rejected",
    "Requests answered by the gateway before the pool (404/401/429/503…)",
    ["status"],
)
LATENCY = Histogram(
    "agentgate_request_duration_seconds",
    "Total time of proxied requests",
    ["agent", "route"],
    buckets=_BUCKETS,
)
UPSTREAM = Histogram(
    "agentgate_upstream_duration_seconds",
    "Time to upstream response headers per attempt",
    ["agent"],
    buckets=_BUCKETS,
)
RETRIES = Counter("agentgate_retries", "Upstream retries", ["agent"])
SHED = Counter("agentgate_shed", "Requests shed or timed out in the admission queue", ["agent"])
IN_FLIGHT = Gauge("agentgate_in_flight", "Requests being proxied", ["agent"])
QUEUE = Gauge(
    "agentgate_queue_depth",
    "Requests waiting for a pool slot",
    ["agent"],
)
BREAKER = Gauge(
    "agentgate_breaker_state",
    "Breaker state per endpoint: 0 closed, 1 open, 2 half-open",
    ["agent", "endpoint"],
)
HEALTHY = Gauge(
    "agentgate_endpoint_healthy",
    "Active health check result per endpoint (1 healthy)",
    ["agent", "endpoint"],
)


_BREAKER_CODE = {BreakerState.Closed: 0, BreakerState.Open: 1, BreakerState.HalfOpen: 2}


def _add_histogram(child: Any, counts: LatencyCounts) -> None:
    # prometheus-client stores histogram buckets non-cumulatively (observe() bumps exactly one
    # bucket and the sum), so adding the counts bucket by bucket is the same as having observed
    # every value one by one
    buckets = child._buckets
    for i, n in enumerate(counts.buckets):
        if n:
            buckets[i].inc(n)
    child._sum.inc(counts.sum)


class Metrics:
    """Moves the core's counters and state into the Prometheus families above."""

    def __init__(self) -> None:
        self._endpoints: set[tuple[str, str]] = set()

    def flush(self, d: StatsDelta) -> None:
        """Add one take of the core's counters."""
        for r in d.routes:
            for cls, n in r.by_class.items():
                if n:
                    REQUESTS.labels(r.agent, r.route, str(cls)).inc(n)
            _add_histogram(LATENCY.labels(r.agent, r.route), r.latency)
        for a in d.agents:
            _add_histogram(UPSTREAM.labels(a.agent), a.upstream)
            if a.retries:
                RETRIES.labels(a.agent).inc(a.retries)
            if a.shed:
                SHED.labels(a.agent).inc(a.shed)
        for rej in d.rejected:
            REJECTED.labels("other" if rej.status is None else str(rej.status)).inc(rej.count)

    def publish(self, agents: list[AgentState]) -> None:
        """Copy per-agent state into the gauges; endpoints no longer configured are dropped."""
        seen: set[tuple[str, str]] = set()
        for a in agents:
            UPSTREAM.labels(a.name)
            IN_FLIGHT.labels(a.name).set(a.in_flight)
            QUEUE.labels(a.name).set(sum(a.queued.values()))
            for ep in a.endpoints:
                key = (a.name, ep.url)
                seen.add(key)
                BREAKER.labels(*key).set(_BREAKER_CODE[ep.breaker])
                HEALTHY.labels(*key).set(1 if ep.healthy else 0)
        for key in self._endpoints - seen:
            for g in (BREAKER, HEALTHY):
                with contextlib.suppress(KeyError):
                    g.remove(*key)
        self._endpoints = seen


def render_latest(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """Exposition text for /metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return generate_latest(registry), CONTENT_TYPE_LATEST
