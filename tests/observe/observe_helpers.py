"""Helpers of the observability tests."""

from __future__ import annotations

from typing import Any

from agentgate.observe.feed import AgentState, Deltas, RouteDelta


class ListFeed:
    """The data plane's side of the interface for alert tests: deltas handed in by the test."""

    def __init__(self) -> None:
        self.next = Deltas()

    def take(self) -> Deltas:
        out, self.next = self.next, Deltas()
        return out


def traffic(feed: ListFeed, agent: str, ok: int, errors: int, latency: float = 0.01) -> None:
    """Queue `ok` 2xx and `errors` 5xx answers of `agent` for the next flush."""
    from agentgate._core import Sketch

    sk = Sketch()
    sk.add(latency, ok + errors)
    feed.next.routes.append(RouteDelta(agent, "r", [0, 0, ok, 0, 0, errors], sk))


def agent_state(
    feed: ListFeed,
    agent: str,
    healthy: int = 1,
    endpoints: int = 1,
    queued: int = 0,
    breakers_open: int = 0,
) -> None:
    """Set the agent's current state for the next flush."""
    feed.next.agents[agent] = AgentState(agent, endpoints, healthy, breakers_open, 0, queued)


def free_port() -> int:
    """A free TCP port for the gateway's listeners (granian cannot report a port-0 bind)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoUpstream:
    """The bundled demo echo agent on its own loop thread, bound to port 0."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = 0

    def start(self) -> EchoUpstream:
        import asyncio

        from aiohttp import web

        from agentgate.gateway.demo import make_app

        async def go() -> int:
            self.runner = web.AppRunner(make_app())
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        self.port = asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        return self

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Served:
    """A running `agentgate serve` process."""

    def __init__(self, tmp: Any, config: str) -> None:
        import os
        import socket
        import subprocess
        import sys
        import time

        self.port, self.admin_port = free_port(), free_port()
        cfg = tmp / "agentgate.yaml"
        cfg.write_text(config)
        self.log = tmp / "gateway.log"
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentgate",
                "serve",
                "--config",
                str(cfg),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--admin-listen",
                f"127.0.0.1:{self.admin_port}",
                "--quiet",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
        end = time.monotonic() + 60
        for port in (self.port, self.admin_port):
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > end or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(self.log.read_text())
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
