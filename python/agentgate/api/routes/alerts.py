"""`/api/alerts/…`: rules CRUD, active alerts, history, stats, acknowledge, silences, channels
and "send test".

Reads need `agent:read`; changing rules, silences and channels and acknowledging need
`agent:update` (admin, operator). Channel settings are shown with their secrets redacted.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agentgate.api.problems import BadRequest
from agentgate.api.routes._common import Context, body, json, query_float, query_int
from agentgate.api.routes.observe import check_rule_agent
from agentgate.errors import AgentgateError, Invalid
from agentgate.observe.alerts.channels import DeliveryError, payload, redacted, send
from agentgate.observe.alerts.manager import channel_from
from agentgate.observe.alerts.rules import Rule
from agentgate.observe.service import ObserveService
from agentgate.registry.template import json_path

__all__ = ["routes"]


class Matcher(BaseModel):
    """A label matcher of a silence."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000)
    regex: bool = False
    equal: bool = True


class SilenceIn(BaseModel):
    """A silence: matchers and a time window."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    starts_at: float | None = None
    ends_at: float | None = None
    duration: float | None = Field(default=None, gt=0, le=366 * 86400)
    comment: str = Field(default="", max_length=2000)


class ChannelIn(BaseModel):
    """A channel's kind and settings."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    config: dict[str, Any]


class AckIn(BaseModel):
    """Optional note with an acknowledgement."""

    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=2000)


async def _rule_body(request: Request, name: str | None) -> Rule:
    raw = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        from agentgate.api.problems import UnsupportedMediaType

        raise UnsupportedMediaType("send application/json")
    import orjson

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise Invalid("body must be a JSON object", "$")
    data.pop("builtin", None)
    if name is not None and data.setdefault("name", name) != name:
        raise Invalid("name in the body differs from the path", "$.name")
    try:
        return Rule.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ["for" if p == "for_" else p for p in err["loc"]]
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise Invalid(msg, json_path(loc)) from None


