"""Example `app` agent: a plain ASGI app (no framework) the runtime serves in a pool worker.

GET /health → 200; any other request → JSON echo of method, path and body, plus which replica
answered (`?delay=0.5` answers after half a second). Template: ../echo-app.json.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point (`app: "app:app"`)."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    delay = parse_qs(scope.get("query_string", b"").decode()).get("delay")
    if delay:
        await asyncio.sleep(float(delay[0]))
    if scope["path"] == "/health":
        out = b'{"ok": true}'
    else:
        out = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "body": body.decode("utf-8", "replace"),
                "replica": os.environ.get("AGENTGATE_REPLICA"),
                "greeting": os.environ.get("GREETING", ""),
            }
        ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": out})
