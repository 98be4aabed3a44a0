"""The runtime as the control plane uses it: agents of `process` templates, on a backend.

    runtime = Runtime(store, Supervisor(settings, repo=..., ...), audit=ScopeAudit(seal))
    await runtime.start()                       # probes nothing itself; adopts stored agents
    await runtime.run(scope, agent, body, tenant_name)   # called by AgentFactory.create
    await runtime.scale_agent(scope, agent, 3, actor="key:…", reason="manual")
    await runtime.remove(agent)                 # drained

Backends: the local `Supervisor` (default) and `RayBackend` (`runtime: {backend: ray}`); both
have `start/close/check/start_agent/scale/stop_agent/replicas`.

The autoscaler ticks every 2 s over the agents that have `scaling.target_concurrency` (or
`scale_to_zero_after`), reading load from a `LoadSource`; scaling decisions and their reasons
go to the tenant's audit trail. `activate(tenant, agent)` is the scale-from-zero hook for the
data plane: a request for an agent with no replica waits for it instead of being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agentgate.errors import AgentgateError, Invalid, NotFound
from agentgate.runtime.autoscaler import KpaSettings, Load, LoadSource, ScalerState, decide
from agentgate.runtime.capabilities import Capability
from agentgate.runtime.factory import AuditLog
from agentgate.runtime.forecast import WeeklyProfile
from agentgate.runtime.spec import AgentSpec, is_process
from agentgate.runtime.supervisor import StartResult
from agentgate.store import Agent, Store, TenantScope
from agentgate.store.runtime import RuntimeRepo

__all__ = ["Backend", "DataPlaneLoad", "Runtime"]

log = logging.getLogger("agentgate.runtime")


class Backend(Protocol):
    """What runs replicas: the local supervisor or Ray."""

    caps: dict[str, Capability]

    async def start(self) -> None:
        """Get ready."""
        ...

    async def close(self) -> None:
        """Stop everything."""
        ...

    def check(self, spec: AgentSpec) -> None:
        """Refuse what the host cannot isolate as required."""
        ...

    async def start_agent(self, spec: AgentSpec) -> StartResult:
        """Start the agent's initial replicas; `failed` leaves nothing running."""
        ...

    async def scale(self, agent_id: str, n: int) -> int:
        """Set the replica count (clamped); returns it."""
        ...

    async def stop_agent(self, agent_id: str) -> None:
        """Drain and stop every replica."""
        ...

    def replicas(self, agent_id: str) -> list[dict[str, Any]]:
        """Replicas with state, pid, socket, restarts, CPU, memory."""
        ...


class DataPlaneLoad:
    """`LoadSource` over the data plane in this process: its per-agent in-flight and queued
    counts (`Gateway.agents`)."""

    def __init__(self, agents: Callable[[], Sequence[Any]]) -> None:
        self._agents = agents

    def load(self) -> Mapping[str, Load]:
        """gateway pool name → Load."""
        return {a.name: Load(int(a.in_flight), int(sum(a.queued.values()))) for a in self._agents()}


