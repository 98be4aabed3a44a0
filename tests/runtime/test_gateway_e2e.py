"""A process agent through a real `agentgate serve`: create from a template → the gateway routes
to its replica's Unix socket → delete drains it. Real server, real runtime, real replicas."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest
from rt_helpers import EXAMPLES, HERE

from agentgate import crypto
from agentgate.registry.digest import digest as template_digest
from agentgate.registry.signing import sign_template

sys.path.insert(0, str(HERE.parent / "gateway"))
from gateway_process import bootstrap_admin, start_gateway, stop_gateway


@pytest.mark.timeout(180)
async def test_create_route_delete_through_the_gateway(rt_root: Path) -> None:
    gw = start_gateway("data_dir: .agentgate\n", rt_root, timeout=60)
    try:
        secret = await bootstrap_admin(rt_root / ".agentgate")
        h = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=gw.admin, headers=h, timeout=60) as api:
            kp = crypto.generate_keypair()
            r = await api.post(
                "/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0}
            )
            assert r.status_code == 201, r.text
            doc = {
                "name": "echo",
                "version": "1.0.0",
                "spec": {
                    "kind": "process",
                    "app": "app:app",
                    "python_path": [str(EXAMPLES / "echo_app")],
                    "env": {"GREETING": "through the gateway"},
                },
                "scaling": {"min_replicas": 0, "max_replicas": 2, "warm_pool": 1},
            }
            env = sign_template(
                "echo@1.0.0", template_digest(doc), kp.private_key, signed_at=time.time()
            )
            r = await api.post("/api/templates", json={"template": doc, "envelope": env})
            assert r.status_code == 201, r.text
            r = await api.post("/api/agents", json={"template": "echo@1"})
            assert r.status_code == 201 and r.json()["state"] == "active", r.text
            reps = (await api.get("/api/agents/echo/replicas")).json()["replicas"]
            assert reps[0]["endpoint"].startswith("unix:/")
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
                for _ in range(200):
                    r = await c.post("/t/system/agents/echo/hello", content=b"hi")
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.05)
                assert r.status_code == 200, (r.status_code, r.text, gw.output()[-2000:])
                doc_out = r.json()
                assert doc_out["greeting"] == "through the gateway"
                assert doc_out["replica"] == reps[0]["id"] and doc_out["body"] == "hi"
                assert (await api.delete("/api/agents/echo")).status_code == 202
                for _ in range(600):
                    if (await api.get("/api/agents/echo")).status_code == 404:
                        break
                    await asyncio.sleep(0.05)
                assert (await api.get("/api/agents/echo")).status_code == 404
                assert (await c.get("/t/system/agents/echo/hello")).status_code == 404
    finally:
        assert stop_gateway(gw) == 0, gw.output()[-3000:]


@pytest.mark.timeout(180)
async def test_a_request_to_an_agent_scaled_to_zero_waits_for_its_replica(rt_root: Path) -> None:
    """Activator behaviour: with no replica, the first request waits (it is not a 503) while the
    runtime starts one, then reaches it."""
    root = rt_root / "zero"
    root.mkdir()
    gw = start_gateway("data_dir: .agentgate\n", root, timeout=60)
    try:
        secret = await bootstrap_admin(root / ".agentgate")
        h = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(base_url=gw.admin, headers=h, timeout=60) as api:
            kp = crypto.generate_keypair()
            r = await api.post(
                "/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0}
            )
            assert r.status_code == 201, r.text
            doc = {
                "name": "sleepy",
                "version": "1.0.0",
                "spec": {
                    "kind": "process",
                    "app": "app:app",
                    "python_path": [str(EXAMPLES / "echo_app")],
                    "env": {"GREETING": "woken up"},
                },
                "scaling": {"min_replicas": 0, "max_replicas": 1, "warm_pool": 0},
            }
            env = sign_template(
                "sleepy@1.0.0", template_digest(doc), kp.private_key, signed_at=time.time()
            )
            r = await api.post("/api/templates", json={"template": doc, "envelope": env})
            assert r.status_code == 201, r.text
            r = await api.post("/api/agents", json={"template": "sleepy@1"})
            assert r.status_code == 201, r.text
            r = await api.post("/api/agents/sleepy/scale", json={"replicas": 0})
            assert r.status_code == 200, r.text
            for _ in range(600):
                if not (await api.get("/api/agents/sleepy/replicas")).json()["replicas"]:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the agent did not scale to zero")
            # the route stays (activation): the request waits for a replica instead of failing
            async with httpx.AsyncClient(base_url=gw.url, timeout=60) as c:
                r = await c.post("/t/system/agents/sleepy/hi", content=b"zz")
            assert r.status_code == 200, (r.status_code, r.text, gw.output()[-3000:])
            assert r.json()["greeting"] == "woken up"
            assert r.json()["replica"]  # a replica the runtime started for this request
    finally:
        assert stop_gateway(gw) == 0, gw.output()[-3000:]
