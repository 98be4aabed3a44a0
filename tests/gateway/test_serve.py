"""`agentgate serve` process behaviour: SIGTERM drain, SIGHUP reload, multi-worker metrics."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_process import start_gateway, stop_gateway
from upstreams import Upstream


def cfg(up: Upstream, prefix: str = "/up") -> str:
    return f"""
agents:
  up:
    endpoints: [{{url: "{up.url}"}}]
routes:
  - {{id: up, match: {{path_prefix: {prefix}}}, agent: up, strip_prefix: true}}
"""


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    u = Upstream("serve").start()
    yield u
    u.stop()


async def test_sigterm_drains_in_flight(up: Upstream, tmp_path: Path) -> None:
    g = start_gateway(cfg(up), tmp_path)
    async with aiohttp.ClientSession() as s:
        req = asyncio.create_task(s.get(f"{g.url}/up/slow-first?delay=1"))
        await asyncio.sleep(0.3)
        g.proc.send_signal(signal.SIGTERM)
        r = await req
        assert r.status == 200 and await r.text() == "late"
    assert await asyncio.to_thread(stop_gateway, g) == 0


async def test_sighup_reload_and_refusal(up: Upstream, tmp_path: Path) -> None:
    g = start_gateway(cfg(up), tmp_path)
    try:
        async with aiohttp.ClientSession() as s:
            g.config.write_text(cfg(up, "/v2"))
            g.proc.send_signal(signal.SIGHUP)
            for _ in range(100):
                async with s.get(f"{g.url}/v2/x") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("SIGHUP reload did not take")
            g.config.write_text(cfg(up, "no-slash"))
            g.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.2)
            async with s.get(f"{g.url}/v2/x") as r:
                assert r.status == 200
        out = g.output()
        assert "routes[0].match.path_prefix" in out and str(g.config) in out
    finally:
        stop_gateway(g)


async def test_metrics_totals_with_two_workers(up: Upstream, tmp_path: Path) -> None:
    g = start_gateway(cfg(up), tmp_path, workers=2)
    try:
        n = 40
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            for _ in range(n):
                async with s.get(f"{g.url}/up/x") as r:
                    assert r.status == 200
            # workers count locally and flush every 0.5 s: poll until both flushed
            total = -1.0
            for _ in range(60):
                async with s.get(f"{g.admin}/metrics") as r:
                    text = await r.text()
                lines = [
                    ln for ln in text.splitlines() if ln.startswith("agentgate_requests_total{")
                ]
                total = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
                if total >= n:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.2)  # and nothing is counted twice by later flushes
            async with s.get(f"{g.admin}/metrics") as r:
                text = await r.text()
        line = next(ln for ln in text.splitlines() if ln.startswith("agentgate_requests_total{"))
        assert total == n
        assert float(line.rsplit(" ", 1)[1]) == n
    finally:
        stop_gateway(g)
