"""Ray backend (`runtime: {backend: ray, address: …}`, `pip install agentgate[ray]`).

Each replica is a Ray actor (`ReplicaActor`) placed by Ray on some node of the cluster. Ray does
not enforce resource limits itself, so the actor runs the local supervisor on its node: the same
launcher or fork server, the same isolation (rlimits, cgroups, seccomp, namespaces, uid), the
same readiness check and crash restarts with backoff. The replica listens on its Unix socket as
everywhere; the actor forwards a TCP port on the node's address to it, and that
`http://node:port` is the endpoint the backend registers for the gateway (table
`agent_replicas`, as local replicas are).

Checkpoints: the actor's supervisor serves the replica the same state API
(`AGENTGATE_STATE_URL`), backed by `RemoteCheckpoints` to the `CheckpointRelay` this backend
serves on the driver's node address, so the checkpoints live in the control-plane store and a
replica that Ray restarts on another node resumes from them.

Crash recovery has two levels: a replica process that exits is restarted by the actor's
supervisor (same socket, same port); an actor that dies is restarted by Ray (`max_restarts=-1`)
and started again by the backend's watcher, which registers its new endpoint. Scaling goes
through the same autoscaler decisions as local agents (`Runtime.tick` → `scale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agentgate.runtime.capabilities import Capability, missing
from agentgate.runtime.spec import AgentSpec
from agentgate.runtime.state_api import CheckpointRelay, CheckpointStore, RemoteCheckpoints
from agentgate.runtime.supervisor import Refused, Settings, StartResult, Supervisor
from agentgate.store.runtime import RuntimeRepo

__all__ = ["RayBackend", "ReplicaActor"]

log = logging.getLogger("agentgate.runtime.ray")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ReplicaActor:
    """One replica on a Ray node: a local supervisor running it, a TCP port forwarding to it."""

    def __init__(
        self, spec: AgentSpec, root: str | None = None, state: tuple[str, str] | None = None
    ) -> None:
        self.spec = spec
        # (relay URL, the agent's token): checkpoints in the control plane, not on this node
        self.checkpoints = RemoteCheckpoints(*state) if state is not None else None
        self.root = Path(root or tempfile.gettempdir()) / f"agentgate-ray-{uuid.uuid4().hex[:8]}"
        self.sup: Supervisor | None = None
        self.server: asyncio.Server | None = None
        self.endpoint = ""

    async def start(self) -> dict[str, Any]:
        """Start the replica and the forwarder; the endpoint, or why it failed."""
        from agentgate.runtime.capabilities import probe_subprocess

        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        caps = await asyncio.to_thread(probe_subprocess)
        self.sup = Supervisor(
            Settings(root=self.root, grace=5.0), capabilities=caps, checkpoints=self.checkpoints
        )
        await self.sup.start()
        res = await self.sup.start_agent(self.spec)
        if res.state != "running":
            return {"state": res.state, "reason": res.reason, "stderr": res.stderr}
        replica = next(iter(self.sup.agents[self.spec.agent_id].replicas.values()))
        sock = str(replica.socket)

        async def forward(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_unix_connection(sock)
            except OSError:
                w.close()
                return
            await asyncio.gather(_pipe(r, uw), _pipe(ur, w))

        host = _node_ip()
        self.server = await asyncio.start_server(forward, host, 0)
        port = self.server.sockets[0].getsockname()[1]
        self.endpoint = f"http://{host}:{port}"
        return {"state": "running", "endpoint": self.endpoint, "pid": replica.pid}

    async def info(self) -> dict[str, Any]:
        """The replica as the replicas API shows it, plus the TCP endpoint."""
        if self.sup is None:
            return {"state": "starting"}
        reps = self.sup.replicas(self.spec.agent_id)
        out = reps[0] if reps else {"state": "stopped"}
        out["endpoint"] = self.endpoint
        out["node"] = _node_ip()
        return out

    async def stop(self) -> None:
        """Drain the replica and stop forwarding."""
        if self.server is not None:
            self.server.close()
        if self.sup is not None:
            await self.sup.close()
        if self.checkpoints is not None:
            await self.checkpoints.close()


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
    except Exception:
        return socket.gethostbyname(socket.gethostname())


class _Remote:
    """One actor as the backend tracks it."""

    def __init__(self, rid: str, handle: Any) -> None:
        self.id = rid
        self.handle = handle
        self.endpoint = ""
        self.restarts = 0
        self.watch: asyncio.Task[None] | None = None
        self.stopping = False


class RayBackend:
    """`Backend` on a Ray cluster (see the module docstring)."""

    def __init__(
        self,
        *,
        address: str | None,
        repo: RuntimeRepo | None = None,
        checkpoints: CheckpointStore | None = None,
        caps: dict[str, Capability] | None = None,
        namespace: str = "agentgate",
        host: str = "ray",
    ) -> None:
        self.address = address
        self.repo = repo
        self.relay = CheckpointRelay(checkpoints) if checkpoints is not None else None
        self.caps = caps or {}
        self.namespace = namespace
        self.host = host
        self.agents: dict[str, tuple[AgentSpec, dict[str, _Remote]]] = {}
        self._actor_cls: Any = None

    async def start(self) -> None:
        """Connect to the cluster (or join the one this process already started)."""
        import ray

        if not ray.is_initialized():
            await asyncio.to_thread(
                ray.init,
                address=self.address,
                namespace=self.namespace,
                ignore_reinit_error=True,
                log_to_driver=False,
            )
        self._actor_cls = ray.remote(ReplicaActor).options(
            max_restarts=-1, max_task_retries=0, num_cpus=0
        )
        if self.repo is not None:
            await self.repo.delete_host(self.host)
        if self.relay is not None:
            await self.relay.listen(_node_ip())

    async def close(self) -> None:
        """Stop every agent's actors."""
        for aid in list(self.agents):
            await self.stop_agent(aid)
        if self.relay is not None:
            await self.relay.close()

    def check(self, spec: AgentSpec) -> None:
        """Refuse what the probed node cannot isolate as the template requires."""
        req = set(spec.spec.isolation.require)
        if spec.spec.network != "egress":
            req.add("netns")
        gone = missing(self.caps, sorted(req))
        if gone:
            raise Refused(gone)

    async def _publish(self, spec: AgentSpec, r: _Remote, state: str, pid: int | None) -> None:
        if self.repo is not None:
            await self.repo.put_replica(
                r.id,
                agent_id=spec.agent_id,
                tenant_id=spec.tenant_id,
                host=self.host,
                endpoint=r.endpoint or "http://pending",
                state=state,
                pid=pid,
                restarts=r.restarts,
            )

    async def _add(self, spec: AgentSpec, remotes: dict[str, _Remote]) -> tuple[bool, str, str]:
        rid = uuid.uuid4().hex[:12]
        one = _one(spec)
        state = None
        if self.relay is not None:
            state = (self.relay.url, self.relay.token(spec.tenant_id, spec.agent_id))
        r = _Remote(rid, self._actor_cls.remote(one, None, state))
        res = await r.handle.start.remote()
        if res["state"] != "running":
            with contextlib.suppress(Exception):
                await r.handle.stop.remote()
            _kill(r.handle)
            return False, res.get("reason", ""), res.get("stderr", "")
        r.endpoint = res["endpoint"]
        remotes[rid] = r
        await self._publish(spec, r, "ready", res.get("pid"))
        r.watch = asyncio.get_running_loop().create_task(self._watch(spec, r))
        return True, "", ""

    async def _watch(self, spec: AgentSpec, r: _Remote) -> None:
        """Notice a dead actor (Ray restarts it), start it again, register its new endpoint."""
        import ray

        down = False
        while not r.stopping:
            try:
                info = await r.handle.info.remote()
            except ray.exceptions.RayActorError:
                if r.stopping:
                    return
                if not down:
                    down = True
                    r.restarts += 1
                    await self._publish(spec, r, "crashed", None)
                await asyncio.sleep(0.2)
                continue
            if info.get("state") == "starting":  # a fresh incarnation: nothing runs in it yet
                if not down:
                    r.restarts += 1
                    await self._publish(spec, r, "crashed", None)
                down = True
                try:
                    res = await r.handle.start.remote()
                except ray.exceptions.RayActorError:
                    continue
                if res["state"] == "running":
                    r.endpoint = res["endpoint"]
                    await self._publish(spec, r, "ready", res.get("pid"))
                    down = False
                continue
            down = False
            await asyncio.sleep(0.5)

    async def start_agent(self, spec: AgentSpec) -> StartResult:
        """One actor per initial replica; `failed` leaves none behind."""
        self.check(spec)
        remotes: dict[str, _Remote] = {}
        self.agents[spec.agent_id] = (spec, remotes)
        n = spec.target(spec.replicas)
        results = await asyncio.gather(*(self._add(spec, remotes) for _ in range(n)))
        bad = [(why, err) for ok, why, err in results if not ok]
        if bad:
            await self.stop_agent(spec.agent_id)
            return StartResult("failed", bad[0][0], bad[0][1])
        return StartResult("running")

    async def scale(self, agent_id: str, n: int) -> int:
        """Add or drain actors to reach `n` (clamped)."""
        spec, remotes = self.agents[agent_id]
        n = spec.target(n)
        if n > len(remotes):
            await asyncio.gather(*(self._add(spec, remotes) for _ in range(n - len(remotes))))
        for rid in list(remotes)[n:]:
            await self._stop(spec, remotes.pop(rid))
        return n

    async def _stop(self, spec: AgentSpec, r: _Remote) -> None:
        r.stopping = True
        if r.watch is not None:
            r.watch.cancel()
        await self._publish(spec, r, "draining", None)
        with contextlib.suppress(Exception):
            await r.handle.stop.remote()
        _kill(r.handle)
        if self.repo is not None:
            await self.repo.delete_replica(r.id)

    async def stop_agent(self, agent_id: str) -> None:
        """Drain and remove every actor of the agent."""
        got = self.agents.pop(agent_id, None)
        if got is None:
            return
        spec, remotes = got
        await asyncio.gather(*(self._stop(spec, r) for r in remotes.values()))

    def replicas(self, agent_id: str) -> list[dict[str, Any]]:
        """Endpoints and restart counts as the backend knows them (no remote call)."""
        got = self.agents.get(agent_id)
        if got is None:
            return []
        return [
            {
                "id": r.id,
                "state": "ready" if r.endpoint else "starting",
                "pid": None,
                "socket": "",
                "endpoint": r.endpoint,
                "restarts": r.restarts,
                "uid": None,
                "isolation": [],
                "uptime": None,
                "cpu_seconds": None,
                "memory_bytes": None,
                "oom_kills": 0,
            }
            for r in got[1].values()
        ]


def _one(spec: AgentSpec) -> AgentSpec:
    from dataclasses import replace

    return replace(spec, replicas=1)


def _kill(handle: Any) -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)
