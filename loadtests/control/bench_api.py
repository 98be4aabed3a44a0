"""Control API latency through real HTTP: template resolve and agent create with 10,000
templates stored, on SQLite (and PostgreSQL with --pg URL or an ephemeral server).

    .venv/bin/python loadtests/control/bench_api.py [--n 10000] [--requests 500] [--pg]

The API runs under granian (`agentgate.api.app:from_env`) in its own process; a keep-alive
httpx client sends one request at a time and records wall-clock latency per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agentgate import crypto
from agentgate.cli_control import bootstrap
from agentgate.registry.digest import digest
from agentgate.registry.service import RegistryService
from agentgate.registry.signing import key_id, sign_template
from agentgate.store import NewTemplate, open_store


def _doc(name: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "description": f"{name} bench agent",
        "capabilities": ["bench"],
        "spec": {"kind": "http", "endpoints": [{"url": "http://127.0.0.1:9"}]},
    }


async def seed(url: str | None, data: Path, n: int) -> str:
    """Bootstrap and store `n` templates (100 versions per name) plus signed `bench@1.x`."""
    store = await open_store(url, data)
    try:
        t, _, secret = await bootstrap(store)
        scope = store.scoped(t.id)
        names = max(1, n // 100)
        for i in range(names):
            for j in range(min(100, n - i * 100)):
                v = f"{j // 10}.{j % 10}.0"
                doc = _doc(f"tpl-{i}", v)
                await scope.templates.insert(
                    NewTemplate(
                        name=doc["name"],
                        version=v,
                        major=j // 10,
                        minor=j % 10,
                        patch=0,
                        digest=digest(doc),
                        body=doc,
                        description=doc["description"],
                        capabilities=("bench",),
                    )
                )
        kp = crypto.generate_keypair()
        await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0)
        reg = RegistryService(scope)
        for v in ("1.0.0", "1.1.0"):
            doc = _doc("bench", v)
            env = sign_template(f"bench@{v}", digest(doc), kp.private_key, signed_at=time.time())
            await reg.publish(doc, env)
    finally:
        await store.close()
    return secret


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return f"median {statistics.median(xs) * 1e3:.2f} ms  p99 {p99 * 1e3:.2f} ms  (n={len(xs)})"


def run(url: str | None, label: str, n: int, requests: int) -> None:
    """Seed, serve, measure, print."""
    data = Path(tempfile.mkdtemp(prefix="agentgate-bench-"))
    t0 = time.perf_counter()
    secret = asyncio.run(seed(url, data, n))
    print(f"[{label}] seeded {n} templates in {time.perf_counter() - t0:.1f}s")
    port = _port()
    env = dict(os.environ, AGENTGATE_DATA_DIR=str(data))
    env.pop("AGENTGATE_DATABASE_URL", None)
    if url:
        env["AGENTGATE_DATABASE_URL"] = url
    proc = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host",
         "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--log-level", "warning",
         "agentgate.api.app:from_env"],
        env=env,
    )  # fmt: skip
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as c:
            for _ in range(300):
                try:
                    c.get("/api/tenant")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            lat: list[float] = []
            for i in range(requests):
                name = f"tpl-{i % max(1, n // 100)}"
                s = time.perf_counter()
                r = c.get(f"/api/templates/{name}/resolve", params={"ref": "^5.2"})
                lat.append(time.perf_counter() - s)
                assert r.status_code == 200, r.text
            print(f"[{label}] resolve name@^5.2   {_stats(lat)}")
            lat = []
            for i in range(requests):
                body = {"template": "bench@^1", "name": f"a{i}", "replicas": 1}
                s = time.perf_counter()
                r = c.post("/api/agents", json=body)
                lat.append(time.perf_counter() - s)
                assert r.status_code == 201, r.text
            print(f"[{label}] agent create       {_stats(lat)}")
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--pg", nargs="?", const="ephemeral", help="PostgreSQL URL or 'ephemeral'")
    a = ap.parse_args()
    run(None, "sqlite", a.n, a.requests)
    if a.pg:
        if a.pg == "ephemeral":
            sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
            from pg_ephemeral import ephemeral_postgres  # type: ignore[import-not-found]

            with ephemeral_postgres() as pg:
                run(pg, "postgresql", a.n, a.requests)
        else:
            run(a.pg, "postgresql", a.n, a.requests)


if __name__ == "__main__":
    main()
