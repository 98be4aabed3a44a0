"""Messaging for agents over HTTP: publish, consume (long-poll or SSE) with groups and ack.

    app = bus_app(bus, tenant_of)        # tenant_of(request) -> tenant id, or raises

- `POST /bus/{topic}`: the request body is the message (any bytes, at most `max_body`);
  `X-Bus-Key` sets the partition key (per-key order), `Idempotency-Key` the dedupe key.
  201 `{"id": …}`.
- `GET /bus/{topic}/messages?group=G&consumer=C&max=N&wait=S`: long-poll up to `wait` seconds
  (default 20, at most 60) for up to `max` messages (default 10, at most 500).
- `GET /bus/{topic}/stream?group=G&consumer=C`: the same as Server-Sent Events, one `message`
  event per message (`id:` is the message id); `max` / `wait` end the stream early.
- `POST /bus/{topic}/ack` `{"group": G, "consumer": C, "ids": [...]}` and
  `POST /bus/{topic}/nack` `{"group": G, "consumer": C, "id": …, "error": "…"}`.

A message comes as `{"id", "key", "headers", "attempt", "timestamp", "value"}` with `value` in
base64 (`text` too when it is UTF-8). Messages are at-least-once: unacked ones come back after
the topic's visibility timeout, nacked ones after backoff, and the DLQ is `{topic}.dlq`.

Tenant isolation: every topic lives under the caller's tenant (`tenant.<id>.<topic>` on the
bus), so one tenant can neither publish to nor read another's topics, whatever it names.
`tenant_of` says who the caller is: `api_key_tenant(store)` uses the control plane's API keys;
behind the gateway, the gateway's own authentication (and its limits and priorities) goes in.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from agentgate.api.problems import exception_handlers
from agentgate.bus import Bus, BusError, BusUnavailable, Consumer, Message, check_topic
from agentgate.errors import AgentgateError, Invalid, NotFound

__all__ = ["api_key_tenant", "bus_app", "message_json"]

TenantOf = Callable[[Request], Awaitable[str]]
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class PayloadTooLarge(AgentgateError):
    """The message is larger than the bus accepts."""

    status = 413
    title = "Payload too large"


class BusDown(AgentgateError):
    """The broker did not answer in time."""

    status = 503
    title = "Bus unavailable"


def api_key_tenant(store: Any) -> TenantOf:
    """`tenant_of` from the control plane's API keys (Bearer or X-API-Key)."""
    from agentgate.api import auth

    async def tenant_of(request: Request) -> str:
        return (await auth.principal(request, store, None)).tenant_id

    return tenant_of


def message_json(m: Message) -> dict[str, Any]:
    """The JSON form of a delivered message."""
    try:
        text: str | None = m.value.decode()
    except UnicodeDecodeError:
        text = None
    return {
        "id": m.id,
        "key": m.key,
        "headers": dict(m.headers),
        "attempt": m.attempt,
        "timestamp": m.timestamp,
        "value": base64.b64encode(m.value).decode(),
        "text": text,
    }


def _name(value: str | None, what: str, default: str | None = None) -> str:
    v = value if value is not None else default
    if v is None or not 0 < len(v) <= 100 or not set(v) <= _NAME_CHARS:
        raise Invalid(f"{what} must be 1-100 of letters, digits, '.', '_', '-'", f"$.{what}")
    return v


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    try:
        v = default if raw is None else int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer", f"$.query.{name}") from None
    if not lo <= v <= hi:
        raise Invalid(f"{name} must be {lo}..{hi}", f"$.query.{name}")
    return v


