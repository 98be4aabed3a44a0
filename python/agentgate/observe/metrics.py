"""Gateway metrics with prometheus-client, counted locally per request and flushed on a timer.

With several granian workers, set PROMETHEUS_MULTIPROC_DIR (the CLI does) before this module
is imported; the admin listener then aggregates every worker's files.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp

if TYPE_CHECKING:
    from agentgate.gateway.engine import Engine, Flight

__all__ = ["Metrics", "fleet_state", "render_latest"]

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


_BREAKER_CODE = {"closed": 0, "open": 1, "half_open": 2, "half-open": 2}


class _Hist:
    """Observations of one histogram child, counted locally until the next flush."""

    __slots__ = ("child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.counts = [0] * (len(_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0

    def flush(self) -> None:
        # prometheus-client stores histogram buckets non-cumulatively (observe() bumps exactly
        # one bucket and the sum), so adding the counts bucket by bucket is the same as having
        # observed every value one by one
        counts = self.counts
        if not any(counts):
            return
        buckets = self.child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self.child._sum.inc(self.total)
        self.total = 0.0


class Metrics:
    """Per-request counts in plain ints, flushed into prometheus-client by `flush`.

    Multi-process prometheus values are mmap writes under a lock (about a microsecond each, a
    handful per request), so the hot path only bumps ints and list slots; the worker calls
    `flush` on a timer and at shutdown, so scrapes lag by at most that period and totals across
    workers stay exact. Breaker states, in-flight and queue depths come from the core's
    `stats()`, published by `publish` on the same timer.
    """

    def __init__(self) -> None:
        self._req: dict[tuple[str, str, int], int] = {}
        self._lat: dict[tuple[str, str], _Hist] = {}
        self._up: dict[str, _Hist] = {}
        self._rej: dict[int, int] = {}
        self._shed: dict[str, int] = {}
        self._retries: dict[str, int] = {}

    def bind(self, engine: Engine) -> None:
        """Pre-create children for a (new) config so the first requests pay nothing extra."""
        for name in engine.config.agents:
            if name not in self._up:
                self._up[name] = _Hist(UPSTREAM.labels(name))
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
        """Move the locally counted values into the prometheus metrics."""
        if self._req:
            req, self._req = self._req, {}
            for (agent, route, cls), n in req.items():
                label = _CLASSES[cls] if 0 < cls < 6 else "other"
                REQUESTS.labels(agent, route, label).inc(n)
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
        for h in self._lat.values():
            h.flush()
        for h in self._up.values():
            h.flush()

    def rejected(self, status: int) -> None:
        """A request the gateway answered itself."""
        rej = self._rej
        rej[status] = rej.get(status, 0) + 1

    def shed(self, d: Flight) -> None:
        """A request shed or timed out in the queue."""
        name = d.agent.name
        self._shed[name] = self._shed.get(name, 0) + 1

    def start(self, d: Flight) -> None:
        """A request took a pool slot (in-flight gauges come from the core)."""

    def retry(self, d: Flight) -> None:
        """One retry."""
        name = d.agent.name
        self._retries[name] = self._retries.get(name, 0) + 1

    def upstream_latency(self, d: Flight, seconds: float) -> None:
        """Time to response headers of one attempt."""
        name = d.agent.name
        h = self._up.get(name)
        if h is None:
            h = self._up[name] = _Hist(UPSTREAM.labels(name))
        h.counts[bisect_left(_BUCKETS, seconds)] += 1
        h.total += seconds

    def finish(self, d: Flight, status: int, seconds: float) -> None:
        """A proxied request ended with `status` after `seconds` (plus its last attempt's time)."""
        agent = d.agent.name
        up = d.upstream_s
        if up >= 0.0:
            self.upstream_latency(d, up)
        rid = d.route.id
        key = (agent, rid, status // 100)
        req = self._req
        req[key] = req.get(key, 0) + 1
        h = self._lat.get((agent, rid))
        if h is None:
            h = self._lat[(agent, rid)] = _Hist(LATENCY.labels(agent, rid))
        h.counts[bisect_left(_BUCKETS, seconds)] += 1
        h.total += seconds

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
