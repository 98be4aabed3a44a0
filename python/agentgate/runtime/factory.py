"""The agent factory: create agents from signed templates and wire them into the gateway.

    factory = AgentFactory(store, lambda scope: RegistryService(scope), PolicyService(), audit)
    rec = await factory.create(store.scoped(tid), principal, "summarizer@^1.2", {"model": "x"})

`create` resolves the reference (range, tag, exact version or `name@sha256:…`), verifies the
signature again, validates `params` against the template's `params_schema` (`Invalid` names the
JSON path), asks policy (stages `create` and `deploy`), persists the agent and writes the audit
trail. Persisting bumps the store's `agents_version`; every gateway's store source
(`agentgate.runtime.store_source`) sees that within one poll and the gateway swaps in a route
table with the agent.

How an agent appears in the gateway (`gateway_parts`):
- pool `<tenant>/<agent>`: the template's `spec` (kind `http`: endpoints, timeouts, retries,
  breaker, health check, concurrency) after `{{param}}` substitution: a string that is exactly
  `{{name}}` becomes the parameter's value (any JSON type), `{{name}}` inside a longer string is
  replaced by the value's text. Only `spec` is substituted; an unknown name is `Invalid`. The
  registry validates the template with the placeholders still in, so they fit only where that
  text is valid too (a URL's host or path, a header value), not in numbers.
- routes `<tenant>/<agent>/<n>`: the agent's routes (given at create/update) or else the
  template's default routes, or else one catch-all route `/` with `strip_prefix: true`. Route
  paths are relative to the agent's mount `/t/<tenant>/agents/<agent>`: `path_prefix: /v1`
  matches `/t/acme/agents/bot/v1…`. `strip_prefix` strips the whole matched (mounted) prefix.
  Template `limits` fill in a route's missing `rate_limit` / `max_body`.

Delete drains: the agent turns `draining` (its routes leave the next snapshot, its pool stays so
requests in flight finish), and the row is deleted once every gateway worker that reported since
the drain began says zero in flight, or after `drain_timeout`.

Times are UTC epoch seconds (float) from the store's clock; ids are uuid4 hex.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from agentgate.bus.changes import Change, ChangeFeed
from agentgate.config import Agent as PoolConfig
from agentgate.config import Match, Route
from agentgate.errors import AgentgateError, Invalid, NotFound, PolicyDenied
from agentgate.registry.service import RegistryService
from agentgate.registry.template import (
    RouteDefault,
    TemplateModel,
    json_path,
    parse_template,
)
from agentgate.runtime.spec import AgentSpec, is_process
from agentgate.state import AgentHistory, agent_document
from agentgate.store import Agent, Seal, Store, TenantScope
from agentgate.store import Template as TemplateRecord
from agentgate.tenancy.roles import Principal, require

__all__ = [
    "AgentFactory",
    "AgentRecord",
    "AuditLog",
    "PolicyEvaluator",
    "ScopeAudit",
    "gateway_name",
    "gateway_parts",
    "mount_path",
    "render_spec",
]

log = logging.getLogger("agentgate.runtime")


class RuntimeUnavailable(AgentgateError):
    """No agent runtime in this process (process templates need `agentgate serve`)."""

    status = 503
    title = "Runtime unavailable"


_AGENT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_DEFAULT_ROUTE: dict[str, Any] = {"match": {"path_prefix": "/"}, "strip_prefix": True}
MAX_REPLICAS = 10_000


class PolicyEvaluator(Protocol):
    """What the factory needs of `agentgate.policy.PolicyService`."""

    def evaluate(
        self, stage: Any, input: Mapping[str, Any], *, tenant_id: str | None = None
    ) -> Any:
        """A decision with `allow` and `as_dict()` (or an awaitable of one)."""
        ...

    async def ensure_tenant(self, tenant_id: str, repo: Any) -> None:
        """Make the tenant's stored policies part of its decisions."""
        ...