def _json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class _Members:
    """The consumers this process serves, by (tenant, topic, group, name), with what each has
    delivered and not yet seen acked; the least recently used go first past `cap`."""

    def __init__(self, bus: Bus, cap: int) -> None:
        self.bus = bus
        self.cap = cap
        self._c: OrderedDict[tuple[str, str, str], tuple[Consumer, dict[str, Message]]] = (
            OrderedDict()
        )
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def get(self, topic: str, group: str, name: str) -> tuple[Consumer, dict[str, Message]]:
        k = (topic, group, name)
        hit = self._c.get(k)
        if hit is None:
            hit = self._c[k] = (self.bus.consumer(topic, group, name=name), {})
            while len(self._c) > self.cap:
                _, (old, _) = self._c.popitem(last=False)
                await old.close()
        self._c.move_to_end(k)
        return hit

    def lock(self, topic: str, group: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((topic, group, name), asyncio.Lock())

    async def close(self) -> None:
        for c, _ in self._c.values():
            await c.close()
        self._c.clear()


def bus_app(
    bus: Bus,
    tenant_of: TenantOf,
    *,
    max_body: int = 1024 * 1024,
    max_consumers: int = 10_000,
) -> Starlette:
    """The messaging app (routes under `/bus`)."""
    members = _Members(bus, max_consumers)

    async def topic_of(request: Request) -> str:
        tenant = await tenant_of(request)
        name = request.path_params["topic"]
        try:
            check_topic(name)
        except BusError as e:
            raise Invalid(str(e), "$.topic") from None
        return f"tenant.{tenant}.{name}"

    async def publish(request: Request) -> Response:
        topic = await topic_of(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise PayloadTooLarge(f"message larger than {max_body} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise PayloadTooLarge(f"message larger than {max_body} bytes")
            chunks.append(chunk)
        key = request.headers.get("x-bus-key")
        dedupe = request.headers.get("idempotency-key")
        try:
            mid = await bus.publish(topic, b"".join(chunks), key=key, dedupe_key=dedupe)
        except BusUnavailable as e:
            raise BusDown(str(e)) from None
        return _json_response({"id": mid}, 201)

    async def _fetch(request: Request, topic: str, max_n: int, wait: float) -> list[Message]:
        group = _name(request.query_params.get("group"), "group")
        name = _name(request.query_params.get("consumer"), "consumer", "http")
        async with members.lock(topic, group, name):
            consumer, pending = await members.get(topic, group, name)
            try:
                got = await consumer.fetch(max_messages=max_n, wait=wait)
            except BusUnavailable as e:
                raise BusDown(str(e)) from None
            for m in got:
                pending[m.id] = m
        return got

    async def messages(request: Request) -> Response:
        topic = await topic_of(request)
        max_n = _int(request, "max", 10, 1, 500)
        wait = _int(request, "wait", 20, 0, 60)
        got = await _fetch(request, topic, max_n, wait)
        return _json_response({"messages": [message_json(m) for m in got]})

    async def stream(request: Request) -> Response:
        topic = await topic_of(request)
        limit = _int(request, "max", 0, 0, 1_000_000)
        idle = _int(request, "wait", 0, 0, 3600)
        # refuse bad names with a problem before the 200 starts the stream
        _name(request.query_params.get("group"), "group")
        _name(request.query_params.get("consumer"), "consumer", "http")

        async def events() -> AsyncIterator[bytes]:
            sent = 0
            last = time.monotonic()
            yield b": connected\n\n"
            while not limit or sent < limit:
                want = min(100, limit - sent) if limit else 100
                got = await _fetch(request, topic, want, 1.0)
                if not got:
                    if idle and time.monotonic() - last >= idle:
                        return
                    yield b": keep-alive\n\n"
                    continue
                last = time.monotonic()
                for m in got:
                    yield b"event: message\nid: %s\ndata: %s\n\n" % (
                        m.id.encode(),
                        orjson.dumps(message_json(m)),
                    )
                    sent += 1

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _settle(request: Request, nack: bool) -> Response:
        topic = await topic_of(request)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise Invalid("body must be JSON", "$") from None
        if not isinstance(body, dict):
            raise Invalid("body must be a JSON object", "$")
        group = _name(body.get("group"), "group")
        name = _name(body.get("consumer"), "consumer", "http")
        ids = [body.get("id")] if nack else body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise Invalid("ids must be a non-empty list of message ids", "$.ids")
        consumer, pending = await members.get(topic, group, name)
        found = [pending.pop(i) for i in ids if i in pending]
        if len(found) != len(ids):
            raise NotFound("no such message in flight for this consumer (acked, or timed out)")
        try:
            if nack:
                error = body.get("error")
                if not isinstance(error, str) or not error:
                    raise Invalid("error must be a non-empty string", "$.error")
                await consumer.nack(found[0], error)
            else:
                await consumer.ack(*found)
        except BusUnavailable as e:
            raise BusDown(str(e)) from None
        return Response(status_code=204)

    async def ack(request: Request) -> Response:
        return await _settle(request, False)

    async def nack(request: Request) -> Response:
        return await _settle(request, True)

    app = Starlette(
        routes=[
            Route("/bus/{topic}", publish, methods=["POST"]),
            Route("/bus/{topic}/messages", messages, methods=["GET"]),
            Route("/bus/{topic}/stream", stream, methods=["GET"]),
            Route("/bus/{topic}/ack", ack, methods=["POST"]),
            Route("/bus/{topic}/nack", nack, methods=["POST"]),
        ],
        exception_handlers=exception_handlers(),
    )
    app.state.members = members
    return app
