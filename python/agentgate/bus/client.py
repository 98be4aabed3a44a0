"""A small client for agents: publish and consume through `POST /bus/{topic}` and friends.

    async with BusClient("https://gw.example", api_key) as bus:
        await bus.publish("jobs", b'{"doc": 7}', key="doc-7", idempotency_key="job-7")
        for m in await bus.fetch("jobs", group="workers", wait=20):
            ...
            await bus.ack("jobs", "workers", m["id"])
        async for m in bus.stream("jobs", group="workers"):      # Server-Sent Events
            ...

Messages are dicts as the server sends them, with `data` (the decoded bytes) added.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import orjson

__all__ = ["BusClient", "BusClientError"]


class BusClientError(Exception):
    """The server refused a request (carries its problem+json detail)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class BusClient:
    """HTTP client of the agent bus (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        consumer: str = "http",
        transport: Any = None,
        timeout: float = 75.0,
    ) -> None:
        import httpx

        self.consumer = consumer
        self._c = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> BusClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @staticmethod
    def _check(r: Any) -> None:
        if r.status_code >= 400:
            try:
                detail = str(r.json().get("detail"))
            except ValueError:
                detail = r.text[:200]
            raise BusClientError(r.status_code, detail)

    def _params(self, group: str, max: int, wait: int) -> dict[str, str | int]:
        return {"group": group, "consumer": self.consumer, "max": max, "wait": wait}

    @staticmethod
    def _decode(m: dict[str, Any]) -> dict[str, Any]:
        return {**m, "data": base64.b64decode(m["value"])}

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Publish one message; returns its id."""
        headers = {"content-type": "application/octet-stream"}
        if key is not None:
            headers["x-bus-key"] = key
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        r = await self._c.post(f"/bus/{topic}", content=data, headers=headers)
        self._check(r)
        return str(r.json()["id"])

    async def fetch(
        self, topic: str, group: str, *, max: int = 10, wait: int = 20
    ) -> list[dict[str, Any]]:
        """Long-poll for up to `max` messages."""
        params = self._params(group, max, wait)
        r = await self._c.get(f"/bus/{topic}/messages", params=params)
        self._check(r)
        return [self._decode(m) for m in r.json()["messages"]]

    async def stream(
        self, topic: str, group: str, *, max: int = 0, wait: int = 0
    ) -> AsyncIterator[dict[str, Any]]:
        """Messages as they come (SSE); ends after `max` messages or `wait` idle seconds."""
        params = self._params(group, max, wait)
        async with self._c.stream("GET", f"/bus/{topic}/stream", params=params) as r:
            if r.status_code >= 400:
                await r.aread()
                self._check(r)
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    yield self._decode(orjson.loads(line[6:]))

    async def ack(self, topic: str, group: str, *ids: str) -> None:
        """Acknowledge messages by id."""
        body = {"group": group, "consumer": self.consumer, "ids": list(ids)}
        self._check(await self._c.post(f"/bus/{topic}/ack", json=body))

    async def nack(self, topic: str, group: str, id: str, error: str) -> None:
        """Give a message back with the error (retried, then dead-lettered)."""
        body = {"group": group, "consumer": self.consumer, "id": id, "error": error}
        self._check(await self._c.post(f"/bus/{topic}/nack", json=body))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._c.aclose()
