"""`make bench-runtime`: the agent runtime, measured on this machine.

1. create → first 200, through the control-plane API (`POST /api/agents`: resolve, verify,
   policy, store, runtime) and then one request on the replica's Unix socket. Interleaved
   repetitions of:
   - warm: a warm replica is claimed (no fork, no import on the path);
   - fork: no warm replica, the template version's fork server forks one (isolation included);
   - cold: a new template version, so a fresh interpreter imports the stack, then forks;
   - subprocess: plain `python -m uvicorn app:app --uds …` plus readiness polling, no agentgate.
   The app imports a typical agent stack (Starlette, pydantic, aiohttp, orjson).
   Until the data plane routes `unix:` endpoints (issue 9), the first request goes straight to
   the replica's socket, not through the gateway.
2. memory per idle warm replica (USS, PSS) and of a plain uvicorn process;
3. memory of 1,000 idle agents on one host (one replica each, the echo example app);
4. autoscaling: a synthetic diurnal day with an unannounced spike replayed through the KPA
   decisions, reactive alone vs reactive + predictive: queueing p99, replica-minutes;
5. forecaster choice: next-day sMAPE on a synthetic three-week trace (weekly profile vs
   Holt-Winters with a daily season) and time per update.

    python loadtests/bench_runtime.py --out loadtests/results/runtime.json [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentgate import crypto  # noqa: E402
from agentgate.registry.digest import digest as template_digest  # noqa: E402
from agentgate.registry.signing import sign_template  # noqa: E402
from agentgate.runtime.autoscaler import KpaSettings, Load, ScalerState, decide  # noqa: E402
from agentgate.runtime.forecast import HoltWinters, WeeklyProfile, smape  # noqa: E402
from agentgate.runtime.spec import AgentSpec  # noqa: E402

STACK = ROOT / "loadtests" / "runtime" / "stack_app"
ECHO = ROOT / "examples" / "agents" / "echo_app"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def summary(xs: list[float]) -> dict[str, Any]:
    return {
        "n": len(xs),
        "p50_ms": round(statistics.median(xs) * 1000, 2),
        "p99_ms": round(pct(xs, 0.99) * 1000, 2),
        "min_ms": round(min(xs) * 1000, 2),
        "max_ms": round(max(xs) * 1000, 2),
    }


async def first_200(sock: str) -> None:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as s,
        s.get("http://replica/hello") as r,
    ):
        assert r.status == 200, r.status
        await r.read()


class Control:
    """The control plane in-process: store, API, factory, runtime (real supervisor)."""

    async def open(self, root: Path) -> None:
        from agentgate.api.app import create_api, standalone
        from agentgate.cli_control import bootstrap
        from agentgate.policy import PolicyService
        from agentgate.registry.service import RegistryService
        from agentgate.runtime.capabilities import probe_subprocess
        from agentgate.runtime.factory import AgentFactory, ScopeAudit
        from agentgate.runtime.manager import Runtime
        from agentgate.runtime.state_api import StoreCheckpoints
        from agentgate.runtime.supervisor import Settings, Supervisor
        from agentgate.security.audit import seal
        from agentgate.security.services import Security
        from agentgate.store import open_store
        from agentgate.store.runtime import RuntimeRepo

        self.store = await open_store(None, root)
        _, _, secret = await bootstrap(self.store)
        repo = RuntimeRepo(self.store.db, self.store.clock)
        self.caps = probe_subprocess()
        self.sup = Supervisor(
            Settings(root=root / "rt", grace=2, unpublish_wait=0.0, pool_cap=64),
            repo=repo,
            checkpoints=StoreCheckpoints(repo),
            capabilities=self.caps,
        )
        self.rt = Runtime(self.store, self.sup, audit=ScopeAudit(seal), adopt=False)
        await self.rt.start()
        factory = AgentFactory(
            self.store,
            RegistryService,
            PolicyService(),
            ScopeAudit(seal),
            drain_timeout=0.0,
            runtime=self.rt,
        )
        sec = Security(self.store, env={"AGENTGATE_MASTER_KEY": os.urandom(32).hex()})
        app = standalone(create_api(self.store, security=sec, runtime=self.rt, factory=factory))
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=120,
        )
        self.kp = crypto.generate_keypair()
        await self.client.post(
            "/api/publisher-keys", json={"public_key": self.kp.public_b64(), "valid_from": 0}
        )
        self.n = 0

    async def publish(self, name: str, version: str, warm: int, app_dir: Path) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": name,
            "version": version,
            "spec": {"kind": "process", "app": "app:app", "python_path": [str(app_dir)]},
            "resources": {"cpu": 1, "memory": "512MiB"},
            "scaling": {"min_replicas": 0, "max_replicas": 64, "warm_pool": warm},
        }
        env = sign_template(
            f"{name}@{version}", template_digest(doc), self.kp.private_key, signed_at=time.time()
        )
        r = await self.client.post("/api/templates", json={"template": doc, "envelope": env})
        assert r.status_code == 201, r.text
        return doc

    async def create(self, ref: str) -> tuple[float, str, dict[str, Any]]:
        """create → first 200: seconds, agent name, agent document."""
        self.n += 1
        name = f"a{self.n}"
        t0 = time.perf_counter()
        r = await self.client.post("/api/agents", json={"template": ref, "name": name})
        a = r.json()
        assert r.status_code == 201 and a["state"] == "active", r.text
        await first_200(self.sup.replicas(a["id"])[0]["socket"])
        return time.perf_counter() - t0, name, a

    async def delete(self, name: str) -> None:
        await self.client.delete(f"/api/agents/{name}")

    async def close(self) -> None:
        await self.client.aclose()
        await self.rt.close()
        await self.store.close()


def warm_spec(c: Control, doc: dict[str, Any]) -> AgentSpec:
    return AgentSpec.build(
        agent_id="x",
        tenant_id="t",
        tenant="system",
        name="x",
        digest=template_digest(doc),
        body=doc,
        params={},
        replicas=1,
    )


async def subprocess_start(app_dir: Path, sock: str) -> tuple[float, subprocess.Popen[bytes]]:
    t0 = time.perf_counter()
    # the peer is the plain blocking start people write; its cost is what is measured
    p = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "uvicorn", "app:app", "--uds", sock, "--log-level", "warning"],
        cwd=app_dir,
    )
    while True:
        if os.path.exists(sock):  # noqa: ASYNC240
            with contextlib.suppress(aiohttp.ClientError, OSError, AssertionError):
                await first_200(sock)
                return time.perf_counter() - t0, p
        if p.poll() is not None:
            raise RuntimeError("uvicorn exited")
        await asyncio.sleep(0.002)


def mem(pid: int) -> tuple[int, int, int]:
    """(USS, PSS, RSS) in bytes."""
    m = psutil.Process(pid).memory_full_info()
    return m.uss, m.pss, m.rss


async def bench_create(c: Control, root: Path, reps: int, cold_reps: int) -> dict[str, Any]:
    warm_doc = await c.publish("stack-warm", "1.0.0", 2, STACK)
    await c.publish("stack-fork", "1.0.0", 0, STACK)
    ws = warm_spec(c, warm_doc)
    # first creates of each (untimed): the fork servers import the stack once
    for ref in ("stack-warm@1.0.0", "stack-fork@1.0.0"):
        _, name, _ = await c.create(ref)
        await c.delete(name)
    times: dict[str, list[float]] = {"warm": [], "fork": [], "cold": [], "subprocess": []}
    names: list[str] = []
    for i in range(reps):
        await c.sup.wait_pool(ws, 2)
        t, name, _ = await c.create("stack-warm@1.0.0")
        times["warm"].append(t)
        names.append(name)
        t, name, _ = await c.create("stack-fork@1.0.0")
        times["fork"].append(t)
        names.append(name)
        if i < cold_reps:
            await c.publish("stack-cold", f"1.0.{i}", 0, STACK)
            t, name, _ = await c.create(f"stack-cold@1.0.{i}")
            times["cold"].append(t)
            names.append(name)
            sock = str(root / f"sub{i}.sock")
            t, p = await subprocess_start(STACK, sock)
            times["subprocess"].append(t)
            p.terminate()
            p.wait()
    for name in names:
        await c.delete(name)
    return {k: summary(v) for k, v in times.items()}


async def bench_gateway(root: Path, reps: int) -> dict[str, Any]:
    """create → first 200 through a real `agentgate serve`: `POST /api/agents` on the admin
    listener, then the first request through the data plane to the replica's socket (a warm
    replica claimed; the gateway learns the endpoint from the store within one poll)."""
    from agentgate.cli_control import bootstrap
    from agentgate.store import open_store

    d = root / "serve"
    d.mkdir()
    os.chmod(d, 0o755)
    (d / "agentgate.yaml").write_text("data_dir: .agentgate\n")
    ports = d / "ports.json"
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, outside the measurement)
        [
            sys.executable,
            "-m",
            "agentgate",
            "serve",
            "--config",
            str(d / "agentgate.yaml"),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ports-file",
            str(ports),
        ],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ports.exists():  # noqa: ASYNC110 (a file another process writes)
            await asyncio.sleep(0.05)
        bound = json.loads(ports.read_text())
        store = await open_store(None, d / ".agentgate")
        _, _, secret = await bootstrap(store)
        await store.close()
        h = {"Authorization": f"Bearer {secret}"}
        times = []
        async with (
            httpx.AsyncClient(base_url=f"http://{bound['admin']}", headers=h, timeout=60) as api,
            aiohttp.ClientSession(base_url=f"http://{bound['listen']}") as gw,
        ):
            kp = crypto.generate_keypair()
            await api.post(
                "/api/publisher-keys", json={"public_key": kp.public_b64(), "valid_from": 0}
            )
            doc = {
                "name": "stack",
                "version": "1.0.0",
                "spec": {"kind": "process", "app": "app:app", "python_path": [str(STACK)]},
                "resources": {"cpu": 1, "memory": "512MiB"},
                "scaling": {"min_replicas": 0, "max_replicas": 4, "warm_pool": 2},
            }
            env = sign_template(
                "stack@1.0.0", template_digest(doc), kp.private_key, signed_at=time.time()
            )
            await api.post("/api/templates", json={"template": doc, "envelope": env})
            for i in range(reps + 1):
                await asyncio.sleep(1.5)  # let the pool refill (not measured)
                t0 = time.perf_counter()
                r = await api.post("/api/agents", json={"template": "stack@1", "name": f"g{i}"})
                assert r.status_code == 201 and r.json()["state"] == "active", r.text
                while True:
                    async with gw.get(f"/t/system/agents/g{i}/hello") as resp:
                        if resp.status == 200:
                            break
                    await asyncio.sleep(0.001)
                if i:  # the first create also starts the fork server
                    times.append(time.perf_counter() - t0)
        return summary(times)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)


async def bench_ray(root: Path, reps: int) -> dict[str, Any]:
    """create → first 200 on the Ray backend: an actor starts the isolated replica on its node,
    the request goes through the actor's TCP forward (a local head on loopback)."""
    try:
        import ray
    except ImportError as e:
        return {"skipped": f"ray not installed: {e}"}
    from agentgate.runtime.capabilities import probe_subprocess
    from agentgate.runtime.ray_backend import RayBackend

    t = time.perf_counter()
    ray.init(_node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    b = RayBackend(address=None, caps=probe_subprocess())
    await b.start()
    body = {
        "name": "stack",
        "version": "1.0.0",
        "spec": {"kind": "process", "app": "app:app", "python_path": [str(STACK)]},
        "resources": {"cpu": 1, "memory": "512MiB"},
        "scaling": {"min_replicas": 0, "max_replicas": 4},
    }
    times = []
    try:
        for i in range(reps + 1):
            s = AgentSpec.build(
                agent_id=f"ray{i}",
                tenant_id="t",
                tenant="t",
                name=f"ray{i}",
                digest="sha256:ray",
                body=body,
                params={},
                replicas=1,
            )
            t = time.perf_counter()
            res = await b.start_agent(s)
            assert res.state == "running", res
            url = b.replicas(s.agent_id)[0]["endpoint"]
            async with aiohttp.ClientSession() as cs, cs.get(url + "/hello") as r:
                assert r.status == 200
            if i:  # the first one also starts Ray's worker pool: reported apart
                times.append(time.perf_counter() - t)
            else:
                first = time.perf_counter() - t
            await b.stop_agent(s.agent_id)
    finally:
        await b.close()
        ray.shutdown()
    return {
        **summary(times),
        "first_actor_ms": round(first * 1000, 1),
        "ray_init_s": round(init_s, 1),
    }


async def bench_memory(c: Control, root: Path, n: int) -> dict[str, Any]:
    r = await c.client.post("/api/agents", json={"template": "stack-fork@1.0.0", "name": "mem"})
    aid = r.json()["id"]
    await c.sup.scale(aid, n)
    await asyncio.sleep(1.0)  # idle
    pids = [x["pid"] for x in c.sup.replicas(aid)]
    ms = [mem(p) for p in pids]
    z = next(iter(c.sup._zygotes.values()))
    zygote = mem(z.proc.pid) if z.proc is not None else (0, 0, 0)
    sock = str(root / "mem.sock")
    _, p = await subprocess_start(STACK, sock)
    sub = mem(p.pid)
    p.terminate()
    p.wait()
    await c.delete("mem")
    return {
        "replicas": n,
        "replica_uss_mib": round(statistics.median(m[0] for m in ms) / 2**20, 2),
        "replica_pss_mib": round(statistics.median(m[1] for m in ms) / 2**20, 2),
        "replica_rss_mib": round(statistics.median(m[2] for m in ms) / 2**20, 2),
        "fork_server_pss_mib": round(zygote[1] / 2**20, 2),
        "subprocess_uss_mib": round(sub[0] / 2**20, 2),
        "subprocess_pss_mib": round(sub[1] / 2**20, 2),
        "subprocess_rss_mib": round(sub[2] / 2**20, 2),
    }


async def bench_idle_agents(root: Path, n: int) -> dict[str, Any]:
    from agentgate.runtime.capabilities import probe_subprocess
    from agentgate.runtime.supervisor import Settings, Supervisor

    sup = Supervisor(
        Settings(root=root / "idle", grace=2, unpublish_wait=0.0), capabilities=probe_subprocess()
    )
    await sup.start()
    me = psutil.Process()
    before = me.memory_full_info().uss
    body = {
        "name": "echo",
        "version": "1.0.0",
        "spec": {"kind": "process", "app": "app:app", "python_path": [str(ECHO)]},
        "resources": {"cpu": "100m", "memory": "64MiB"},
        "scaling": {"min_replicas": 0, "max_replicas": 1},
    }
    t0 = time.perf_counter()
    started = 0
    for batch in range(0, n, 25):
        specs = [
            AgentSpec.build(
                agent_id=f"idle{i}",
                tenant_id="t",
                tenant="t",
                name=f"idle{i}",
                digest="sha256:idle",
                body=body,
                params={},
                replicas=1,
            )
            for i in range(batch, min(n, batch + 25))
        ]
        res = await asyncio.gather(*(sup.start_agent(s) for s in specs))
        started += sum(r.state == "running" for r in res)
    took = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    pids = [r.pid for run in sup.agents.values() for r in run.replicas.values() if r.pid]
    uss = pss = 0
    for p in pids:
        with contextlib.suppress(psutil.Error):
            m = psutil.Process(p).memory_full_info()
            uss += m.uss
            pss += m.pss
    zy = [z.proc.pid for z in sup._zygotes.values() if z.proc is not None]
    zpss = sum(mem(p)[1] for p in zy)
    sup_uss = me.memory_full_info().uss - before
    avail = psutil.virtual_memory()
    await sup.close()
    return {
        "agents": n,
        "running": started,
        "start_all_s": round(took, 1),
        "replicas_uss_mib": round(uss / 2**20, 1),
        "replicas_pss_mib": round(pss / 2**20, 1),
        "fork_server_pss_mib": round(zpss / 2**20, 1),
        "supervisor_growth_mib": round(sup_uss / 2**20, 1),
        "total_pss_mib": round((pss + zpss + sup_uss) / 2**20, 1),
        "per_agent_pss_mib": round((pss + zpss + sup_uss) / max(1, started) / 2**20, 2),
        "host_available_after_gib": round(avail.available / 2**30, 1),
    }


def diurnal(t: float, week_day: int) -> float:
    """Requests per second at second-of-day t: a day curve, a quieter weekend."""
    h = t / 3600
    day = 0.15 + max(0.0, math.sin((h - 6) / 24 * 2 * math.pi)) * 0.85
    return 200.0 * day * (0.5 if week_day >= 5 else 1.0)


def simulate(predictive: bool, ready_delay: float = 30.0) -> dict[str, Any]:
    """One day (a Wednesday) at 2 s ticks, request time 0.5 s, target concurrency 10, a 3× spike
    at 14:00 for 15 minutes that no history announces; new replicas are ready after
    `ready_delay` (an agent that loads a model); two weeks of history feed the forecast."""
    cfg = KpaSettings()
    st = ScalerState(profile=WeeklyProfile(cfg.forecast_bucket) if predictive else None)
    svc = 0.5
    t0 = 1_700_006_400.0 - (1_700_006_400.0 % 604800) + 2 * 86400  # a Wednesday 00:00 UTC
    if st.profile is not None:
        start = t0 - 14 * 86400
        for b in range(14 * 288):
            ts = start + b * 300
            wd = int(((ts - (t0 - 2 * 86400)) // 86400) % 7)
            st.profile.add(ts, diurnal(ts % 86400 + 150, wd) * svc)
    rng = random.Random(1)
    replicas, pending = 1, []  # pending: (ready_at, count)
    backlog = 0.0
    waits: list[tuple[float, float]] = []  # (wait seconds, weight = arrivals)
    rep_seconds = 0.0
    dt = cfg.tick
    t = 0.0
    while t < 86400:
        now = t0 + t
        rate = diurnal(t, 2) * rng.gauss(1, 0.05)
        if 14 * 3600 <= t < 14 * 3600 + 900:
            rate *= 3
        for p in [p for p in pending if p[0] <= now]:
            replicas += p[1]
            pending.remove(p)
        cap = replicas * 10.0  # concurrent requests the ready replicas take
        demand = rate * svc + backlog
        served = min(demand, cap)
        backlog = max(0.0, demand - cap)
        drain = cap / svc  # requests per second the replicas finish
        waits.append((backlog / drain if drain else 60.0, rate))
        st.observe(now, Load(in_flight=int(served), queued=int(backlog)))
        d = decide(
            st,
            now,
            replicas + sum(p[1] for p in pending),
            target=10.0,
            min_replicas=1,
            max_replicas=100,
            predictive=predictive,
            cfg=cfg,
        )
        want = d.replicas - replicas - sum(p[1] for p in pending)
        if want > 0:
            pending.append((now + ready_delay, want))
        elif want < 0:
            replicas = max(1, replicas + want)
        rep_seconds += replicas * dt
        t += dt
    total = sum(w for _, w in waits)
    acc = 0.0
    p99 = 0.0
    for wait, w in sorted(waits):
        acc += w
        if acc >= 0.99 * total:
            p99 = wait
            break
    return {"queue_p99_s": round(p99, 3), "replica_minutes": round(rep_seconds / 60, 1)}


def forecast_eval() -> dict[str, Any]:
    """Next-day sMAPE over the 7 days of week 3 of a synthetic 3-week trace."""
    bucket = 300.0
    per_day = 288
    rng = random.Random(7)
    trace = []
    for i in range(21 * per_day):
        day = (i // per_day) % 7
        h = (i % per_day) / per_day * 24
        daily = 0.2 + max(0.0, math.sin((h - 6) / 24 * 2 * math.pi)) * 0.8
        weekly = 0.45 if day >= 5 else 1.0
        trend = 1 + 0.02 * i / per_day / 7
        trace.append(max(0.0, 40 * daily * weekly * trend * rng.gauss(1, 0.05)))
    t0 = 1_700_000_000.0 - (1_700_000_000.0 % 604800)
    wp_errs, hw_errs = [], []
    wp_time = hw_time = 0.0
    for d in range(14, 21):
        cut = d * per_day
        wp = WeeklyProfile(bucket)
        s = time.perf_counter()
        wp.add_bucket_means(t0, trace[:cut])
        wp_time += time.perf_counter() - s
        hw = HoltWinters(season=per_day)
        s = time.perf_counter()
        for y in trace[:cut]:
            hw.add(y)
        hw_time += time.perf_counter() - s
        actual = trace[cut : cut + per_day]
        wp_errs.append(
            smape(actual, [wp.forecast(t0 + (cut + i) * bucket) or 0.0 for i in range(per_day)])
        )
        hw_errs.append(smape(actual, [hw.forecast(i + 1) or 0.0 for i in range(per_day)]))
    n_updates = sum(d * per_day for d in range(14, 21))
    return {
        "weekly_profile_smape_pct": round(statistics.mean(wp_errs), 1),
        "holt_winters_daily_smape_pct": round(statistics.mean(hw_errs), 1),
        "weekly_profile_us_per_update": round(wp_time / n_updates * 1e6, 2),
        "holt_winters_us_per_update": round(hw_time / n_updates * 1e6, 2),
        "chosen": "weekly_profile",
    }


def write_md(out: dict[str, Any]) -> None:
    """The runtime section of BENCHMARKS.md from the results."""
    from loadtests.benchmarks_md import replace_section

    c = out["create_to_first_200"]
    rows = [
        "| path | n | p50 ms | p99 ms | min ms |",
        "|---|--:|--:|--:|--:|",
    ]
    labels = {
        "warm": "warm replica claimed (agentgate), first request on the socket",
        "gateway_warm": "warm replica claimed, first request through `agentgate serve`",
        "fork": "fork from the template's fork server (agentgate, pool empty)",
        "cold": "fresh interpreter: new template version (agentgate)",
        "subprocess": "plain `subprocess` uvicorn + readiness polling (peer)",
        "ray": "Ray actor on a local head (agentgate, backend ray)",
    }
    for k, label in labels.items():
        v = c.get(k) or {}
        if "p50_ms" in v:
            rows.append(f"| {label} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} | {v['min_ms']} |")
    m = out["idle_warm_replica_memory"]
    i = out["idle_agents"]
    sc = out["scaling"]
    f = out["forecaster"]
    ray = c.get("ray") or {}
    body = "\n".join(
        [
            "Command: `make bench-runtime` (`loadtests/bench_runtime.py`, results in",
            "`loadtests/results/runtime.json`). " + out["note"] + ".",
            f"Isolation on: {', '.join(out['isolation'])}. The app imports Starlette, pydantic,",
            "aiohttp and orjson. Create = `POST /api/agents` in-process (resolve, verify, policy,",
            "store, audit, runtime) + one `GET` on the replica. Repetitions interleaved.",
            "",
            *rows,
            "",
            "Targets (issue 10) with a warm replica: p50 ≤ 20 ms, p99 ≤ 50 ms. This run: "
            f"p50 {c['warm']['p50_ms']} / p99 {c['warm']['p99_ms']} ms on 2 cores "
            f"(1-min load average {out.get('load_average_start', '?')} at start); "
            f"the fastest create was {c['warm']['min_ms']} ms. Through the gateway the endpoint "
            "reaches the data plane as the create commits (the store's commit listeners wake the "
            "store source; no poll on the path). The in-process rows share "
            "one event loop with the pool's background refill (fork + readiness of the next warm "
            "replica), which shows in their p99; the gateway row leaves 1.5 s between creates.",
            "",
            (
                f"Ray: `ray.init` {ray.get('ray_init_s')} s; the first actor "
                f"{ray.get('first_actor_ms')} ms (worker pool start)."
                if ray.get("ray_init_s") is not None
                else ""
            ),
            "",
            "| memory | USS MiB | PSS MiB | RSS MiB |",
            "|---|--:|--:|--:|",
            f"| idle warm replica (median of {m['replicas']}) | {m['replica_uss_mib']} | "
            f"{m['replica_pss_mib']} | {m['replica_rss_mib']} |",
            f"| plain uvicorn process (peer) | {m['subprocess_uss_mib']} | "
            f"{m['subprocess_pss_mib']} | {m['subprocess_rss_mib']} |",
            f"| fork server (once per template version) | | {m['fork_server_pss_mib']} | |",
            "",
            f"{i['agents']} idle agents (echo app, one replica each, all isolated): "
            f"{i['running']} running, started in {i['start_all_s']} s (25 at a time); "
            f"{i['total_pss_mib']} MiB PSS in all = {i['per_agent_pss_mib']} MiB per agent "
            f"(supervisor growth {i['supervisor_growth_mib']} MiB).",
            "",
            f"Autoscaling replay ({sc['trace']}):",
            "",
            "| scaler | queueing p99 s | replica-minutes |",
            "|---|--:|--:|",
            f"| reactive (KPA) | {sc['reactive']['queue_p99_s']} | "
            f"{sc['reactive']['replica_minutes']} |",
            f"| reactive + predictive | {sc['reactive_plus_predictive']['queue_p99_s']} | "
            f"{sc['reactive_plus_predictive']['replica_minutes']} |",
            "",
            "Forecaster (next-day sMAPE over the 7 days of week 3 of a synthetic trace with daily "
            f"and weekly seasons): weekly profile × recent level {f['weekly_profile_smape_pct']} %"
            f" ({f['weekly_profile_us_per_update']} µs/update), Holt-Winters with a daily season "
            f"{f['holt_winters_daily_smape_pct']} % ({f['holt_winters_us_per_update']} µs/update)"
            " → the weekly profile is what `predictive: true` uses.",
        ]
    )
    replace_section("runtime", "Agent runtime (make bench-runtime)", body)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="loadtests/results/runtime.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--idle-agents", type=int, default=1000)
    ap.add_argument("--md", action="store_true", help="only rewrite BENCHMARKS.md from --out")
    args = ap.parse_args()
    if args.md:
        write_md(json.loads(Path(args.out).read_text()))  # noqa: ASYNC240
        return
    reps, cold = (6, 2) if args.quick else (30, 5)
    root = Path(tempfile.mkdtemp(prefix="agentgate-bench-rt-"))
    os.chmod(root, 0o755)
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "load_average_start": round(os.getloadavg()[0], 2),
        "note": "create → first 200 on the replica's Unix socket, and through a real `agentgate "
        "serve` (row gateway_warm); Ray through the actor's TCP forward on loopback",
    }
    c = Control()
    try:
        await c.open(root)
        out["isolation"] = sorted(k for k, v in c.caps.items() if v.available)
        out["create_to_first_200"] = await bench_create(c, root, reps, cold)
        print(json.dumps(out["create_to_first_200"], indent=1), flush=True)
        out["create_to_first_200"]["gateway_warm"] = await bench_gateway(
            root, 5 if args.quick else 20
        )
        print(json.dumps(out["create_to_first_200"]["gateway_warm"], indent=1), flush=True)
        out["create_to_first_200"]["ray"] = await bench_ray(root, 2 if args.quick else 5)
        print(json.dumps(out["create_to_first_200"]["ray"], indent=1), flush=True)
        out["idle_warm_replica_memory"] = await bench_memory(c, root, 10 if args.quick else 20)
        print(json.dumps(out["idle_warm_replica_memory"], indent=1), flush=True)
    finally:
        await c.close()
    out["idle_agents"] = await bench_idle_agents(root, 100 if args.quick else args.idle_agents)
    print(json.dumps(out["idle_agents"], indent=1), flush=True)
    out["scaling"] = {
        "trace": "one weekday at 2 s ticks, 200 req/s peak, 0.5 s per request, target 10, "
        "3x unannounced spike 14:00-14:15, new replica ready after 30 s",
        "reactive": simulate(False),
        "reactive_plus_predictive": simulate(True),
    }
    out["forecaster"] = forecast_eval()
    print(json.dumps({k: out[k] for k in ("scaling", "forecaster")}, indent=1))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")  # noqa: ASYNC240
    write_md(out)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
