"""The per-request decision, behind one seam: the Rust `GatewayCore` plus the asyncio side.

`Engine.admit(...)` is one call into the core (route, API key, roles, priority, rate limit,
admission, endpoint pick). What the core cannot do for an asyncio handler lives here: parking
queued requests on futures keyed by `(agent, ticket)`, waking them when a slot frees up, failing
shed and expired tickets, and the per-request retry policy (budget, idempotency, backoff).
A reload compiles the new config to a spec and `replace`s it on the same core, so breakers,
rate-limit budgets and queues of unchanged parts carry over.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import orjson

from agentgate._core import (
    ContentDigestCheck,
    GatewayCore,
    HttpSignatureError,
    HttpSigVerifier,
)
from agentgate._core import Rejection as CoreRejection
from agentgate.config import Agent, GatewayConfig, Route, SignatureConfig, decode_public_key

if TYPE_CHECKING:
    from agentgate._core import Admission, ManualClock

__all__ = [
    "AgentState",
    "Engine",
    "Flight",
    "Rejected",
    "RetryBudget",
    "RouteState",
    "compile_spec",
]

_SIG_COMPONENTS = ["@method", "@authority", "@path"]
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_EXPIRE_EVERY = 0.02  # queue-timeout resolution while anything waits


class Headers(Protocol):
    """What `admit` needs of the request headers: `get(lowercase_name)` and `items()`."""

    def get(self, name: str, /) -> str | None:
        """The header value, if present."""
        ...

    def items(self) -> Iterable[tuple[str, str]]:
        """Every header (only read on signed routes)."""
        ...


@dataclass(slots=True, frozen=True)
class Rejected:
    """A request answered by the gateway itself: status, problem type/title/detail, headers."""

    status: int
    reason: str
    detail: str
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def title(self) -> str:
        """The standard reason phrase of the status."""
        return _title(self.status)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _from_core(r: CoreRejection) -> Rejected:
    return Rejected(r.status, r.reason, r.detail, tuple(r.headers))


_SHED = Rejected(503, "shed", "shed under load in favour of higher priorities")
_QUEUE_TIMEOUT = Rejected(503, "queue_timeout", "queue timeout: no capacity in time")
_GONE = Rejected(503, "no_endpoint", "agent no longer configured")


class RetryBudget:
    """Token budget: each request deposits `ratio`, each retry spends 1 (plus a small floor)."""

    __slots__ = ("_cap", "_ratio", "tokens")

    def __init__(self, ratio: float, floor: float = 10.0) -> None:
        self._ratio = ratio
        self._cap = max(floor, 100.0)
        self.tokens = floor

    def deposit(self) -> None:
        """Called once per original request."""
        t = self.tokens + self._ratio
        self.tokens = t if t < self._cap else self._cap

    def withdraw(self) -> bool:
        """Take one retry from the budget if there is one."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class AgentState:
    """Python-side policy of one agent pool (index = the core's agent index)."""

    __slots__ = ("_config", "budget", "index", "name", "preserve_host", "total_timeout")

    def __init__(self, index: int, name: str, config: Agent) -> None:
        self.index = index
        self.name = name
        self.config = config
        self.budget = RetryBudget(config.retries.budget)

    @property
    def config(self) -> Agent:
        """The agent's config; setting it refreshes the plain copies the handler reads."""
        return self._config

    @config.setter
    def config(self, config: Agent) -> None:
        self._config = config
        # read per request: plain attributes instead of walking the pydantic models
        self.total_timeout = config.timeouts.total
        self.preserve_host = config.host_header == "preserve"


class RouteState:
    """Python-side policy of one route (index = the core's route index)."""

    __slots__ = (
        "agent",
        "config",
        "hide_auth",
        "id",
        "max_body",
        "retry_non_idempotent",
        "signed",
    )

    def __init__(self, rid: str, config: Route, agent: AgentState) -> None:
        self.id = rid
        self.config = config
        self.agent = agent
        self.max_body = config.max_body
        self.retry_non_idempotent = config.retry_non_idempotent
        self.hide_auth = config.auth == "required"
        self.signed = config.signature == "required"


