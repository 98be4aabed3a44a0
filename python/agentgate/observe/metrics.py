"""Gateway metrics with prometheus-client, counted per request in the core and flushed on a timer.

With several granian workers, set PROMETHEUS_MULTIPROC_DIR (the CLI does) before this module
is imported; the admin listener then aggregates every worker's files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp

if TYPE_CHECKING:
    from agentgate.gateway.engine import Engine, Flight

__all__ = ["Metrics", "fleet_state", "render_latest"]

from agentgate._core import LATENCY_BOUNDS

# the core counts latencies into these buckets, so the histograms must declare the same ones
_BUCKETS = LATENCY_BOUNDS
_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

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


_BREAKER_CODE = {"closed": 0, "open": 1, "half_open": 2, "half-open": 2}


def _add_histogram(child: Any, counts: list[int], total: float) -> None:
    # prometheus-client stores histogram buckets non-cumulatively (observe() bumps exactly one
    # bucket and the sum), so adding the counts bucket by bucket is the same as having observed
    # every value one by one
    buckets = child._buckets
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    child._sum.inc(total)


class Metrics:
    """Gateway counts flushed into prometheus-client on a timer.

    Proxied requests and upstream times are counted in the core with atomics (see
    `Admission.record`); rejections, sheds and retries in plain ints here. Multi-process
    prometheus values are mmap writes under a lock (about a microsecond each), so the request
    path never touches them: the worker calls `flush` on a timer and at shutdown, scrapes lag by
    at most that period and totals across workers stay exact. Breaker states, in-flight and
    queue depths come from the core's `stats()`, published by `publish` on the same timer.
    """

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._rej: dict[int, int] = {}
        self._shed: dict[str, int] = {}
        self._retries: dict[str, int] = {}

    def bind(self, engine: Engine) -> None:
        """Count from this engine (a reload keeps the same one); pre-create agent children."""
        if self._engine is not None and self._engine is not engine:
            self.flush()
        self._engine = engine
        for name in engine.config.agents:
            UPSTREAM.labels(name)
        self.publish(engine)

    def publish(self, engine: Engine) -> None:
        """Flush the counts and copy the core's per-agent state into the gauges."""
        self.flush()
        for name, st in engine.stats().items():
            IN_FLIGHT.labels(name).set(st["in_flight"])
            QUEUE.labels(name).set(sum(st["queue"]))
            for ep in st["endpoints"]:
                BREAKER.labels(name, ep["url"]).set(_BREAKER_CODE.get(ep["breaker"], 1))

    def flush(self) -> None:
        """Move the counted values into the prometheus metrics."""
        if self._engine is not None:
            routes, upstream = self._engine.core.take_stats()
            for agent, route, classes, counts, total in routes:
                for cls, n in enumerate(classes):
                    if n:
                        REQUESTS.labels(agent, route, _CLASSES[cls]).inc(n)
                _add_histogram(LATENCY.labels(agent, route), counts, total)
            for agent, counts, total in upstream:
                _add_histogram(UPSTREAM.labels(agent), counts, total)
        if self._rej:
            rej, self._rej = self._rej, {}
            for status, n in rej.items():
                REJECTED.labels(str(status)).inc(n)
        if self._shed:
            shed, self._shed = self._shed, {}
            for name, n in shed.items():
                SHED.labels(name).inc(n)
        if self._retries:
            retries, self._retries = self._retries, {}
            for name, n in retries.items():
                RETRIES.labels(name).inc(n)

    def rejected(self, status: int) -> None:
        """A request the gateway answered itself."""
        rej = self._rej
        rej[status] = rej.get(status, 0) + 1

    def shed(self, d: Flight) -> None:
        """A request shed or timed out in the queue."""
        name = d.agent.name
        self._shed[name] = self._shed.get(name, 0) + 1

    def retry(self, d: Flight) -> None:
        """One retry."""
        name = d.agent.name
        self._retries[name] = self._retries.get(name, 0) + 1

    @staticmethod
    def upstream_latency(d: Flight, seconds: float) -> None:
        """Time to response headers of one attempt."""
        d.admission.record(0, 0.0, seconds)

    def endpoint_health(self, agent: str, url: str, healthy: bool) -> None:
        """Publish one endpoint's active-check result."""
        HEALTHY.labels(agent, url).set(1 if healthy else 0)


def _registry() -> Any:
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


_BREAKER_NAME = ("closed", "open", "half_open")


def fleet_state() -> dict[str, dict[str, Any]]:
    """Per agent, across every worker: in_flight, queued and breaker state per endpoint URL."""
    out: dict[str, dict[str, Any]] = {}
    codes: dict[tuple[str, str], int] = {}
    for metric in _registry().collect():
        kind = metric.name
        if kind not in ("agentgate_in_flight", "agentgate_queue_depth", "agentgate_breaker_state"):
            continue
        for sample in metric.samples:
            name = sample.labels.get("agent")
            if name is None:
                continue
            a = out.setdefault(name, {"in_flight": 0, "queued": 0, "breakers": {}})
            if kind == "agentgate_in_flight":
                a["in_flight"] += int(sample.value)
            elif kind == "agentgate_queue_depth":
                a["queued"] += int(sample.value)
            else:
                key = (name, sample.labels.get("endpoint", ""))
                codes[key] = max(codes.get(key, 0), int(sample.value))
    for (name, url), code in codes.items():
        state = _BREAKER_NAME[code] if 0 <= code < 3 else "open"
        out[name]["breakers"][url] = state
    return out


def render_latest() -> tuple[bytes, str]:
    """Exposition text for /metrics: all workers' files when multi-process, else this process."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return generate_latest(_registry()), CONTENT_TYPE_LATEST
