"""A bus consumer in its own process, for the kill tests: fetches `batch` messages of `topic`,
acks the first `ack` of them, prints their values as one JSON line, then waits to be killed.
`killed_consumer` runs it and kills it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from agentgate.bus import BusSettings, TopicSettings, open_bus


async def killed_consumer(
    backend: str, connection: dict[str, Any], topic: str, group: str, batch: int, ack: int
) -> list[str]:
    """Values a consumer process fetched (`batch`) and partly acked (`ack`) before SIGKILL."""
    conn = connection.get("redis_url") or connection["kafka_bootstrap"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        backend,
        conn,
        topic,
        group,
        str(batch),
        str(ack),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout is not None
        fetched: list[str] = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    return fetched


async def main() -> None:
    backend, conn, topic, group, batch, ack = sys.argv[1:7]
    kw = {"redis_url": conn} if backend == "redis" else {"kafka_bootstrap": conn}
    settings = BusSettings(
        defaults=TopicSettings(visibility_timeout=2.0, retry_base=0.05, retry_max=0.2),
        kafka_session_timeout=1.0,
        **kw,  # type: ignore[arg-type]
    )
    bus = open_bus(settings, backend)  # type: ignore[arg-type]
    await bus.start()
    c = bus.consumer(topic, group, name="doomed")
    got = []
    while len(got) < int(batch):
        got += await c.fetch(max_messages=int(batch) - len(got), wait=1.0)
    await c.ack(*got[: int(ack)])
    print(json.dumps([m.value.decode() for m in got]), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