class Flight:
    """One admitted request: where it goes; `Engine.finish` it exactly once."""

    __slots__ = (
        "admission",
        "agent",
        "attempts",
        "digest",
        "endpoint",
        "has_slot",
        "latency",
        "outcome",
        "proto",
        "ratelimit",
        "route",
        "started",
        "task",
        "ticket",
        "upstream_path",
        "upstream_s",
        "url",
        "watcher",
    )

    def __init__(self, a: Admission, route: RouteState, upstream_path: str, now: float) -> None:
        self.admission = a
        self.route = route
        self.agent = route.agent
        self.endpoint: int | None = a.endpoint
        self.url: str = a.url
        self.ticket = a.ticket
        self.ratelimit = a.ratelimit
        self.upstream_path = upstream_path
        self.started = now
        self.attempts = 1
        self.has_slot = a.ticket is None
        self.latency = 0.0  # of the current attempt, to response headers
        self.upstream_s = -1.0  # the same, once the attempt got response headers
        self.outcome = "cancelled"  # of the current attempt, until it has one
        # signed request with a body: the body must match this before it is forwarded
        self.digest: ContentDigestCheck | None = None
        # set by the handler: what a slow request's client-disconnect watcher needs
        self.proto: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Future[Any] | None = None

    # read from the core's admission only when asked: each is a conversion the hot path skips
    @property
    def key_id(self) -> str | None:
        """The API key id the request authenticated with."""
        return self.admission.key_id

    @property
    def tenant(self) -> str | None:
        """The tenant of that key."""
        return self.admission.tenant

    @property
    def priority(self) -> str:
        """The priority class the request was admitted under."""
        return self.admission.priority


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@-]*")


_REQUOTED: dict[str, str] = {}
_REQUOTED_MAX = 4096


def _requote(path: str) -> str:
    # granian hands us the percent-decoded path; the upstream must get a valid request target.
    # Hot paths repeat: a bounded memo answers them with one dict lookup instead of a regex.
    done = _REQUOTED.get(path)
    if done is not None:
        return done
    done = path if _PLAIN_PATH.fullmatch(path) else quote(path, safe="/._~!$&'()*+,;=:@-")
    if len(_REQUOTED) < _REQUOTED_MAX and len(path) <= 256:
        _REQUOTED[path] = done
    return done


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def compile_spec(config: GatewayConfig, order: Iterable[str] = ()) -> tuple[bytes, list[str]]:
    """The core's engine spec (JSON) for a config, and the agent order it uses.

    Agents listed in `order` (the running order) keep their index, so requests in flight across
    a reload still finish against the right pool; agents dropped from the config stay as idle
    pools (no route reaches them) until the process ends.
    """
    names = list(order)
    known = set(names)
    names.extend(n for n in config.agents if n not in known)
    agents: list[dict[str, Any]] = []
    for name in names:
        a = config.agents.get(name)
        if a is None:
            agents.append({"name": name, "endpoints": [{"url": "http://retired.invalid"}]})
            continue
        cb = a.circuit_breaker
        wait = _ms(a.queue_timeout)
        agents.append(
            {
                "name": name,
                "endpoints": [{"url": e.url, "weight": e.weight} for e in a.endpoints],
                "breaker": {
                    "consecutive_failures": cb.consecutive_failures,
                    "error_rate": cb.error_rate,
                    "min_requests": cb.min_requests,
                    "open_ms": _ms(cb.open_for),
                    "max_open_ms": _ms(cb.open_for),
                },
                "max_concurrency": a.max_concurrency,
                "max_queue": a.max_queue,
                "max_wait_ms": [wait, wait, wait, wait],
                "preserve_host": a.host_header == "preserve",
            }
        )
    routes: list[dict[str, Any]] = []
    for rid, r in zip(config.route_ids(), config.routes, strict=True):
        m = r.match
        spec: dict[str, Any] = {
            "id": rid,
            "agent": r.agent,
            "methods": list(m.methods or ()),
            "strip_prefix": r.strip_prefix,
            "priority": r.priority,
            "auth_required": r.auth == "required",
            "roles": list(r.roles),
        }
        if m.host is not None:
            spec["host"] = m.host
        if m.path is not None:
            spec["path"] = m.path
        elif m.path_template is not None:
            spec["path_template"] = m.path_template
        else:
            spec["path_prefix"] = m.path_prefix
        if m.headers:
            spec["headers"] = [[k.lower(), v] for k, v in m.headers.items()]
        rl = r.rate_limit
        if rl is not None:
            spec["rate_limit"] = {
                "key": rl.key,
                "per_second": rl.rate,
                "burst": max(1, rl.burst or math.ceil(rl.rate)),
            }
        routes.append(spec)
    body = {
        "agents": agents,
        "routes": routes,
        "api_keys": [
            {
                "id": k.id,
                "sha256": k.hash.removeprefix("sha256:"),
                "tenant": k.tenant,
                "roles": list(k.roles),
            }
            for k in config.auth.api_keys
        ],
        "role_max_priority": {n: r.max_priority for n, r in config.auth.roles.items()},
    }
    return orjson.dumps(body), names


