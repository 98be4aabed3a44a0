"""The per-request decision, behind one seam: `Engine.admit(...)` → Admitted | Rejected.

Today it composes small Python policies (`policy.py`); the plan is one Rust call
(`core.admit(request head)`), so nothing here knows about sockets, streams or aiohttp.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from agentgate.config import PRIORITIES, Agent, ApiKey, GatewayConfig, Route
from agentgate.gateway.policy import AdmissionPool, Breaker, Clock, Gcra, RetryBudget, Shed

__all__ = ["Admitted", "EndpointState", "Engine", "PoolState", "Rejected", "RouteState"]

_PRIO = {p: i for i, p in enumerate(PRIORITIES)}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

HeaderGet = Callable[[str], str | None]


@dataclass(slots=True, frozen=True)
class Rejected:
    """A request answered by the gateway itself: status, problem title/detail, extra headers."""

    status: int
    title: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


class EndpointState:
    """One endpoint: URL, weight, health (active checks) and breaker (passive ejection)."""

    __slots__ = ("breaker", "healthy", "index", "url", "weight")

    def __init__(self, index: int, url: str, weight: int, breaker: Breaker) -> None:
        self.index = index
        self.url = url
        self.weight = weight
        self.breaker = breaker
        self.healthy = True

    def available(self) -> bool:
        """Healthy and the breaker would let a request through."""
        return self.healthy and self.breaker.peek()


class PoolState:
    """An agent pool: endpoints, admission, retry budget."""

    __slots__ = ("admission", "budget", "config", "endpoints", "name")

    def __init__(self, name: str, config: Agent, clock: Clock) -> None:
        self.name = name
        self.config = config
        cb = config.circuit_breaker
        self.endpoints = [
            EndpointState(
                i,
                ep.url,
                ep.weight,
                Breaker(
                    cb.consecutive_failures, cb.error_rate, cb.min_requests, cb.open_for, clock
                ),
            )
            for i, ep in enumerate(config.endpoints)
        ]
        self.admission = AdmissionPool(config.max_concurrency, config.max_queue)
        self.budget = RetryBudget(config.retries.budget)

    def pick(self, exclude: int = -1) -> EndpointState | Rejected:
        """Weighted random pick among available endpoints (avoiding `exclude` when possible)."""
        eps = self.endpoints
        if len(eps) == 1:
            ep = eps[0]
            if not ep.healthy:
                return _NO_HEALTHY
            return ep if ep.breaker.allow() else _BREAKER_OPEN
        cands = [e for e in eps if e.index != exclude and e.available()]
        if not cands:
            cands = [e for e in eps if e.available()]
            if not cands:
                if not any(e.healthy for e in eps):
                    return _NO_HEALTHY
                return _BREAKER_OPEN
        total = 0
        for e in cands:
            total += e.weight
        r = random.random() * total
        for e in cands:
            r -= e.weight
            if r < 0 and e.breaker.allow():
                return e
        for e in cands:
            if e.breaker.allow():
                return e
        return _BREAKER_OPEN


class RouteState:
    """A compiled route: prefix, methods, limiter and the pool it goes to."""

    __slots__ = ("config", "id", "limiter", "methods", "pool", "prefix", "priority")

    def __init__(self, rid: str, config: Route, pool: PoolState, clock: Clock) -> None:
        self.id = rid
        self.config = config
        self.prefix = config.match.path_prefix.rstrip("/")
        self.methods = frozenset(config.match.methods) if config.match.methods else None
        self.pool = pool
        self.priority = _PRIO[config.priority]
        rl = config.rate_limit
        self.limiter = Gcra(rl.rate, rl.burst, clock) if rl is not None else None


class Admitted:
    """An admitted request: where it goes and under which policy; `finish` it exactly once."""

    __slots__ = (
        "agent",
        "attempts",
        "endpoint",
        "has_slot",
        "key_id",
        "priority",
        "route",
        "started",
        "tenant",
        "upstream_path",
    )

    def __init__(
        self,
        route: RouteState,
        endpoint: EndpointState,
        upstream_path: str,
        key: ApiKey | None,
        priority: int,
        started: float,
    ) -> None:
        self.route = route
        self.agent = route.pool
        self.endpoint = endpoint
        self.upstream_path = upstream_path
        self.key_id = key.id if key is not None else None
        self.tenant = key.tenant if key is not None else None
        self.priority = priority
        self.started = started
        self.attempts = 1
        self.has_slot = False

    @property
    def base_url(self) -> str:
        """Base URL of the chosen endpoint."""
        return self.endpoint.url

    @property
    def policy(self) -> Agent:
        """Timeouts, retries, breaker settings of the agent."""
        return self.agent.config


_BREAKER_OPEN = Rejected(503, "Service Unavailable", "circuit breaker open for every endpoint")
_NO_HEALTHY = Rejected(503, "Service Unavailable", "no healthy endpoint")
_NO_ROUTE = Rejected(404, "Not Found", "no route matches this path")
_UNAUTHORIZED = Rejected(
    401, "Unauthorized", "missing or unknown API key", (("www-authenticate", "Bearer"),)
)
_SHED = Rejected(503, "Service Unavailable", "shed: the agent pool is at capacity")
_QUEUE_TIMEOUT = Rejected(503, "Service Unavailable", "queue timeout: no capacity in time")


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@-]*")


def _requote(path: str) -> str:
    # granian hands us the percent-decoded path; the upstream must get a valid request target
    if _PLAIN_PATH.fullmatch(path):
        return path
    return quote(path, safe="/._~!$&'()*+,;=:@-")


def _segment_match(path: str, prefix: str) -> bool:
    if not path.startswith(prefix):
        return False
    n = len(prefix)
    return len(path) == n or path[n] == "/" or prefix == ""


class Engine:
    """Decides per request from one validated config; swap the whole Engine to reload."""

    def __init__(self, config: GatewayConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.pools = {name: PoolState(name, a, clock) for name, a in config.agents.items()}
        routes = [
            RouteState(rid, r, self.pools[r.agent], clock)
            for rid, r in zip(config.route_ids(), config.routes, strict=True)
        ]
        # longest prefix first so the most specific route wins
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._keys = {k.hash.removeprefix("sha256:"): k for k in config.auth.api_keys}
        self._role_cap = {
            name: _PRIO[role.max_priority] for name, role in config.auth.roles.items()
        }

    # ---- the decision ----
    def admit(
        self, method: str, path: str, query: str, header: HeaderGet, client_ip: str
    ) -> Admitted | Rejected:
        """Route, authenticate, rate-limit, prioritise and pick an endpoint for one request."""
        route = None
        allowed_elsewhere = False
        for r in self.routes:
            if _segment_match(path, r.prefix):
                if r.methods is None or method in r.methods:
                    route = r
                    break
                allowed_elsewhere = True
        if route is None:
            if allowed_elsewhere:
                return Rejected(405, "Method Not Allowed", f"method {method} not allowed here")
            return _NO_ROUTE
        cfg = route.config
        key = None
        if cfg.auth == "required":
            key = self.authenticate(header)
            if key is None:
                return _UNAUTHORIZED
        if cfg.max_body is not None:
            cl = header("content-length")
            if cl is not None and cl.isdigit() and int(cl) > cfg.max_body:
                return Rejected(413, "Content Too Large", f"body exceeds {cfg.max_body} bytes")
        limiter = route.limiter
        if limiter is not None:
            rej = self._limit(route, limiter, key, header, client_ip)
            if rej is not None:
                return rej
        priority = self._priority(route, key, header("x-priority"))
        ep = route.pool.pick()
        if isinstance(ep, Rejected):
            return ep
        if cfg.strip_prefix:
            upstream_path = path[len(route.prefix) :] or "/"
            if upstream_path[0] != "/":
                upstream_path = "/" + upstream_path
        else:
            upstream_path = path
        upstream_path = _requote(upstream_path)
        if query:
            upstream_path = f"{upstream_path}?{query}"
        route.pool.budget.deposit()
        return Admitted(route, ep, upstream_path, key, priority, self.clock())

    def authenticate(self, header: HeaderGet) -> ApiKey | None:
        """The API key from `Authorization: Bearer` or `X-API-Key`, if it is a known one."""
        raw = header("authorization")
        if raw is not None and raw[:7].lower() == "bearer ":
            secret = raw[7:].strip()
        else:
            secret = header("x-api-key") or ""
        if not secret:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        key = self._keys.get(digest)
        if key is None:
            return None
        # the dict lookup found a candidate; confirm in constant time as the rule requires
        if not hmac.compare_digest(digest, key.hash[7:]):
            return None
        return key

    def _limit(
        self, route: RouteState, limiter: Gcra, key: ApiKey | None, header: HeaderGet, ip: str
    ) -> Rejected | None:
        kind = route.config.rate_limit.key if route.config.rate_limit else "ip"
        if kind == "ip":
            k = ip
        elif kind == "api_key":
            k = key.id if key is not None else ip
        elif kind == "tenant":
            k = key.tenant if key is not None else ip
        else:
            k = header(kind[7:]) or ""
        ok, remaining, reset = limiter.check(k)
        if ok:
            return None
        secs = max(1, int(reset + 0.999))
        return Rejected(
            429,
            "Too Many Requests",
            f"rate limit of {limiter.rate:g}/s exceeded",
            (
                ("retry-after", str(secs)),
                ("ratelimit-limit", str(limiter.burst)),
                ("ratelimit-remaining", str(remaining)),
                ("ratelimit-reset", str(secs)),
                (
                    "ratelimit-policy",
                    f"{limiter.burst};w={max(1, round(limiter.burst / limiter.rate))}",
                ),
            ),
        )

    def _priority(self, route: RouteState, key: ApiKey | None, asked: str | None) -> int:
        base = route.priority
        if asked is None:
            return base
        want = _PRIO.get(asked.strip().lower())
        if want is None or want <= base:
            return base if want is None else want
        cap = base
        if key is not None:
            for role in key.roles:
                c = self._role_cap.get(role, base)
                if c > cap:
                    cap = c
        return want if want <= cap else cap

    # ---- admission ----
    async def acquire(self, d: Admitted) -> Rejected | None:
        """Take a concurrency slot in the pool, queueing by priority; None when admitted."""
        pool = d.agent.admission
        try:
            await pool.acquire(d.priority, d.agent.config.queue_timeout)
        except Shed:
            return _SHED
        except TimeoutError:
            return _QUEUE_TIMEOUT
        d.has_slot = True
        return None

    # ---- outcomes ----
    def record(self, d: Admitted, ok: bool) -> None:
        """Record one attempt's outcome against its endpoint's breaker."""
        d.endpoint.breaker.record(ok)

    def retry(self, d: Admitted, method: str, allow_non_idempotent: bool = False) -> bool:
        """Whether another attempt is allowed; if so, moves `d` to another endpoint."""
        pol = d.agent.config.retries
        if d.attempts > pol.attempts:
            return False
        if method not in _IDEMPOTENT and not (
            allow_non_idempotent or d.route.config.retry_non_idempotent
        ):
            return False
        if not d.agent.budget.withdraw():
            return False
        ep = d.agent.pick(exclude=d.endpoint.index)
        if isinstance(ep, Rejected):
            return False
        d.endpoint = ep
        d.attempts += 1
        return True

    def backoff(self, d: Admitted) -> float:
        """Full-jitter exponential backoff for the next retry of `d`."""
        b = d.agent.config.retries.backoff
        return random.uniform(0.0, min(b.max, b.base * (2 ** (d.attempts - 2))))

    def finish(self, d: Admitted) -> None:
        """Release the request's slot; call exactly once per admitted request."""
        if d.has_slot:
            d.has_slot = False
            d.agent.admission.release()
