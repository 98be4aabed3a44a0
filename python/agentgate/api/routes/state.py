"""`/api/state`: agents as of a point in time, and restoring them (event-sourced history).

- `GET /api/state/agents?at=T`: every agent of the caller's tenant as it stood at T.
- `GET /api/state/agents/{name}?at=T`: one agent (its document is null if it did not exist).
- `POST /api/state/restore` `{"at": T, "agent": name?}`: write that state back as new events.

T is RFC 3339 / ISO 8601 (`2026-12-01T10:00Z`; no zone means UTC) or epoch seconds; no `at`
means now.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.routes._common import Context, audited, body, json
from agentgate.errors import Invalid
from agentgate.state import AgentHistory, restore_agents

__all__ = ["parse_time", "routes"]


def parse_time(raw: object, path: str = "$.at") -> float:
    """Epoch seconds from an ISO 8601 text or a finite number; `Invalid` naming `path`."""
    bad = Invalid(
        f"at must be an ISO 8601 time like 2026-12-01T10:00Z or epoch seconds, got {raw!r}",
        path,
    )
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise bad
    try:
        value = float(raw)
    except ValueError:
        try:
            dt = datetime.fromisoformat(str(raw))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            value = dt.timestamp()
        except (ValueError, OverflowError):
            raise bad from None
    if not math.isfinite(value):
        raise bad
    return value


class RestoreIn(BaseModel):
    """Body of POST /api/state/restore: the time, and one agent (all when omitted)."""

    model_config = ConfigDict(extra="forbid")
    at: str | float
    agent: str | None = None


class AgentStateOut(BaseModel):
    """An agent as of a time: its document (null: no agent of that name then)."""

    name: str
    agent: dict[str, Any] | None
    version: int
    at: float | None


class AgentStatesOut(BaseModel):
    """Every agent that existed at the time."""

    agents: list[AgentStateOut]


class RestoreOut(BaseModel):
    """What a restore wrote back."""

    at: float
    restored: list[AgentStateOut]


REQUESTS: tuple[type[BaseModel], ...] = (RestoreIn,)
RESPONSES: tuple[type[BaseModel], ...] = (AgentStateOut, AgentStatesOut, RestoreOut)


def routes(ctx: Context, history: AgentHistory) -> list[Route]:
    """The state routes."""

    def at_of(request: Request) -> float | None:
        raw = request.query_params.get("at")
        return None if raw is None else parse_time(raw, "$.query.at")

    async def list_(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        states = await history.all_at(p.tenant_id, at_of(request))
        return json({"agents": [s.as_dict() for s in states]})

    async def get(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        name = request.path_params["name"]
        return json((await history.state_at(p.tenant_id, name, at_of(request))).as_dict())

    async def restore(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        b = await body(request, RestoreIn)
        at = parse_time(b.at)
        target = f"agent:{b.agent}" if b.agent else "agents:*"

        async def work() -> Any:
            return await restore_agents(
                ctx.store, history, p.tenant_id, at, b.agent, actor=f"key:{p.key_id}"
            )

        written = await audited(ctx, p, "state.restore", target, work, details={"at": at})
        return json({"at": at, "restored": [s.as_dict() for s in written]})

    return [
        Route("/state/agents", list_, methods=["GET"]),
        Route("/state/agents/{name}", get, methods=["GET"]),
        Route("/state/restore", restore, methods=["POST"]),
    ]
