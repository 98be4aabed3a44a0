"""Deploy latency: from `AgentFactory.create` returning to the first request routed through a
real gateway (`agentgate serve` subprocess on the same SQLite file, store sync on).

    .venv/bin/python loadtests/control/bench_deploy.py [--n 50] [--workers 1]

Prints median and p99 of the create call itself and of create-returned → first 200 through the
gateway (target < 100 ms). Polling the gateway adds at most ~1 ms of resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from agentgate import crypto
from agentgate.policy import PolicyService
from agentgate.registry.service import RegistryService
from agentgate.registry.signing import key_id, sign_template
from agentgate.registry.template import parse_template
from agentgate.runtime import AgentFactory, ScopeAudit
from agentgate.store import AuditEntry, open_store
from agentgate.tenancy import Principal, create_key

OPERATOR = Principal(tenant_id="", key_id="bench", roles=frozenset({"operator"}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seal(e: AuditEntry) -> str:
    return hashlib.sha256(f"{e.seq}|{e.prev_hash}|{e.action}|{e.target}".encode()).hexdigest()


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"median {statistics.median(s) * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms"


async def _upstream(port: int) -> web.AppRunner:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _serve(tmp: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    cfg = tmp / "gateway.yaml"
    cfg.write_text("agents: {}\nroutes: []\n")
    env = dict(os.environ, AGENTGATE_DATA_DIR=str(tmp))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgate",
            "serve",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
            "--admin-listen",
            f"127.0.0.1:{_free_port()}",
            "--workers",
            str(workers),
            "--quiet",
        ],
        env=env,
        stdout=(tmp / "gateway.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


async def main(n: int, workers: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    store = await open_store(None, tmp)
    up_port, gw_port = _free_port(), _free_port()
    runner = await _upstream(up_port)
    tenant = await store.system.tenants.create("bench")
    scope = store.scoped(tenant.id)
    kp = crypto.generate_keypair()
    await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0.0)
    doc = {
        "name": "echo",
        "version": "1.0.0",
        "spec": {"kind": "http", "endpoints": [{"url": f"http://127.0.0.1:{up_port}"}]},
    }
    tpl = parse_template(doc)
    env = sign_template(tpl.ref, tpl.digest, kp.private_key, signed_at=time.time())
    await RegistryService(scope).publish(doc, env)
    await create_key(scope, "bench", ["viewer"])
    factory = AgentFactory(store, RegistryService, PolicyService(), ScopeAudit(_seal))
    proc = _serve(tmp, gw_port, workers)
    creates: list[float] = []
    visible: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"http://127.0.0.1:{gw_port}/") as r:
                        await r.read()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            for i in range(n):
                url = f"http://127.0.0.1:{gw_port}/t/bench/agents/a{i}/x"
                t0 = time.perf_counter()
                await factory.create(scope, OPERATOR, "echo@^1", name=f"a{i}")
                t1 = time.perf_counter()
                while True:
                    async with http.get(url) as r:
                        await r.read()
                        if r.status == 200:
                            break
                    if time.perf_counter() - t1 > 5:
                        raise RuntimeError(f"agent a{i} not routed after 5 s")
                    await asyncio.sleep(0.001)
                t2 = time.perf_counter()
                creates.append(t1 - t0)
                visible.append(t2 - t1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        await factory.close()
        await store.close()
        await runner.cleanup()
    print(f"agent create (SQLite, {n} creates)            {_stats(creates)}")
    print(f"create returned -> first request routed     {_stats(visible)}   (target < 100 ms)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.workers))