def routes(ctx: Context, svc: ObserveService) -> list[Route]:
    """The alert routes."""
    am = svc.alerts

    async def list_rules(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        # the system tenant may have been bootstrapped after start, before the first flush
        await svc.ensure_defaults()
        return json(await am.rules(p.tenant_id))

    async def create_rule(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        rule = await _rule_body(request, None)
        await check_rule_agent(ctx, p, rule.agent)
        try:
            await am.rule(p.tenant_id, rule.name)
        except AgentgateError:
            pass
        else:
            from agentgate.errors import Conflict

            raise Conflict(f"alert rule {rule.name!r} exists: PUT /api/alerts/rules/{rule.name}")
        await am.put_rule(p.tenant_id, rule)
        await ctx.audit(p, "alerts.rule.create", rule.name, "ok")
        return json(await am.rule(p.tenant_id, rule.name), status=201)

    async def get_rule(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        return json(await am.rule(p.tenant_id, request.path_params["name"]))

    async def put_rule(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        rule = await _rule_body(request, name)
        await check_rule_agent(ctx, p, rule.agent)
        await am.put_rule(p.tenant_id, rule)
        await ctx.audit(p, "alerts.rule.put", name, "ok")
        return json(await am.rule(p.tenant_id, name))  # 200 whether created or replaced

    async def delete_rule(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        await am.delete_rule(p.tenant_id, name)
        await ctx.audit(p, "alerts.rule.delete", name, "ok")
        return Response(status_code=204)

    async def active(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        return json(await am.active(p.tenant_id))

    async def one(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        return json(await am.get(p.tenant_id, request.path_params["alert_id"]))

    async def history(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        limit = query_int(request, "limit", 200, 1, 5000)
        return json(
            await am.history(
                p.tenant_id, query_float(request, "since"), query_float(request, "until"), limit
            )
        )

    async def stats(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        return json(await am.stats(p.tenant_id, query_float(request, "since")))

    async def ack(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        aid = request.path_params["alert_id"]
        if await request.body():
            await body(request, AckIn)
        out = await am.acknowledge(p.tenant_id, aid, f"key:{p.key_id}")
        await ctx.audit(p, "alerts.acknowledge", aid, "ok")
        return json(out)

    async def list_silences(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        expired = request.query_params.get("expired") in ("1", "true")
        return json(await am.silences(p.tenant_id, expired))

    async def create_silence(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        s = await body(request, SilenceIn)
        start = s.starts_at if s.starts_at is not None else svc.clock()
        if s.ends_at is None and s.duration is None:
            raise Invalid("give ends_at or duration", "$.ends_at")
        end = s.ends_at if s.ends_at is not None else start + (s.duration or 0)
        out = await am.silence(
            p.tenant_id,
            [m.model_dump() for m in s.matchers],
            start,
            end,
            f"key:{p.key_id}",
            s.comment,
        )
        await ctx.audit(p, "alerts.silence.create", out["id"], "ok")
        return json(out, status=201)

    async def delete_silence(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        sid = request.path_params["silence_id"]
        await am.expire_silence(p.tenant_id, sid)
        await ctx.audit(p, "alerts.silence.expire", sid, "ok")
        return Response(status_code=204)

    async def list_channels(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        chans = await am.channels(p.tenant_id)
        return json([{"name": n, **redacted(c)} for n, c in chans.items()])

    async def get_channel(request: Request) -> Response:
        p = await ctx.principal(request, "agent:read")
        name = request.path_params["name"]
        return json({"name": name, **redacted(await am.channel(p.tenant_id, name))})

    async def put_channel(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        c = await body(request, ChannelIn)
        if c.kind not in ("slack", "email", "webhook", "alertmanager"):
            raise Invalid("kind must be slack, email, webhook or alertmanager", "$.kind")
        cfg = channel_from(c.kind, c.config, "$.config")
        await am.put_channel(p.tenant_id, name, cfg)
        await ctx.audit(p, "alerts.channel.put", name, "ok")
        return json({"name": name, **redacted(cfg)})  # 200 whether created or replaced

    async def delete_channel(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        await am.delete_channel(p.tenant_id, name)
        await ctx.audit(p, "alerts.channel.delete", name, "ok")
        return Response(status_code=204)

    async def test_channel(request: Request) -> Response:
        p = await ctx.principal(request, "agent:update")
        name = request.path_params["name"]
        c = await am.channel(p.tenant_id, name)
        n = am.test_notification(p.tenant_id, name)
        try:
            await send(c, payload(c.kind, n))
        except DeliveryError as e:
            await ctx.audit(p, "alerts.channel.test", name, "error:502")
            return json(
                {
                    "type": "about:blank",
                    "title": "Bad Gateway",
                    "status": 502,
                    "detail": f"the channel did not take the test notification: {e}",
                },
                status=502,
                headers={"content-type": "application/problem+json"},
            )
        await ctx.audit(p, "alerts.channel.test", name, "ok")
        return json({"sent": True, "channel": name, "kind": c.kind})

    return [
        Route("/alerts/rules", list_rules, methods=["GET"]),
        Route("/alerts/rules", create_rule, methods=["POST"]),
        Route("/alerts/rules/{name}", get_rule, methods=["GET"]),
        Route("/alerts/rules/{name}", put_rule, methods=["PUT"]),
        Route("/alerts/rules/{name}", delete_rule, methods=["DELETE"]),
        Route("/alerts/active", active, methods=["GET"]),
        Route("/alerts/history", history, methods=["GET"]),
        Route("/alerts/stats", stats, methods=["GET"]),
        Route("/alerts/silences", list_silences, methods=["GET"]),
        Route("/alerts/silences", create_silence, methods=["POST"]),
        Route("/alerts/silences/{silence_id}", delete_silence, methods=["DELETE"]),
        Route("/alerts/channels", list_channels, methods=["GET"]),
        Route("/alerts/channels/{name}", get_channel, methods=["GET"]),
        Route("/alerts/channels/{name}", put_channel, methods=["PUT"]),
        Route("/alerts/channels/{name}", delete_channel, methods=["DELETE"]),
        Route("/alerts/channels/{name}/test", test_channel, methods=["POST"]),
        Route("/alerts/{alert_id}", one, methods=["GET"]),
        Route("/alerts/{alert_id}/ack", ack, methods=["POST"]),
    ]