class AuditLog(Protocol):
    """Where the factory records what it did (the hash-chained trail in production)."""

    async def record(
        self,
        scope: TenantScope,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        decision: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> object:
        """Append one entry for the scope's tenant."""
        ...


class ScopeAudit:
    """`AuditLog` on the store's tenant trail, hashing entries with the given `seal`."""

    def __init__(self, seal: Seal) -> None:
        self._seal = seal

    async def record(
        self,
        scope: TenantScope,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        decision: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> object:
        """Append one entry for the scope's tenant."""
        return await scope.audit.append(
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            seal=self._seal,
            decision=None if decision is None else dict(decision),
            details=None if details is None else dict(details),
        )


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent as the API shows it: the stored row plus where the gateway serves it."""

    agent: Agent
    tenant_name: str
    template_name: str
    template_version: str
    gateway_agent: str
    mount: str
    decision: dict[str, Any] | None = None
    warning: str | None = None
    runtime: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API."""
        a = self.agent
        return {
            "id": a.id,
            "tenant": self.tenant_name,
            "name": a.name,
            "template": {
                "ref": a.template_ref,
                "name": self.template_name,
                "version": self.template_version,
                "digest": a.template_digest,
            },
            "params": a.params,
            "replicas": a.replicas,
            "routes": a.routes,
            "state": a.state,
            "revision": a.revision,
            "gateway_agent": self.gateway_agent,
            "mount": self.mount,
            "created_at": a.created_at,
            "updated_at": a.updated_at,
            "decision": self.decision,
            "warning": self.warning,
            "runtime": self.runtime,
        }


# --- gateway mapping (pure; used by runtime/store_source.py) ------------------------------


def gateway_name(tenant_name: str, agent_name: str) -> str:
    """The gateway pool name of an agent: `<tenant>/<agent>`."""
    return f"{tenant_name}/{agent_name}"


def mount_path(tenant_name: str, agent_name: str) -> str:
    """Where an agent's routes are mounted: `/t/<tenant>/agents/<agent>`."""
    return f"/t/{tenant_name}/agents/{agent_name}"


def render_spec(spec: Any, params: Mapping[str, Any], path: str = "$.spec") -> Any:
    """`spec` with `{{param}}` placeholders replaced (see the module docstring)."""
    if isinstance(spec, str):
        whole = _PLACEHOLDER.fullmatch(spec)
        if whole is not None:
            return _param(params, whole.group(1), path)

        def text(m: re.Match[str]) -> str:
            v = _param(params, m.group(1), path)
            return v if isinstance(v, str) else _json_text(v)

        return _PLACEHOLDER.sub(text, spec)
    if isinstance(spec, Mapping):
        return {k: render_spec(v, params, json_path([k], path)) for k, v in spec.items()}
    if isinstance(spec, list):
        return [render_spec(v, params, f"{path}[{i}]") for i, v in enumerate(spec)]
    return spec


def _param(params: Mapping[str, Any], name: str, path: str) -> Any:
    if name not in params:
        raise Invalid(f"{path}: template placeholder {{{{{name}}}}} has no param {name!r}", path)
    return params[name]


def _json_text(v: Any) -> str:
    import orjson

    return orjson.dumps(v).decode()


def _pydantic_invalid(e: ValidationError, root: str) -> Invalid:
    first = e.errors(include_url=False)[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and "[" in p)]
    path = json_path(loc, root)
    return Invalid(f"{path}: {str(first['msg']).removeprefix('Value error, ')}", path)


_RUNTIME_ONLY = (
    "command",
    "app",
    "python_path",
    "env",
    "readiness",
    "network",
    "seccomp",
    "isolation",
)


_ACTIVATION_TIMEOUT = 30.0
"""Seconds a request waits for a process agent's first replica (scale from zero)."""


def _pool(
    model: TemplateModel,
    body: Mapping[str, Any],
    params: Mapping[str, Any],
    endpoints: Sequence[str] | None = None,
) -> PoolConfig:
    raw = body.get("spec")
    if not isinstance(raw, Mapping):
        raise Invalid("$.template.spec: the template has no spec", "$.template.spec")
    rendered = render_spec(raw, params, "$.template.spec")
    if rendered.pop("kind", None) == "process":
        # the pool's endpoints are the runtime's ready replicas (`unix:/…` sockets)
        for k in _RUNTIME_ONLY:
            rendered.pop(k, None)
        rendered["endpoints"] = [{"url": e} for e in endpoints or ()]
        # with no ready replica (starting, or scaled to zero) requests wait for one while the
        # runtime starts it, instead of failing
        rendered.setdefault("activation", {"timeout": _ACTIVATION_TIMEOUT})
    try:
        return PoolConfig.model_validate(rendered)
    except ValidationError as e:
        raise _pydantic_invalid(e, "$.template.spec") from None


def _mounted(match: Match, mount: str) -> Match:
    def under(rel: str | None) -> str | None:
        if rel is None:
            return None
        return mount if rel == "/" else mount + rel

    return match.model_copy(
        update={
            "path_prefix": under(match.path_prefix),
            "path": under(match.path),
            "path_template": under(match.path_template),
        }
    )


def check_routes(raw: object, root: str = "$.routes") -> builtins.list[RouteDefault]:
    """Validate an agent's route list (template `routes` shape); `Invalid` names the path."""
    if not isinstance(raw, list):
        raise Invalid(f"{root}: routes must be a list", root)
    if len(raw) > 64:
        raise Invalid(f"{root}: at most 64 routes", root)
    out = []
    for i, r in enumerate(raw):
        at = f"{root}[{i}]"
        try:
            rd = RouteDefault.model_validate(r)
        except ValidationError as e:
            raise _pydantic_invalid(e, at) from None
        if rd.roles and rd.auth != "required":
            raise Invalid(f"{at}.roles: roles need auth: required on the route", f"{at}.roles")
        rl = rd.rate_limit
        if rd.auth == "none" and rl is not None and rl.key in ("api_key", "tenant"):
            path = f"{at}.rate_limit.key"
            raise Invalid(f"{path}: key {rl.key!r} needs auth: required on the route", path)
        out.append(rd)
    return out


def gateway_parts(
    tenant_name: str,
    agent_name: str,
    template_body: Mapping[str, Any],
    params: Mapping[str, Any],
    routes: Sequence[Any],
    *,
    model: TemplateModel | None = None,
    endpoints: Sequence[str] | None = None,
) -> tuple[str, PoolConfig, builtins.list[Route]]:
    """(pool name, pool settings, gateway routes) of an agent; `Invalid` names the bad field.

    `routes` are the agent's own routes; empty means the template's defaults (or a catch-all).
    `endpoints` are a `process` agent's ready replicas (`RoutableAgent.endpoints`).
    """
    if model is None:
        try:
            model = TemplateModel.model_validate(template_body)
        except ValidationError as e:
            raise _pydantic_invalid(e, "$.template") from None
    name = gateway_name(tenant_name, agent_name)
    mount = mount_path(tenant_name, agent_name)
    pool = _pool(model, template_body, params, endpoints)
    if routes:
        defaults = check_routes(list(routes))
    elif model.routes:
        defaults = list(model.routes)
    else:
        defaults = [RouteDefault.model_validate(_DEFAULT_ROUTE)]
    lim = model.limits
    out = []
    for i, rd in enumerate(defaults):
        out.append(
            Route(
                id=f"{name}/{i}",
                match=_mounted(rd.match, mount),
                agent=name,
                strip_prefix=rd.strip_prefix,
                rate_limit=rd.rate_limit or lim.rate_limit,
                priority=rd.priority,
                auth=rd.auth,
                roles=rd.roles,
                signature=rd.signature,
                retry_non_idempotent=rd.retry_non_idempotent,
                max_body=rd.max_body if rd.max_body is not None else lim.max_body,
            )
        )
    return name, pool, out


# --- the factory -------------------------------------------------------------------------------


def split_ref(template_ref: str) -> tuple[str, str]:
    """`name@ref` → (name, ref); a bare name means the highest version (`*`)."""
    name, sep, ref = template_ref.strip().partition("@")
    if not name:
        raise Invalid("template must be 'name@range', 'name@tag' or 'name@sha256:…'", "$.template")
    return name, (ref.strip() or "*") if sep else "*"


def _actor(p: Principal) -> str:
    return "system" if p.system else f"key:{p.key_id}"


class AgentFactory:
    """Create, list, get, update and delete agents of a tenant (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        registry_for: Callable[[TenantScope], RegistryService],
        policy: PolicyEvaluator | None,
        audit: AuditLog,
        *,
        drain_timeout: float = 30.0,
        drain_poll: float = 0.05,
        history: AgentHistory | None = None,
        changes: ChangeFeed | None = None,
        runtime: Any = None,
    ) -> None:
        self.store = store
        self.history = history
        self.changes = changes
        self.runtime = runtime  # agentgate.runtime.manager.Runtime: runs `process` templates
        self.registry_for = registry_for
        self.policy = policy
        self.audit = audit
        self.drain_timeout = drain_timeout
        self.drain_poll = drain_poll
        self._drains: dict[str, asyncio.Task[None]] = {}

    async def _lifecycle(self, scope: TenantScope, agent: Agent, type: str, actor: str) -> None:
        """Append the lifecycle event and publish the change. After the store write on
        purpose: the agents table is the source of truth, so a failure here is logged, not
        raised (the change still reaches gateways by store polling)."""
        doc = None if type == "agent.deleted" else agent_document(agent)
        if self.history is not None:
            try:
                await self.history.record(
                    scope.tenant_id, agent.name, type, {"agent": doc}, meta={"actor": actor}
                )
            except Exception:
                log.exception("recording %s of agent %s failed", type, agent.name)
        if self.changes is not None:
            await self.changes.publish(
                Change.of(type, scope.tenant_id, f"agent:{agent.name}", {"agent": doc})
            )

    # ---- reads ----
    async def _tenant_name(self, scope: TenantScope) -> str:
        return (await self.store.system.tenants.get(scope.tenant_id)).name

    async def _record(
        self,
        scope: TenantScope,
        agent: Agent,
        tenant_name: str | None = None,
        template: TemplateRecord | None = None,
        decision: dict[str, Any] | None = None,
        warning: str | None = None,
    ) -> AgentRecord:
        tn = tenant_name or await self._tenant_name(scope)
        t = template or await scope.templates.get_by_digest(agent.template_digest)
        runtime = None
        if self.runtime is not None and is_process(t.body):
            runtime = {"status": await self.runtime.status(agent)}
        return AgentRecord(
            agent=agent,
            tenant_name=tn,
            template_name=t.name,
            template_version=t.version,
            gateway_agent=gateway_name(tn, agent.name),
            mount=mount_path(tn, agent.name),
            decision=decision,
            warning=warning,
            runtime=runtime,
        )

    async def get(self, scope: TenantScope, principal: Principal, name: str) -> AgentRecord:
        """One agent by name (NotFound also for other tenants' agents)."""
        require(principal, "agent:read")
        return await self._record(scope, await scope.agents.get(name))

    async def list(
        self, scope: TenantScope, principal: Principal, *, limit: int = 1000, offset: int = 0
    ) -> builtins.list[AgentRecord]:
        """The tenant's agents by name."""
        require(principal, "agent:read")
        tn = await self._tenant_name(scope)
        templates: dict[str, TemplateRecord] = {}
        out = []
        for a in await scope.agents.list(limit=limit, offset=offset):
            t = templates.get(a.template_digest)
            if t is None:
                t = templates[a.template_digest] = await scope.templates.get_by_digest(
                    a.template_digest
                )
            out.append(await self._record(scope, a, tn, t))
        return out

    # ---- policy ----
    async def _usage(self, scope: TenantScope, quotas: Mapping[str, Any]) -> dict[str, Any]:
        n, replicas = await scope.agents.usage()
        usage: dict[str, Any] = {"agents": n, "replicas": replicas}
        if "cpu" in quotas or "memory_mb" in quotas:
            cpu = mem = 0.0
            res: dict[str, tuple[float, float]] = {}
            for a in await scope.agents.list(limit=100_000):
                if a.template_digest not in res:
                    t = await scope.templates.get_by_digest(a.template_digest)
                    r = TemplateModel.model_validate(t.body).resources
                    res[a.template_digest] = (r.cpu, r.memory / 2**20)
                c, m = res[a.template_digest]
                cpu += c * a.replicas
                mem += m * a.replicas
            usage["cpu"], usage["memory_mb"] = cpu, mem
        return usage

    async def _decide(
        self,
        stages: Sequence[str],
        scope: TenantScope,
        principal: Principal,
        template: TemplateRecord,
        model: TemplateModel,
        signature: dict[str, Any],
        request: dict[str, Any],
        *,
        verify_error: Invalid | None,
        target: str,
    ) -> dict[str, Any] | None:
        if self.policy is None:
            if verify_error is not None:
                raise verify_error
            return None
        tenant = await self.store.system.tenants.get(scope.tenant_id)
        quotas = {k: v for k, v in tenant.quotas.items() if isinstance(v, int | float)}
        doc = {
            "template": {
                "name": template.name,
                "version": template.version,
                "digest": template.digest,
                "capabilities": list(template.capabilities),
                "resources": {
                    "cpu": model.resources.cpu,
                    "memory_mb": model.resources.memory / 2**20,
                },
            },
            "signature": signature,
            "tenant": {"id": tenant.id, "name": tenant.name},
            "caller": {"id": _actor(principal), "roles": sorted(principal.roles)},
            "quotas": quotas,
            "usage": await self._usage(scope, quotas),
            "request": request,
        }
        decision: dict[str, Any] = {}
        await self.policy.ensure_tenant(scope.tenant_id, scope.policies)
        for stage in stages:
            d = self.policy.evaluate(stage, doc, tenant_id=scope.tenant_id)
            if inspect.isawaitable(d):
                d = await d
            decision = _decision_dict(d)
            if not decision.get("allow", False):
                await self.audit.record(
                    scope,
                    actor=_actor(principal),
                    action=f"agent.{stage}",
                    target=target,
                    outcome="denied",
                    decision=decision,
                    details={"template": template.digest},
                )
                raise PolicyDenied(_denied_text(decision), decision)
        return decision

    async def _verify(
        self, registry: RegistryService, t: TemplateRecord
    ) -> tuple[dict[str, Any], Invalid | None]:
        try:
            v = await registry.verify(t)
        except Invalid as e:
            sigs = await registry.scope.signatures.list(t.digest)
            return {"verified": False, "key_id": sigs[0].keyid if sigs else None}, e
        return {"verified": True, "key_id": v.keyids[0] if v.keyids else None}, None

    # ---- writes ----
    async def create(
        self,
        scope: TenantScope,
        principal: Principal,
        template_ref: str,
        params: Mapping[str, Any] | None = None,
        replicas: int = 1,
        routes: Sequence[Any] | None = None,
        name: str | None = None,
    ) -> AgentRecord:
        """Create an agent from `name@range|tag|version|sha256:…` and publish its routes."""
        require(principal, "agent:create")
        params = dict(params or {})
        _check_replicas(replicas)
        tname, ref = split_ref(template_ref)
        agent_name = name or tname
        if not _AGENT_NAME.match(agent_name):
            raise Invalid(
                f"name must be 1-63 of a-z 0-9 _ - starting and ending with a letter or digit,"
                f" got {agent_name!r}",
                "$.name",
            )
        registry = self.registry_for(scope)
        resolved = await registry.resolve(tname, ref)
        t = resolved.template
        tpl = parse_template(t.body)
        tpl.validate_params(params, "$.params")
        route_list = list(routes or [])
        tenant_name = await self._tenant_name(scope)
        process = self._check(tpl, t.body, params, agent_name, tenant_name, replicas, route_list)
        sig, err = await self._verify(registry, t)
        target = f"agent:{agent_name}"
        decision = await self._decide(
            ("create", "deploy"),
            scope,
            principal,
            t,
            tpl.model,
            sig,
            {"replicas": replicas, "previous_replicas": 0},
            verify_error=err,
            target=target,
        )
        agent = await scope.agents.create(
            agent_name,
            template_ref=template_ref,
            template_digest=t.digest,
            params=params,
            replicas=replicas,
            routes=route_list,
            state="starting" if process else "active",
        )
        if process:
            # claims warm replicas (or starts them) and publishes their sockets; a replica that
            # cannot start leaves the agent `failed` with its stderr, nothing running, no route
            try:
                agent = await self.runtime.run(scope, agent, t.body, tenant_name)
            except BaseException:
                await scope.agents.update(agent.name, state="failed")
                raise
        await self._lifecycle(scope, agent, "agent.created", _actor(principal))
        await self.audit.record(
            scope,
            actor=_actor(principal),
            action="agent.create",
            target=target,
            outcome="success",
            decision=decision,
            details={
                "template": template_ref,
                "digest": t.digest,
                "replicas": replicas,
                **({"state": agent.state} if process else {}),
            },
        )
        return await self._record(scope, agent, tenant_name, t, decision, resolved.warning)

    def _check(
        self,
        tpl: Any,
        body: Mapping[str, Any],
        params: Mapping[str, Any],
        name: str,
        tenant_name: str,
        replicas: int,
        routes: Sequence[Any],
    ) -> bool:
        """Refuse a bad agent before anything is stored; True for a `process` agent."""
        if is_process(body):
            self._runtime_check(body, params, name, tenant_name, replicas)
            if routes:
                check_routes(list(routes))
            return True
        # builds the pool and routes now so a bad placeholder or route is refused first
        gateway_parts(tenant_name, name, body, params, routes, model=tpl.model)
        return False

    def _runtime_check(
        self,
        body: Mapping[str, Any],
        params: Mapping[str, Any],
        name: str,
        tenant_name: str,
        replicas: int,
    ) -> None:
        """Refuse a process agent before storing it: no runtime here, a bad rendered spec, or
        isolation the host cannot give."""
        if self.runtime is None:
            raise RuntimeUnavailable(
                "process templates need the agent runtime, which runs in `agentgate serve`"
            )
        spec = AgentSpec.build(
            agent_id="",
            tenant_id="",
            tenant=tenant_name,
            name=name,
            digest="",
            body=body,
            params=params,
            replicas=replicas,
        )
        self.runtime.check(spec)

    async def update(
        self,
        scope: TenantScope,
        principal: Principal,
        name: str,
        *,
        replicas: int | None = None,
        routes: Sequence[Any] | None = None,
        params: Mapping[str, Any] | None = None,
        template_ref: str | None = None,
        expected_revision: int | None = None,
    ) -> AgentRecord:
        """Change replicas, routes, params or the template (re-validated, re-verified and
        re-evaluated at stage `deploy`); a stale `expected_revision` is Conflict."""
        require(principal, "agent:update")
        current = await scope.agents.get(name)
        if current.state not in ("active", "failed"):
            raise NotFound(f"agent {name} is {current.state}")
        if replicas is not None:
            _check_replicas(replicas)
        registry = self.registry_for(scope)
        warning = None
        if template_ref is not None:
            tname, ref = split_ref(template_ref)
            resolved = await registry.resolve(tname, ref)
            t, warning = resolved.template, resolved.warning
        else:
            t = await scope.templates.get_by_digest(current.template_digest)
        tpl = parse_template(t.body)
        new_params = dict(params) if params is not None else current.params
        new_routes = list(routes) if routes is not None else current.routes
        new_replicas = replicas if replicas is not None else current.replicas
        tpl.validate_params(new_params, "$.params")
        tenant_name = await self._tenant_name(scope)
        process = self._check(tpl, t.body, new_params, name, tenant_name, new_replicas, new_routes)
        sig, err = await self._verify(registry, t)
        target = f"agent:{name}"
        decision = await self._decide(
            ("deploy",),
            scope,
            principal,
            t,
            tpl.model,
            sig,
            {"replicas": new_replicas, "previous_replicas": current.replicas},
            verify_error=err,
            target=target,
        )
        agent = await scope.agents.update(
            name,
            expected_revision=expected_revision,
            template_ref=template_ref,
            template_digest=t.digest if template_ref is not None else None,
            params=dict(params) if params is not None else None,
            replicas=replicas,
            routes=list(routes) if routes is not None else None,
        )
        if process:
            if params is not None or template_ref is not None or agent.state == "failed":
                agent = await self.runtime.replace(scope, agent, t.body, tenant_name)
            elif replicas is not None:
                await self.runtime.scale_agent(
                    scope, agent, replicas, actor=_actor(principal), reason="update: replicas"
                )
        await self._lifecycle(scope, agent, "agent.updated", _actor(principal))
        await self.audit.record(
            scope,
            actor=_actor(principal),
            action="agent.update",
            target=target,
            outcome="success",
            decision=decision,
            details={
                "digest": t.digest,
                "replicas": new_replicas,
                "changed": sorted(
                    k
                    for k, v in (
                        ("replicas", replicas),
                        ("routes", routes),
                        ("params", params),
                        ("template", template_ref),
                    )
                    if v is not None
                ),
            },
        )
        return await self._record(scope, agent, tenant_name, t, decision, warning)

    async def delete(
        self, scope: TenantScope, principal: Principal, name: str, *, wait: bool = False
    ) -> AgentRecord:
        """Start draining: routes leave the gateway at once, the row goes when nothing is in
        flight any more (or after `drain_timeout`); `wait=True` returns only then."""
        require(principal, "agent:delete")
        current = await scope.agents.get(name)
        agent = current
        if current.state != "draining":
            agent = await scope.agents.update(name, state="draining")
            await self._lifecycle(scope, agent, "agent.draining", _actor(principal))
            await self.audit.record(
                scope,
                actor=_actor(principal),
                action="agent.delete",
                target=f"agent:{name}",
                outcome="draining",
                details={"digest": agent.template_digest},
            )
        if current.state in ("failed", "starting"):
            # never routed: nothing to drain in the gateway
            await self._finish(scope, agent)
            return await self._record(scope, agent)
        task = self._drains.get(agent.id)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._drain(scope, agent))
            self._drains[agent.id] = task
            aid = agent.id

            def forget(_t: asyncio.Task[None]) -> None:
                self._drains.pop(aid, None)

            task.add_done_callback(forget)
        if wait:
            await asyncio.shield(task)
        return await self._record(scope, agent)

    async def drained(self, agent: Agent) -> bool:
        """Whether a draining agent may go: every fresh gateway report says zero (at least one
        report), or its drain began `drain_timeout` ago."""
        started = agent.updated_at
        if self.store.clock() >= started + self.drain_timeout:
            return True
        counts = await self.store.system.agents.inflight(agent.id, started)
        return bool(counts) and not any(counts)

    async def _drain(self, scope: TenantScope, agent: Agent) -> None:
        try:
            # polled: the reports come from other processes through the store
            while True:
                if await self.drained(agent):
                    break
                await asyncio.sleep(self.drain_poll)
            await self._finish(scope, agent)
        except NotFound:
            pass  # deleted meanwhile (another control-plane process, or the tenant)
        except Exception:
            log.exception("draining agent %s failed; reap() retries", agent.id)

    async def _finish(self, scope: TenantScope, agent: Agent) -> None:
        now = await scope.agents.get_by_id(agent.id)
        if now.state != "draining":
            return
        if self.runtime is not None:
            await self.runtime.remove(now)  # drains the replicas (no-op for http agents)
        await scope.agents.delete(agent.name)
        await self._lifecycle(scope, now, "agent.deleted", "system")
        await self.store.system.agents.clear_inflight(agent.id)
        await self.audit.record(
            scope,
            actor="system",
            action="agent.deleted",
            target=f"agent:{agent.name}",
            outcome="success",
        )

    async def reap(self) -> int:
        """Delete every drained agent of every tenant (call at control-plane start and
        periodically: drains survive restarts this way); returns how many went."""
        n = 0
        for a in await self.store.system.agents.draining():
            if a.id in self._drains or not await self.drained(a):
                continue
            await self._finish(self.store.scoped(a.tenant_id), a)
            n += 1
        return n

    async def close(self) -> None:
        """Stop waiting for drains (rows stay `draining`; `reap` finishes them later)."""
        for t in list(self._drains.values()):
            t.cancel()
        self._drains.clear()


def _check_replicas(replicas: int) -> None:
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise Invalid(f"replicas must be an integer, got {replicas!r}", "$.replicas")
    if not 0 <= replicas <= MAX_REPLICAS:
        raise Invalid(f"replicas must be 0..{MAX_REPLICAS}, got {replicas}", "$.replicas")


def _decision_dict(d: Any) -> dict[str, Any]:
    if isinstance(d, Mapping):
        return dict(d)
    as_dict = getattr(d, "as_dict", None)
    if callable(as_dict):
        out = as_dict()
        if isinstance(out, Mapping):
            return dict(out)
    return {"allow": bool(getattr(d, "allow", False))}


def _denied_text(decision: Mapping[str, Any]) -> str:
    reasons = decision.get("reasons") or decision.get("deny") or []
    msgs = [
        str(r.get("message") or r.get("msg") or r) if isinstance(r, Mapping) else str(r)
        for r in reasons
    ]
    return "denied by policy: " + ("; ".join(msgs) if msgs else "no rule allowed it")
