"""`/api/agents/{name}/replicas`, `/api/agents/{name}/scale`, `/api/runtime/capabilities`: the
replicas the agent runtime runs for `process` agents, scaling by hand, what the host allows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.problems import Unavailable
from agentgate.api.routes._common import Context, audited, body, json

__all__ = ["CapabilitiesOut", "ReplicasOut", "ScaleIn", "ScaleOut", "routes"]


class ScaleIn(BaseModel):
    """Set an agent's replica count (clamped to the template's min/max)."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(ge=0, le=10_000)
    reason: str = Field(default="manual", max_length=200)


class ScaleOut(BaseModel):
    """The replica count now set."""

    agent: str
    replicas: int


class ReplicaOut(BaseModel):
    """One replica: state, process, socket, restarts, accounting."""

    id: str
    state: str
    pid: int | None
    socket: str
    endpoint: str
    restarts: int
    uid: int | None
    isolation: list[str]
    uptime: float | None
    cpu_seconds: float | None
    memory_bytes: int | None
    oom_kills: int


class ReplicasOut(BaseModel):
    """An agent's replicas, and why it is not running when it is not."""

    agent: str
    state: str
    status: dict[str, Any] | None
    replicas: list[ReplicaOut]


class MechanismOut(BaseModel):
    """Whether the host allows a mechanism, and the kernel's word on it."""

    available: bool
    detail: str


class CapabilitiesOut(BaseModel):
    """The isolation mechanisms this host allows replicas."""

    backend: str
    mechanisms: dict[str, MechanismOut]


def routes(ctx: Context, runtime: Any) -> list[Route]:
    """The runtime routes (`runtime` is an `agentgate.runtime.manager.Runtime` or None)."""

    def rt() -> Any:
        if runtime is None:
            raise Unavailable("the agent runtime is not running in this process")
        return runtime

    async def replicas(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        scope = ctx.scope(p)
        agent = await scope.agents.get(request.path_params["name"])
        r = rt()
        out = {
            "agent": agent.name,
            "state": agent.state,
            "status": await r.status(agent),
            "replicas": r.replicas(agent),
        }
        return json(out)

    async def scale(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        b = await body(request, ScaleIn)
        scope = ctx.scope(p)
        r = rt()

        async def go() -> int:
            agent = await scope.agents.get(name)
            actor = "system" if p.system else f"key:{p.key_id}"
            n: int = await r.scale_agent(scope, agent, b.replicas, actor=actor, reason=b.reason)
            return n

        got = await audited(ctx, p, "agent.scale", f"agent:{name}", go, errors_only=True)
        return json({"agent": name, "replicas": got})

    async def capabilities(request: Request) -> Response:
        await ctx.principal(request, "agent:read")
        r = rt()
        mech = {
            k: {"available": v.available, "detail": v.detail} for k, v in r.capabilities.items()
        }
        return json({"backend": r.backend_name, "mechanisms": mech})

    return [
        Route("/agents/{name}/replicas", replicas, methods=["GET"]),
        Route("/agents/{name}/scale", scale, methods=["POST"]),
        Route("/runtime/capabilities", capabilities, methods=["GET"]),
    ]
