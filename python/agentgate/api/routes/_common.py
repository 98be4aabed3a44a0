"""What every resource module shares: the services, body parsing, JSON out, audited mutations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from agentgate.api import auth
from agentgate.api.problems import BadRequest, UnsupportedMediaType
from agentgate.errors import AgentgateError, Invalid, PolicyDenied
from agentgate.registry.search import SearchIndex
from agentgate.registry.template import json_path
from agentgate.security.audit import seal as audit_seal
from agentgate.store import Seal, Store, TenantScope
from agentgate.tenancy import Principal, require

__all__ = [
    "Context",
    "audited",
    "body",
    "dump",
    "dump_list",
    "json",
    "query_float",
    "query_int",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
MAX_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class Context:
    """The services behind the API (built once by `create_api`)."""

    store: Store
    index: SearchIndex | None = None
    policy: Any = None
    factory: Any = None
    seal: Seal = audit_seal
    system_tenant: str | None = "system"
    system_tenant_id: str | None = None
    _system_resolved: bool = False
    changes: Any = None  # agentgate.bus.changes.ChangeFeed when a bus is configured

    async def principal(self, request: Request, action: str | None = None) -> Principal:
        """The caller, checked against `action` when given."""
        if not self._system_resolved and self.system_tenant is not None:
            try:
                t = await self.store.system.tenants.get_by_name(self.system_tenant)
            except AgentgateError:
                pass  # not bootstrapped yet: look again next time
            else:
                self.system_tenant_id = t.id
                self._system_resolved = True
        p = await auth.principal(request, self.store, self.system_tenant_id)
        if action is not None:
            require(p, action)
        return p

    def scope(self, p: Principal) -> TenantScope:
        """The caller's tenant scope."""
        return self.store.scoped(p.tenant_id)

    async def audit(
        self,
        p: Principal,
        action: str,
        target: str,
        outcome: str,
        *,
        decision: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        """Append one audit entry for the caller's tenant (or `tenant_id` for system acts)."""
        await self.store.system.audit.append(
            actor=f"key:{p.key_id}",
            action=action,
            target=target,
            outcome=outcome,
            seal=self.seal,
            tenant_id=tenant_id if tenant_id is not None else p.tenant_id,
            decision=decision,
            details=details,
        )


async def audited(
    ctx: Context,
    p: Principal,
    action: str,
    target: str,
    work: Callable[[], Awaitable[T]],
    *,
    details: dict[str, Any] | None = None,
    tenant_id: str | None = None,
    decision_of: Callable[[T], dict[str, Any] | None] | None = None,
    errors_only: bool = False,
) -> T:
    """Run a mutation and audit its outcome (`ok`, or `denied`/`error:<status>` then re-raise).

    `errors_only` when `work` audits its own successes and policy denials (the agent factory).
    """
    try:
        out = await work()
    except PolicyDenied as e:
        if errors_only:
            raise
        await ctx.audit(
            p, action, target, "denied", decision=e.decision, details=details, tenant_id=tenant_id
        )
        raise
    except AgentgateError as e:
        await ctx.audit(
            p, action, target, f"error:{e.status}", details=details, tenant_id=tenant_id
        )
        raise
    if errors_only:
        return out
    decision = decision_of(out) if decision_of is not None else None
    await ctx.audit(
        p, action, target, "ok", decision=decision, details=details, tenant_id=tenant_id
    )
    if ctx.changes is not None:
        await publish_change(ctx, action, tenant_id or p.tenant_id, target, details)
    return out


async def publish_change(
    ctx: Context, action: str, tenant_id: str, target: str, details: dict[str, Any] | None
) -> None:
    """Tell every gateway about a successful mutation (platform events on the bus)."""
    from agentgate.bus.changes import Change

    # secrets: the name is enough to reload; nothing about the value travels
    data = {} if action.startswith("secret.") else dict(details or {})
    await ctx.changes.publish(Change.of(action, tenant_id, target, data))


async def body(request: Request, model: type[M]) -> M:
    """The JSON body validated by `model`: 415 unless JSON, 400 if malformed, 422 with a path."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(f"send application/json, not {ctype or 'no content type'!r}")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Invalid(f"body larger than {MAX_BODY} bytes", "$")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise Invalid("body must be a JSON object", "$")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise Invalid(f"{err['msg']}", json_path(err["loc"])) from None


def json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """An `application/json` response via orjson."""
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def dump(model: type[BaseModel], obj: Any) -> dict[str, Any]:
    """A record as its response model's JSON (unknown attributes dropped)."""
    return model.model_validate(obj, from_attributes=True).model_dump(mode="json")


def dump_list(model: type[BaseModel], objs: Sequence[Any]) -> list[dict[str, Any]]:
    """Records as response JSON."""
    return [dump(model, o) for o in objs]


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi] (422 naming it otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer, got {raw!r}", f"$.query.{name}") from None
    if not lo <= v <= hi:
        raise Invalid(f"{name} must be in {lo}..{hi}, got {v}", f"$.query.{name}")
    return v


def query_float(request: Request, name: str) -> float | None:
    """An optional finite number query parameter."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise Invalid(f"{name} must be a number, got {raw!r}", f"$.query.{name}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise Invalid(f"{name} must be finite", f"$.query.{name}")
    return v