class Runtime:
    """Agents of process templates on a backend, with autoscaling (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        *,
        audit: AuditLog | None = None,
        load: LoadSource | None = None,
        kpa: KpaSettings | None = None,
        adopt: bool = True,
        name: str = "local",
    ) -> None:
        self.store = store
        self.backend_name = name
        self.backend = backend
        self.repo = RuntimeRepo(store.db, store.clock)
        self.audit = audit
        self.load_source = load
        self.kpa = kpa or KpaSettings()
        self.adopt = adopt
        self.specs: dict[str, AgentSpec] = {}
        self.scalers: dict[str, ScalerState] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._activations: dict[str, asyncio.Task[None]] = {}

    @property
    def capabilities(self) -> dict[str, Capability]:
        """What the host allows (probed at start)."""
        return self.backend.caps

    async def start(self) -> None:
        """Start the backend, re-run stored agents (after a restart), start autoscaling."""
        await self.backend.start()
        if self.adopt:
            await self._adopt()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def close(self) -> None:
        """Stop autoscaling and every replica."""
        if self._ticker is not None:
            self._ticker.cancel()
        for t in self._activations.values():
            t.cancel()
        await self.backend.close()

    async def _adopt(self) -> None:
        for tenant in await self.store.system.tenants.list():
            scope = self.store.scoped(tenant.id)
            for a in await scope.agents.list(limit=100_000):
                if a.state not in ("active", "starting"):
                    continue
                t = await scope.templates.get_by_digest(a.template_digest)
                if is_process(t.body):
                    try:
                        await self.run(scope, a, t.body, tenant.name)
                    except AgentgateError as e:
                        log.error("agent %s/%s not restarted: %s", tenant.name, a.name, e)

    # ---- agents ----
    def spec_for(
        self, agent: Agent, body: Mapping[str, Any], tenant_name: str, replicas: int | None = None
    ) -> AgentSpec:
        """The runtime's view of a stored agent."""
        return AgentSpec.build(
            agent_id=agent.id,
            tenant_id=agent.tenant_id,
            tenant=tenant_name,
            name=agent.name,
            digest=agent.template_digest,
            body=body,
            params=agent.params,
            replicas=agent.replicas if replicas is None else replicas,
        )

    def check(self, spec: AgentSpec) -> None:
        """`Refused` (422, names the missing mechanisms) or `Invalid` (bad seccomp names)."""
        try:
            self.backend.check(spec)
        except ValueError as e:
            path = "$.template.spec.seccomp.deny"
            raise Invalid(f"{path}: {e}", path) from None

    async def run(
        self, scope: TenantScope, agent: Agent, body: Mapping[str, Any], tenant_name: str
    ) -> Agent:
        """Start the agent's replicas; the stored state becomes `active` or `failed` (with the
        reason and the last 50 lines of stderr in its runtime status)."""
        spec = self.spec_for(agent, body, tenant_name)
        self.check(spec)
        res = await self.backend.start_agent(spec)
        if res.state == "failed":
            await self.repo.set_status(agent.id, agent.tenant_id, "failed", res.reason, res.stderr)
            return await scope.agents.update(agent.name, state="failed")
        self.specs[agent.id] = spec
        if agent.state != "starting":  # a new agent has no failure to forget
            await self.repo.clear_status(agent.id)
        if agent.state != "active":
            return await scope.agents.update(agent.name, state="active")
        return agent

    async def remove(self, agent: Agent) -> None:
        """Drain and stop the agent's replicas and forget its runtime rows."""
        self.specs.pop(agent.id, None)
        self.scalers.pop(agent.id, None)
        await self.backend.stop_agent(agent.id)
        await self.repo.forget_agent(agent.id)

    async def replace(
        self, scope: TenantScope, agent: Agent, body: Mapping[str, Any], tenant_name: str
    ) -> Agent:
        """New params or template: stop the old replicas, start new ones."""
        await self.backend.stop_agent(agent.id)
        self.specs.pop(agent.id, None)
        return await self.run(scope, agent, body, tenant_name)

    async def scale_agent(
        self, scope: TenantScope, agent: Agent, n: int, *, actor: str, reason: str
    ) -> int:
        """Set the replica count by hand (clamped to min/max); audited with the reason."""
        if agent.id not in self.specs:
            raise NotFound(f"agent {agent.name} has no running replicas here (state {agent.state})")
        before = len(self.backend.replicas(agent.id))
        got = await self.backend.scale(agent.id, n)
        await self._audit(scope, agent.name, actor, before, got, reason)
        return got

    def replicas(self, agent: Agent) -> list[dict[str, Any]]:
        """The agent's replicas (state, pid, socket, restarts, CPU, memory)."""
        return self.backend.replicas(agent.id)

    async def status(self, agent: Agent) -> dict[str, Any] | None:
        """The recorded failure (`failed` / `crash_loop`) with stderr, if any."""
        st = await self.repo.status(agent.id)
        if st is None:
            return None
        return {"state": st.state, "reason": st.reason, "stderr": st.stderr}

    async def activate(self, tenant_name: str, agent_name: str, within: float = 60.0) -> bool:
        """Scale-from-zero hook: make sure the agent has a ready replica; True once it has."""
        spec = next(
            (s for s in self.specs.values() if s.tenant == tenant_name and s.name == agent_name),
            None,
        )
        if spec is None:
            return False
        if self.backend.replicas(spec.agent_id):
            return True
        task = self._activations.get(spec.agent_id)
        if task is None or task.done():

            async def up() -> None:
                got = await self.backend.scale(spec.agent_id, 1)
                scope = self.store.scoped(spec.tenant_id)
                await self._audit(scope, spec.name, "autoscaler", 0, got, "activation: a request")

            task = asyncio.get_running_loop().create_task(up())
            self._activations[spec.agent_id] = task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.shield(task)
        return bool(self.backend.replicas(spec.agent_id))

    async def _audit(
        self, scope: TenantScope, name: str, actor: str, before: int, after: int, reason: str
    ) -> None:
        if self.audit is None:
            return
        await self.audit.record(
            scope,
            actor=actor,
            action="agent.scale",
            target=f"agent:{name}",
            outcome="success",
            details={"from": before, "to": after, "reason": reason},
        )

    # ---- autoscaling ----
    async def tick(self, now: float | None = None, load: Mapping[str, Load] | None = None) -> None:
        """One autoscaler pass over every running agent that scales."""
        t = time.time() if now is None else now
        scaling = [
            (aid, spec)
            for aid, spec in self.specs.items()
            if spec.scaling.target_concurrency is not None
            or spec.scaling.scale_to_zero_after is not None
        ]
        if not scaling:
            return
        if load is None:
            load = self.load_source.load() if self.load_source is not None else {}
        for aid, spec in scaling:
            sc = spec.scaling
            st = self.scalers.get(aid)
            if st is None:
                st = self.scalers[aid] = ScalerState(
                    profile=WeeklyProfile(self.kpa.forecast_bucket) if sc.predictive else None
                )
            st.observe(t, load.get(f"{spec.tenant}/{spec.name}", Load()))
            current = len(
                [r for r in self.backend.replicas(aid) if r["state"] not in ("draining",)]
            )
            d = decide(
                st,
                t,
                current,
                target=float(sc.target_concurrency or 1),
                min_replicas=sc.min_replicas,
                max_replicas=sc.max_replicas,
                scale_to_zero_after=sc.scale_to_zero_after,
                predictive=sc.predictive,
                cfg=self.kpa,
            )
            if d.replicas != current:
                got = await self.backend.scale(aid, d.replicas)
                scope = self.store.scoped(spec.tenant_id)
                await self._audit(scope, spec.name, "autoscaler", current, got, d.reason)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.kpa.tick)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaler tick failed")
