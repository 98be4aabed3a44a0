"""Gateway metrics with prometheus-client; labelled children are cached so updates stay cheap.

With several granian workers, set PROMETHEUS_MULTIPROC_DIR (the CLI does) before this module
is imported; the admin listener then aggregates every worker's files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp

if TYPE_CHECKING:
    from agentgate.gateway.engine import Admitted, EndpointState, Engine

__all__ = ["Metrics", "render_latest"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")

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
IN_FLIGHT = Gauge(
    "agentgate_in_flight", "Requests being proxied", ["agent"], multiprocess_mode="livesum"
)
QUEUE = Gauge(
    "agentgate_queue_depth",
    "Requests waiting for a pool slot",
    ["agent"],
    multiprocess_mode="livesum",
)
BREAKER = Gauge(
    "agentgate_breaker_state",
    "Breaker state per endpoint: 0 closed, 1 open, 2 half-open",
    ["agent", "endpoint"],
    multiprocess_mode="max",
)
HEALTHY = Gauge(
    "agentgate_endpoint_healthy",
    "Active health check result per endpoint (1 healthy)",
    ["agent", "endpoint"],
    multiprocess_mode="min",
)


class Metrics:
    """Hot-path metric updates with per-(agent, route) children resolved once."""

    def __init__(self) -> None:
        self._req: dict[tuple[str, str, int], Any] = {}
        self._lat: dict[tuple[str, str], Any] = {}
        self._up: dict[str, Any] = {}
        self._flight: dict[str, Any] = {}
        self._rej: dict[int, Any] = {}
        self._breaker: dict[tuple[str, str], int] = {}

    def bind(self, engine: Engine) -> None:
        """Pre-create children for a (new) config so the first requests pay nothing extra."""
        for name, pool in engine.pools.items():
            self._flight.setdefault(name, IN_FLIGHT.labels(name))
            self._up.setdefault(name, UPSTREAM.labels(name))
            QUEUE.labels(name).set(0)
            for ep in pool.endpoints:
                BREAKER.labels(name, ep.url).set(ep.breaker.state)
                HEALTHY.labels(name, ep.url).set(1 if ep.healthy else 0)

    def rejected(self, status: int) -> None:
        """A request the gateway answered itself."""
        c = self._rej.get(status)
        if c is None:
            c = self._rej[status] = REJECTED.labels(str(status))
        c.inc()

    def shed(self, d: Admitted) -> None:
        """A request shed or timed out in the queue."""
        SHED.labels(d.agent.name).inc()
        self.rejected(503)

    def start(self, d: Admitted) -> None:
        """A request took a pool slot."""
        self._flight[d.agent.name].inc()
        q = d.agent.admission.queued
        if q:
            QUEUE.labels(d.agent.name).set(q)

    def retry(self, d: Admitted) -> None:
        """One retry."""
        RETRIES.labels(d.agent.name).inc()

    def upstream_latency(self, d: Admitted, seconds: float) -> None:
        """Time to response headers of one attempt."""
        self._up[d.agent.name].observe(seconds)

    def finish(self, d: Admitted, status: int, seconds: float) -> None:
        """A proxied request ended with `status` after `seconds`."""
        agent = d.agent.name
        rid = d.route.id
        cls = status // 100
        key = (agent, rid, cls)
        c = self._req.get(key)
        if c is None:
            label = _CLASSES[cls] if 0 < cls < 6 else "other"
            c = self._req[key] = REQUESTS.labels(agent, rid, label)
        c.inc()
        h = self._lat.get((agent, rid))
        if h is None:
            h = self._lat[(agent, rid)] = LATENCY.labels(agent, rid)
        h.observe(seconds)
        self._flight[agent].dec()
        ep = d.endpoint
        state = ep.breaker.state
        bkey = (agent, ep.url)
        if self._breaker.get(bkey, 0) != state:
            self._breaker[bkey] = state
            BREAKER.labels(agent, ep.url).set(state)
        if d.agent.admission.queued or QUEUE_NONZERO.get(agent):
            q = d.agent.admission.queued
            QUEUE.labels(agent).set(q)
            QUEUE_NONZERO[agent] = q > 0

    def endpoint_health(self, agent: str, ep: EndpointState) -> None:
        """Publish one endpoint's active-check result and breaker state."""
        HEALTHY.labels(agent, ep.url).set(1 if ep.healthy else 0)
        BREAKER.labels(agent, ep.url).set(ep.breaker.state)


QUEUE_NONZERO: dict[str, bool] = {}


def render_latest() -> tuple[bytes, str]:
    """Exposition text for /metrics: all workers' files when multi-process, else this process."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