class Engine:
    """Decides per request through one `GatewayCore`; `replace` swaps configs in place."""

    def __init__(self, config: GatewayConfig, clock: ManualClock | None = None) -> None:
        spec, names = compile_spec(config)
        self.core = GatewayCore(spec, clock=clock)
        self._waiters: dict[tuple[int, int], asyncio.Future[Rejected | None]] = {}
        self._expirer: asyncio.Task[None] | None = None
        self._clock = clock
        self.verifier = self._verifier(config.signatures)
        self._install(config, names, {})

    def _verifier(self, sig: SignatureConfig) -> HttpSigVerifier:
        keys: dict[str, Any] = {k.keyid: decode_public_key(k.public_key) for k in sig.trusted_keys}
        return HttpSigVerifier(
            keys,
            required_components=_SIG_COMPONENTS,
            require_digest_with_body=True,
            require_created=True,
            require_nonce=sig.require_nonce,
            max_age=max(1, round(sig.window)),
            nonce_capacity=sig.nonce_cache,
            clock=self._clock,
        )

    def _update_verifier(self, old: SignatureConfig, new: SignatureConfig) -> None:
        if old == new:
            return
        if (old.window, old.require_nonce, old.nonce_cache) != (
            new.window,
            new.require_nonce,
            new.nonce_cache,
        ):
            self.verifier = self._verifier(new)
            return
        # only keys changed: update in place so the nonce cache (replay protection) survives
        wanted = {k.keyid: decode_public_key(k.public_key) for k in new.trusted_keys}
        for k in old.trusted_keys:
            if k.keyid not in wanted:
                self.verifier.remove_key(k.keyid)
        for keyid, raw in wanted.items():
            self.verifier.set_key(keyid, raw)

    def _install(self, config: GatewayConfig, names: list[str], old: dict[str, AgentState]) -> None:
        agents = []
        for i, name in enumerate(names):
            a = config.agents.get(name)
            prev = old.get(name)
            if a is None and prev is not None:
                agents.append(prev)  # retired: kept only so in-flight requests finish
            elif a is not None:
                keep = prev is not None and prev.config.retries == a.retries
                agents.append(prev if keep and prev is not None else AgentState(i, name, a))
                if prev is not None and keep:
                    prev.config = a
        by_name = {a.name: a for a in agents}
        self.config = config
        self.agents = agents
        self.routes = [
            RouteState(rid, r, by_name[r.agent])
            for rid, r in zip(config.route_ids(), config.routes, strict=True)
        ]

    def replace(self, config: GatewayConfig) -> None:
        """Swap in a new config on the same core; ValueError leaves the old one running."""
        spec, names = compile_spec(config, (a.name for a in self.agents))
        self.core.replace(spec)
        self._update_verifier(self.config.signatures, config.signatures)
        self._install(config, names, {a.name: a for a in self.agents})

    # ---- the decision ----
    def admit(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Headers,
        client_ip: str,
        scheme: str = "http",
        now: float | None = None,
        request_id: str | None = None,
    ) -> Flight | Rejected:
        """Route, authenticate, rate-limit, prioritise and admit one request.

        The admitted Flight carries the upstream header block the core built (hop-by-hop
        fields dropped, X-Forwarded-* and `request_id` added) and the upstream target.
        `now` is a `perf_counter()` reading when the caller has one at hand.
        """
        d, shed, granted = self.core.admit_request(
            method, host, path, query, headers, client_ip, scheme, request_id
        )
        if type(d) is CoreRejection:
            agent = d.agent
            if agent is not None:
                if granted is not None:
                    self._wake(agent, granted)  # the slot this request could not use
                for t in shed or ():
                    self._fail(agent, t, _SHED)
            return _from_core(d)
        a: Admission = d  # type: ignore[assignment]
        if shed is not None:
            for t in shed:
                self._fail(a.agent, t, _SHED)
        route = self.routes[a.route]
        max_body = route.max_body
        if max_body is not None and a.framing > max_body:
            self._drop(a)
            return Rejected(413, "too_large", f"body exceeds {max_body} bytes")
        digest = None
        if route.signed:
            checked = self._verify(method, scheme, host, path, query, headers)
            if isinstance(checked, Rejected):
                self._drop(a)
                return checked
            digest = checked
        b = route.agent.budget  # RetryBudget.deposit, inlined on the hot path
        tokens = b.tokens + b._ratio
        b.tokens = tokens if tokens < b._cap else b._cap
        if now is None:
            now = perf_counter()
        f = Flight(a, route, a.target, now)
        if digest is not None:
            f.digest = digest
        return f

    def _verify(
        self, method: str, scheme: str, host: str, path: str, query: str, headers: Headers
    ) -> ContentDigestCheck | Rejected | None:
        cl = headers.get("content-length")
        has_body = (cl is not None and cl != "0") or headers.get("transfer-encoding") is not None
        pairs = list(headers.items())
        try:
            # granian gives the decoded path; re-quoting restores what the client put on the wire
            self.verifier.verify(
                method, scheme, host, _requote(path), query or None, pairs, has_body=has_body
            )
        except HttpSignatureError as e:
            code, message = e.args
            return Rejected(
                401,
                "bad_signature",
                f"signature rejected ({code}): {message}",
                (("www-authenticate", 'Signature realm="agentgate"'),),
            )
        if not has_body:
            return None
        try:
            return ContentDigestCheck(
                ", ".join(v for k, v in pairs if k.lower() == "content-digest")
            )
        except ValueError as e:
            return Rejected(401, "bad_signature", f"malformed Content-Digest: {e}")

    def _drop(self, a: Admission) -> None:
        if a.ticket is None:
            self._wake(a.agent, self.core.finish(a.agent, a.endpoint, 0.0, "cancelled"))
        elif not self.core.cancel(a.agent, a.ticket):
            self._wake(a.agent, self.core.release(a.agent))

    # ---- queueing ----
    async def wait(self, f: Flight) -> Rejected | None:
        """Wait for a slot under the flight's ticket, then pick an endpoint; None when admitted."""
        ticket = f.ticket
        assert ticket is not None
        agent = f.agent.index
        key = (agent, ticket)
        fut: asyncio.Future[Rejected | None] = asyncio.get_running_loop().create_future()
        self._waiters[key] = fut
        if self._expirer is None or self._expirer.done():
            self._expirer = asyncio.get_running_loop().create_task(self._expire_loop())
        try:
            rej = await fut
        except asyncio.CancelledError:
            if self._waiters.pop(key, None) is not None:
                if not self.core.cancel(agent, ticket):
                    self._wake(agent, self.core.release(agent))
            elif fut.done() and not fut.cancelled() and fut.result() is None:
                self._wake(agent, self.core.release(agent))  # granted as we gave up
            raise
        if rej is not None:
            return rej
        f.has_slot = True
        picked = self.core.pick(agent)
        if type(picked) is CoreRejection:
            return _from_core(picked)
        f.endpoint, f.url = picked  # type: ignore[misc]
        return None

    def _wake(self, agent: int, ticket: int | None) -> None:
        while ticket is not None:
            fut = self._waiters.pop((agent, ticket), None)
            if fut is not None and not fut.done():
                fut.set_result(None)
                return
            # nobody waits under that ticket any more: pass the slot on
            ticket = self.core.release(agent)

    def _fail(self, agent: int, ticket: int, why: Rejected) -> None:
        fut = self._waiters.pop((agent, ticket), None)
        if fut is not None and not fut.done():
            fut.set_result(why)

    def expire(self) -> int:
        """Fail tickets that waited longer than their queue timeout; returns how many."""
        expired = self.core.expire()
        for agent, ticket in expired:
            self._fail(agent, ticket, _QUEUE_TIMEOUT)
        return len(expired)

    async def _expire_loop(self) -> None:
        while self._waiters:
            await asyncio.sleep(_EXPIRE_EVERY)
            self.expire()

    @property
    def queued(self) -> int:
        """Requests of this process parked in a queue."""
        return len(self._waiters)

    # ---- attempts and outcomes ----
    def retry(self, f: Flight, method: str, latency: float, outcome: str) -> bool:
        """End a failed attempt; if policy allows another, pick an endpoint for it."""
        agent = f.agent
        pol = agent.config.retries
        allowed = (
            f.attempts <= pol.attempts
            and (method in _IDEMPOTENT or f.route.retry_non_idempotent)
            and agent.budget.withdraw()
        )
        if not allowed:
            return False
        self.core.finish(agent.index, f.endpoint, latency, outcome, keep_slot=True)
        f.endpoint = None
        picked = self.core.pick(agent.index)
        if type(picked) is CoreRejection:
            return False
        f.endpoint, f.url = picked  # type: ignore[misc]
        f.attempts += 1
        return True

    def backoff(self, f: Flight) -> float:
        """Full-jitter exponential backoff for the next retry of `f`."""
        b = f.agent.config.retries.backoff
        return random.uniform(0.0, min(b.max, b.base * (2 ** (f.attempts - 2))))

    def finish(self, f: Flight, latency: float, outcome: str) -> None:
        """End the last attempt and release the slot; call exactly once per admitted request."""
        agent = f.agent.index
        if f.has_slot:
            f.has_slot = False
            granted = self.core.finish(agent, f.endpoint, latency, outcome)
            if granted is not None:
                self._wake(agent, granted)
        elif f.endpoint is not None:
            self.core.finish(agent, f.endpoint, latency, outcome, keep_slot=True)
        f.endpoint = None

    # ---- health and stats ----
    def set_healthy(self, agent: int, endpoint: int, healthy: bool) -> None:
        """Active health check result for one endpoint."""
        self.core.set_healthy(agent, endpoint, healthy)

    def stats(self) -> dict[str, Any]:
        """Per agent: endpoints (url, healthy, breaker…), in_flight and queue depths."""
        s: dict[str, Any] = self.core.stats()
        return {name: s[name] for name in self.config.agents if name in s}
