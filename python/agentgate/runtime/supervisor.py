"""The local supervisor: one per host, inside `agentgate serve` (the control-plane process).

    rt = Supervisor(Settings(root=Path("/var/lib/agentgate/runtime")), repo=RuntimeRepo(...))
    await rt.start()
    result = await rt.start_agent(spec)      # claims warm replicas or starts them; waits ready
    await rt.scale(spec.agent_id, 3, reason="manual")
    await rt.stop_agent(spec.agent_id)       # drains
    await rt.close()

- `command` replicas: `python -m agentgate.runtime.launch` isolates itself and execs the command.
- `app` replicas: forked by the template version's fork server (`zygote.py`).
- Warm pools: per pool key (`AgentSpec.pool_key`), idle replicas already ready (readiness
  answered). Creating an agent claims them, so neither fork nor import is on that path; the pool
  refills in the background to `warm_pool`, more when agents are being created quickly.
- Ready replicas bound to an agent are published as `unix:/…` endpoints (table
  `agent_replicas`, which bumps `agents_version` so every gateway worker's snapshot sees them).
- A replica that exits unasked restarts after an exponential backoff (in the same slot: same
  socket, same endpoint); after `crash_loop_after` consecutive crashes it shows `crash_loop`.
- Scale-down and delete drain: unpublish, let the gateway see it, SIGTERM (servers finish
  in-flight requests), SIGKILL after `grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from agentgate.errors import AgentgateError
from agentgate.runtime import cgroups
from agentgate.runtime.capabilities import Capability, missing
from agentgate.runtime.isolation import Plan, blocked_dirs
from agentgate.runtime.launch import plan_to_json
from agentgate.runtime.logs import LogFiles
from agentgate.runtime.replica import CommandProc, Replica, ZygoteProc
from agentgate.runtime.spec import AgentSpec
from agentgate.runtime.state_api import CheckpointStore, StateServer
from agentgate.store.runtime import RuntimeRepo

__all__ = ["AgentRun", "Refused", "Settings", "StartResult", "Supervisor"]

log = logging.getLogger("agentgate.runtime.supervisor")
STDERR_LINES = 50


class Refused(AgentgateError):
    """The host cannot run this agent as its template demands (names what is missing)."""

    status = 422
    title = "Isolation unavailable"

    def __init__(self, missing: dict[str, str]) -> None:
        self.missing = missing
        text = "; ".join(f"{k}: {v}" for k, v in sorted(missing.items()))
        super().__init__(
            f"this host lacks isolation the template requires ($.template.spec.isolation): {text}"
        )

    def problem(self) -> dict[str, Any]:
        """Problem members plus what is missing and why."""
        return {**super().problem(), "missing": self.missing}


@dataclass(frozen=True, slots=True)
class Settings:
    """Supervisor knobs (defaults suit production; tests shorten the times)."""

    root: Path
    host: str = field(default_factory=socket.gethostname)
    python: str = sys.executable
    uid_base: int = 110_000
    uid_count: int = 50_000
    uid_dir: Path = Path("/run/agentgate/uids")  # host-wide claims: one uid, one replica
    grace: float = 10.0
    unpublish_wait: float = 0.1  # let gateway workers (25 ms polls) drop the endpoint first
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    crash_loop_after: int = 3
    stable_after: float = 60.0  # up this long: the consecutive-crash count resets
    log_max_bytes: int = 10 * 2**20
    log_keep: int = 3
    pool_cap: int = 64
    housekeeping: float = 2.0
    refill_delay: float = 0.05  # after a claim: let the new agent's first requests go first

    def backoff(self, failures: int) -> float:
        """Delay before restarting after the `failures`-th consecutive crash."""
        return float(min(self.backoff_max, self.backoff_base * 2.0 ** max(0, failures - 1)))


@dataclass(slots=True)
class StartResult:
    """How starting an agent went: `running`, or `failed` with the reason and stderr."""

    state: str
    reason: str = ""
    stderr: str = ""


@dataclass(eq=False)
class AgentRun:
    """An agent this supervisor runs."""

    spec: AgentSpec
    desired: int
    replicas: dict[str, Replica] = field(default_factory=dict)
    state: str = "starting"  # starting|running|failed|crash_loop|stopping
    reason: str = ""
    last_request: float = field(default_factory=time.monotonic)
    scale_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Zygote:
    """Client of one fork server process."""

    def __init__(self, sup: Supervisor, spec: AgentSpec) -> None:
        self.sup = sup
        self.spec = spec
        self.key = spec.zygote_key
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[str, asyncio.Future[int]] = {}
        self.exits: dict[int, asyncio.Future[int]] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.logs = LogFiles(sup.settings.root / "logs" / f"zygote-{self.key}")
        self.error = ""

    async def start(self) -> None:
        """Spawn the fork server and wait until it has imported the app."""
        ours, theirs = socket.socketpair()
        out, err = self.logs.open()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.sup.settings.python,
                "-m",
                "agentgate.runtime.zygote",
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(theirs.fileno(),),
                env=self.sup.base_env(),
                start_new_session=True,
            )
        finally:
            theirs.close()
            os.close(out)
            os.close(err)
        self.reader, self.writer = await asyncio.open_unix_connection(sock=ours)
        s = self.spec.spec
        first = {"app": s.app, "python_path": list(s.python_path), "env": dict(s.env)}
        self.writer.write(orjson.dumps(first) + b"\n")
        self.task = asyncio.get_running_loop().create_task(self._read())
        async with asyncio.timeout(s.readiness.timeout + 30):
            await asyncio.shield(self.ready)

    async def _read(self) -> None:
        assert self.reader is not None
        try:
            while line := await self.reader.readline():
                msg = orjson.loads(line)
                op = msg.get("op")
                if op == "ready":
                    self.ready.set_result(None)
                elif op == "forked":
                    fut = self.pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(int(msg["pid"]))
                elif op == "exit":
                    f = self.exits.setdefault(
                        int(msg["pid"]), asyncio.get_running_loop().create_future()
                    )
                    if not f.done():
                        f.set_result(int(msg["status"]))
                elif op == "error":
                    text = str(msg.get("error", ""))
                    fut = self.pending.pop(msg.get("id") or "", None)
                    if fut is not None and not fut.done():
                        fut.set_exception(OSError(text))
                    elif not self.ready.done():
                        self.error = text
                        self.ready.set_exception(RuntimeError(text))
        finally:
            err = RuntimeError(self.error or "the fork server exited")
            if not self.ready.done():
                self.ready.set_exception(err)
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(err)
            for f in self.exits.values():
                if not f.done():
                    f.set_result(-signal.SIGKILL)
            self.sup._zygotes.pop(self.key, None)

    async def fork(self, job: dict[str, Any]) -> ZygoteProc:
        """Ask for one child; returns its handle once forked."""
        assert self.writer is not None
        rid = job["id"]
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.writer.write(orjson.dumps({"op": "fork", **job}) + b"\n")
        pid = await fut
        exited = self.exits.setdefault(pid, asyncio.get_running_loop().create_future())
        return ZygoteProc(pid, exited)

    async def close(self) -> None:
        """Stop the fork server (its children get their parent-death signal)."""
        if self.writer is not None:
            self.writer.close()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
        if self.task is not None:
            self.task.cancel()
        self.logs.remove()


class Supervisor:
    """Runs agents' replicas on this host (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        repo: RuntimeRepo | None = None,
        checkpoints: CheckpointStore | None = None,
        capabilities: dict[str, Capability] | None = None,
        inflight: Callable[[str], int | None] | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.caps = capabilities if capabilities is not None else {}
        self.cgroups = cgroups.detect() if self.caps.get("cgroups", _NO).available else None
        # data plane → in-flight requests on one endpoint (`unix:/…`), None if unknown
        self.inflight = inflight
        self.agents: dict[str, AgentRun] = {}
        self.pools: dict[str, deque[Replica]] = {}
        self.pool_specs: dict[str, AgentSpec] = {}
        self._filling: dict[str, asyncio.Task[None]] = {}
        self._zygotes: dict[str, _Zygote] = {}
        self._zygote_lock: dict[str, asyncio.Lock] = {}
        self._uids: set[int] = set()
        self._by_state_socket: dict[str, Replica] = {}
        self._creates: deque[float] = deque(maxlen=1024)
        self._start_time = 1.0  # EWMA of start → ready (s): how long a refill takes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeper: asyncio.Task[None] | None = None
        self.state_server = (
            StateServer(checkpoints, self._owner) if checkpoints is not None else None
        )
        self.closed = False

    # ---- lifecycle ----
    async def start(self) -> None:
        """Prepare directories, forget this host's stale replica rows, start housekeeping."""
        root = self.settings.root
        for sub in ("replicas", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chmod(root / "replicas", 0o755)
        if self.repo is not None:
            await self.repo.delete_host(self.settings.host)
        if self.state_server is not None:
            await self.state_server.start()
        self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())

    async def close(self) -> None:
        """Stop every replica (drained, in parallel) and fork server."""
        self.closed = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        fills = list(self._filling.values())
        for t in fills:
            t.cancel()
        await asyncio.gather(*fills, return_exceptions=True)  # their cleanups run now
        # drains already under way (scale-down) finish: they own their replicas
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        stops = [self.stop_agent(aid) for aid in list(self.agents)]
        stops += [self._stop(r, publish=False) for q in self.pools.values() for r in list(q)]
        await asyncio.gather(*stops, return_exceptions=True)
        self.pools.clear()
        for z in list(self._zygotes.values()):
            await z.close()
        if self.state_server is not None:
            await self.state_server.close()

    def _spawn_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        t: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # ---- what the host allows ----
    def required(self, spec: AgentSpec) -> list[str]:
        """Mechanisms the agent's template demands (network none/loopback implies netns)."""
        req = set(spec.spec.isolation.require)
        if spec.spec.network != "egress":
            req.add("netns")
        return sorted(req)

    def check(self, spec: AgentSpec) -> None:
        """Raise `Refused` when the host lacks a required mechanism; the seccomp additions must
        compile (`SandboxProfileError`, a ValueError, names an unknown syscall)."""
        gone = missing(self.caps, self.required(spec))
        if gone:
            raise Refused(gone)
        if self.caps.get("seccomp", _NO).available:
            _seccomp_check(tuple(spec.spec.seccomp.deny), spec.spec.seccomp.on_deny)

    def base_env(self) -> dict[str, str]:
        """Environment of runtime helper processes (not the replicas: theirs is built)."""
        keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.setdefault("PATH", os.defpath)
        return env

    # ---- replicas ----
    def _alloc_uid(self) -> int | None:
        """A uid no other replica on this host has: claimed by an O_EXCL file in `uid_dir`
        (shared by every supervisor here), holding the claimer's pid so a dead one's claims
        can be taken back."""
        if not self.caps.get("unprivileged_uid", _NO).available:
            return None
        s = self.settings
        s.uid_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = uuid.uuid4().int
        for i in range(s.uid_count):
            uid = s.uid_base + (start + i) % s.uid_count
            if uid in self._uids:
                continue
            claim = s.uid_dir / str(uid)
            try:
                fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if not _stale(claim):
                    continue
                claim.unlink(missing_ok=True)
                try:
                    fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            self._uids.add(uid)
            return uid
        return None

    def _free_uid(self, uid: int) -> None:
        self._uids.discard(uid)
        (self.settings.uid_dir / str(uid)).unlink(missing_ok=True)

    def _plan(self, spec: AgentSpec, r: Replica, procs: list[str]) -> Plan:
        s = spec.spec
        caps = self.caps
        req = frozenset(self.required(spec))
        expose = [
            sys.prefix,
            sys.base_prefix,
            os.path.dirname(os.path.dirname(__file__)),
            str(r.dir),
        ]
        expose += list(s.python_path)
        for arg in s.command or ():
            if os.sep in arg and os.path.exists(arg):
                expose.append(os.path.abspath(arg))
            elif shutil.which(arg):
                expose.append(str(shutil.which(arg)))
                break
        exposed = tuple(os.path.realpath(p) for p in expose)
        mountns = caps.get("mountns", _NO).available
        if (
            r.uid is not None
            and not mountns
            and "unprivileged_uid" not in req
            and blocked_dirs(exposed, r.uid, r.uid)
        ):
            # without a mount namespace the uid could not reach the interpreter: keep root
            self._free_uid(r.uid)
            r.uid = None
        return Plan(
            run_dir=str(r.run_dir),
            network=s.network,
            cgroup_procs=tuple(procs),
            memory=spec.resources.memory,
            netns=caps.get("netns", _NO).available,
            mountns=mountns,
            landlock=caps.get("landlock", _NO).available,
            scratch=str(r.scratch),
            expose=exposed,
            uid=r.uid,
            gid=r.uid,
            seccomp=caps.get("seccomp", _NO).available,
            seccomp_deny=tuple(s.seccomp.deny),
            seccomp_action=s.seccomp.on_deny,
            required=req,
        )

    def _env(self, spec: AgentSpec, r: Replica) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(r.scratch),
            "TMPDIR": str(r.scratch),
        }
        env.update(spec.spec.env)
        env.update(
            AGENTGATE_SOCKET=str(r.socket),
            AGENTGATE_STATE_URL=f"unix:{r.state_socket}",
            AGENTGATE_SCRATCH=str(r.scratch),
            AGENTGATE_REPLICA=r.id,
        )
        return env

    def _new_replica(self, spec: AgentSpec) -> Replica:
        rid = uuid.uuid4().hex[:12]
        root = self.settings.root
        r = Replica(
            id=rid,
            key=spec.pool_key,
            dir=root / "replicas" / rid,
            logs=LogFiles(root / "logs" / rid, self.settings.log_max_bytes, self.settings.log_keep),
            uid=self._alloc_uid(),
        )
        r.prepare()
        return r

    async def _zygote(self, spec: AgentSpec) -> _Zygote:
        key = spec.zygote_key
        lock = self._zygote_lock.setdefault(key, asyncio.Lock())
        async with lock:
            z = self._zygotes.get(key)
            if z is None:
                z = _Zygote(self, spec)
                self._zygotes[key] = z
                try:
                    await z.start()
                except BaseException:
                    self._zygotes.pop(key, None)
                    await z.close()
                    raise
            return z

    async def _launch(self, spec: AgentSpec, r: Replica) -> None:
        """Start the replica's process (cold: a fork from the zygote, or the launcher)."""
        procs: list[str] = []
        if self.cgroups is not None:
            r.cgroup = f"r-{r.id}"
            limits = cgroups.CgroupLimits(
                cpu=spec.resources.cpu, memory=spec.resources.memory, pids=256
            )
            procs = await asyncio.to_thread(self.cgroups.create, r.cgroup, limits)
        plan = self._plan(spec, r, procs)
        env = self._env(spec, r)
        if self.state_server is not None and str(r.state_socket) not in self.state_server.sites:
            await self.state_server.add(r.state_socket, r.uid)
            self._by_state_socket[str(r.state_socket)] = r
        with contextlib.suppress(FileNotFoundError):
            r.socket.unlink()
        r.started_at = time.monotonic()
        if spec.kind == "app":
            z = await self._zygote(spec)
            r.proc = await z.fork(
                {
                    "id": r.id,
                    "plan": plan_to_json(plan),
                    "env": env,
                    "socket": str(r.socket),
                    "stdout": str(r.logs.stdout),
                    "stderr": str(r.logs.stderr),
                    "grace": self.settings.grace,
                }
            )
        else:
            job = {"plan": plan_to_json(plan), "argv": list(spec.spec.command or ()), "env": env}
            out, err = r.logs.open()
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.settings.python,
                    "-m",
                    "agentgate.runtime.launch",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    env=self.base_env(),
                    start_new_session=True,
                )
            finally:
                os.close(out)
                os.close(err)
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps(job))
            proc.stdin.close()
            r.proc = CommandProc(proc)
        r.isolation = [m for m in _APPLIED if self._applies(m, plan)]

    def _applies(self, mechanism: str, plan: Plan) -> bool:
        return {
            "rlimits": True,
            "cgroups": bool(plan.cgroup_procs),
            "netns": plan.netns and plan.network != "egress",
            "mountns": plan.mountns,
            "landlock": plan.landlock,
            "unprivileged_uid": plan.uid is not None,
            "seccomp": plan.seccomp,
        }[mechanism]

    async def _ready(self, spec: AgentSpec, r: Replica) -> bool:
        """Poll the readiness path over the socket until 2xx, exit or timeout."""
        rd = spec.spec.readiness
        end = time.monotonic() + rd.timeout
        delay = 0.002
        assert r.proc is not None
        exited = asyncio.ensure_future(r.proc.wait())
        try:
            while time.monotonic() < end:
                if exited.done():
                    r.last_exit = exited.result()
                    return False
                if r.socket.exists() and await _probe(r.socket, rd.path):
                    r.ready_at = time.monotonic()
                    took = r.ready_at - r.started_at
                    self._start_time = 0.8 * self._start_time + 0.2 * took
                    return True
                await asyncio.wait({exited}, timeout=delay)
                delay = min(delay * 2, 0.01)
            return False
        finally:
            exited.cancel()

    async def _kill(self, r: Replica) -> None:
        r.stopping = True
        r.signal(signal.SIGKILL)
        if r.proc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await r.proc.wait()

    async def _cold(
        self, spec: AgentSpec, agent_id: str | None = None
    ) -> tuple[Replica | None, str]:
        """A new ready replica (bound to `agent_id` from the start when given), or (None, why)
        after cleaning up everything it started."""
        r = self._new_replica(spec)
        if agent_id is not None:
            r.bind(agent_id)
        try:
            await self._launch(spec, r)
            ok = await self._ready(spec, r)
        except asyncio.CancelledError:
            # cancelled mid-start (a pool refill at close): leave nothing running
            r.signal(signal.SIGKILL)
            if r.cgroup is not None and self.cgroups is not None:
                with contextlib.suppress(OSError):
                    self.cgroups.kill(r.cgroup)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cleanup(r))
            raise
        except Exception as e:  # fork server could not import the app, or fork failed
            await self._discard(r)
            text = str(e).strip()
            last = text.splitlines()[-1] if text else type(e).__name__
            return None, f"the fork server failed: {last}\n{text}"
        if not ok:
            why = (
                f"exited with status {r.last_exit} before it was ready"
                if r.last_exit is not None
                else f"not ready within {spec.spec.readiness.timeout:g}s "
                f"(GET {spec.spec.readiness.path} on its socket)"
            )
            stderr = r.logs.stderr_tail(STDERR_LINES)
            await self._discard(r)
            return None, why + ("\n" + stderr if stderr else "")
        return r, ""

    async def _discard(self, r: Replica) -> None:
        """Kill and remove everything of a replica."""
        await self._kill(r)
        await self._cleanup(r)

    async def _cleanup(self, r: Replica) -> None:
        if self.state_server is not None:
            await self.state_server.remove(r.state_socket)
        self._by_state_socket.pop(str(r.state_socket), None)
        if r.cgroup is not None and self.cgroups is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self.cgroups.remove, r.cgroup)
        if r.uid is not None:
            self._free_uid(r.uid)
        await asyncio.to_thread(r.remove_files)
        r.state = "stopped"

    # ---- warm pools ----
    def pool_target(self, spec: AgentSpec) -> int:
        """`warm_pool`, more when creations outpace refills (recent rate × start time)."""
        base = spec.scaling.warm_pool
        if base == 0:
            return 0
        now = time.monotonic()
        recent = sum(1 for t in self._creates if now - t <= 60.0)
        burst = math.ceil(recent / 60.0 * self._start_time * 2)
        return min(self.settings.pool_cap, max(base, min(base * 4, base + burst)))

    def prewarm(self, spec: AgentSpec) -> asyncio.Task[None] | None:
        """Start filling the pool of the spec's key in the background."""
        key = spec.pool_key
        self.pool_specs.setdefault(key, spec)
        if self.closed or self.pool_target(spec) <= len(self.pools.get(key, ())):
            return None
        t = self._filling.get(key)
        if t is None or t.done():
            t = asyncio.get_running_loop().create_task(self._fill(key))
            self._filling[key] = t
        return t

    async def wait_pool(self, spec: AgentSpec, n: int | None = None, within: float = 60) -> int:
        """Fill the pool now and wait until it holds `n` (default: the target) ready replicas."""
        want = self.pool_target(spec) if n is None else n
        end = time.monotonic() + within
        while len(self.pools.get(spec.pool_key, ())) < want and time.monotonic() < end:
            t = self.prewarm(spec)
            if t is None:
                await asyncio.sleep(0.01)
            else:
                await asyncio.wait({t}, timeout=max(0.0, end - time.monotonic()))
        return len(self.pools.get(spec.pool_key, ()))

    async def _fill(self, key: str) -> None:
        spec = self.pool_specs[key]
        q = self.pools.setdefault(key, deque())
        failures = 0
        while not self.closed and len(q) < self.pool_target(spec) and failures < 3:
            r, why = await self._cold(spec)
            if r is None:
                failures += 1
                log.warning("warm replica for %s failed: %s", spec.name, why.splitlines()[0])
                continue
            r.state = "idle"
            r.watcher = asyncio.get_running_loop().create_task(self._watch_idle(r, q))
            q.append(r)

    async def _watch_idle(self, r: Replica, q: deque[Replica]) -> None:
        assert r.proc is not None
        status = await r.proc.wait()
        if r.state == "idle":  # died while waiting in the pool: drop it
            with contextlib.suppress(ValueError):
                q.remove(r)
            log.warning("idle replica %s exited (%s)", r.id, status)
            await self._cleanup(r)

    def _claim(self, spec: AgentSpec) -> Replica | None:
        q = self.pools.get(spec.pool_key)
        while q:
            r = q.popleft()
            if r.state == "idle" and r.proc is not None:
                if r.watcher is not None:
                    r.watcher.cancel()
                return r
        return None

    # ---- agents ----
    async def start_agent(self, spec: AgentSpec) -> StartResult:
        """Run an agent: claim or start its initial replicas and wait until they are ready (or
        one fails: then nothing is left running and the result says why)."""
        self.check(spec)
        self._creates.append(time.monotonic())
        run = AgentRun(spec=spec, desired=spec.target(spec.replicas))
        self.agents[spec.agent_id] = run
        self.pool_specs.setdefault(spec.pool_key, spec)
        async with run.scale_lock:
            results = await asyncio.gather(*(self._add(run) for _ in range(run.desired)))
        bad = [why for ok, why in results if not ok]
        if bad:
            run.state, run.reason = "failed", bad[0]
            await asyncio.gather(*(self._discard(r) for r in list(run.replicas.values())))
            for rid in list(run.replicas):
                await self._unpublish(run, rid, delete=True)
            run.replicas.clear()
            self.agents.pop(spec.agent_id, None)
            reason, _, stderr = bad[0].partition("\n")
            return StartResult("failed", reason, stderr)
        run.state = "running"
        if spec.scaling.warm_pool:
            # later, like the refill after a claim: forking now would compete with this create's
            # store writes and the agent's first request on the event loop
            asyncio.get_running_loop().call_later(self.settings.refill_delay, self.prewarm, spec)
        return StartResult("running")

    async def _add(self, run: AgentRun) -> tuple[bool, str]:
        spec = run.spec
        r = self._claim(spec)
        if r is None:
            r, why = await self._cold(spec, spec.agent_id)
            if r is None:
                return False, why
        if spec.scaling.warm_pool:  # refill in the background, just after this claim
            asyncio.get_running_loop().call_later(self.settings.refill_delay, self.prewarm, spec)
        r.bind(spec.agent_id)
        r.state = "ready"
        run.replicas[r.id] = r
        await self._publish(run, r)
        r.watcher = asyncio.get_running_loop().create_task(self._watch(run, r))
        return True, ""

    async def _publish(self, run: AgentRun, r: Replica) -> None:
        if self.repo is None:
            return
        await self.repo.put_replica(
            r.id,
            agent_id=run.spec.agent_id,
            tenant_id=run.spec.tenant_id,
            host=self.settings.host,
            endpoint=r.endpoint,
            state=r.state,
            pid=r.pid,
            restarts=r.restarts,
        )

    async def _unpublish(self, run: AgentRun, rid: str, *, delete: bool = False) -> None:
        if self.repo is None:
            return
        if delete:
            await self.repo.delete_replica(rid)
            return
        r = run.replicas.get(rid)
        if r is not None:
            await self._publish(run, r)

    async def _watch(self, run: AgentRun, r: Replica) -> None:
        """Restart the replica whenever it exits unasked (exponential backoff)."""
        s = self.settings
        while True:
            assert r.proc is not None
            status = await r.proc.wait()
            r.last_exit = status
            if r.stopping or self.closed or run.state == "stopping":
                return
            now = time.monotonic()
            if r.ready_at is not None and now - r.ready_at >= s.stable_after:
                r.failures = 0
            r.failures += 1
            r.restarts += 1
            r.state = "crash_loop" if r.failures >= s.crash_loop_after else "crashed"
            if r.state == "crash_loop":  # with the replica's, before any await: one view
                run.state = "crash_loop"
                run.reason = f"replica {r.id} exited {r.failures} times in a row (last: {status})"
            tail = r.logs.stderr_tail(STDERR_LINES)
            log.warning(
                "replica %s of %s exited (%s); restart %d", r.id, run.spec.name, status, r.restarts
            )
            await self._publish(run, r)  # no longer 'ready': leaves the gateway's pool
            if r.state == "crash_loop" and self.repo is not None:
                await self.repo.set_status(
                    run.spec.agent_id, run.spec.tenant_id, "crash_loop", run.reason, tail
                )
            await asyncio.sleep(s.backoff(r.failures))
            if r.stopping or self.closed or run.state == "stopping":
                return
            try:
                await self._launch(run.spec, r)
                ok = await self._ready(run.spec, r)
            except Exception as e:
                log.warning("restart of %s failed: %s", r.id, e)
                ok = False
            if not ok:
                if r.proc is not None and r.last_exit is None:
                    r.signal(signal.SIGKILL)
                continue  # the loop sees the exit and backs off further
            r.state = "ready"
            await self._publish(run, r)
            if run.state == "crash_loop" and all(x.state == "ready" for x in run.replicas.values()):
                run.state, run.reason = "running", ""
                if self.repo is not None:
                    await self.repo.clear_status(run.spec.agent_id)

    async def _stop(self, r: Replica, *, publish: bool = True, run: AgentRun | None = None) -> None:
        """Drain one replica: unpublish, wait for the gateway to notice, SIGTERM, SIGKILL after
        the grace period; then remove its files."""
        r.stopping = True
        if r.watcher is not None and r.watcher is not asyncio.current_task():
            r.watcher.cancel()
        if publish and run is not None:
            r.state = "draining"
            await self._unpublish(run, r.id)
            await asyncio.sleep(self.settings.unpublish_wait)
            await self._wait_idle(r)
        r.signal(signal.SIGTERM)
        if r.proc is not None:
            try:
                async with asyncio.timeout(self.settings.grace):
                    await r.proc.wait()
            except TimeoutError:
                r.signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await r.proc.wait()
        if run is not None:
            await self._unpublish(run, r.id, delete=True)
        await self._cleanup(r)

    async def _wait_idle(self, r: Replica) -> None:
        """Wait (up to `grace`) until the data plane reports nothing in flight on the replica;
        servers also finish in-flight requests on SIGTERM, so without a report we go on."""
        if self.inflight is None:
            return
        end = time.monotonic() + self.settings.grace
        while time.monotonic() < end:
            n = self.inflight(r.endpoint)
            if not n:
                return
            await asyncio.sleep(0.02)

    async def scale(self, agent_id: str, n: int) -> int:
        """Set the agent's replica count (clamped to min/max); returns the count set."""
        run = self.agents[agent_id]
        async with run.scale_lock:
            n = run.spec.target(n)
            run.desired = n
            live = [r for r in run.replicas.values() if not r.stopping]
            if n > len(live):
                await asyncio.gather(*(self._add(run) for _ in range(n - len(live))))
            elif n < len(live):
                victims = sorted(live, key=lambda r: (r.state == "ready", -r.started_at))
                victims = victims[: len(live) - n]
                for r in victims:
                    run.replicas.pop(r.id, None)
                    self._spawn_task(self._stop(r, run=run))
            return n

    async def stop_agent(self, agent_id: str) -> None:
        """Drain and stop every replica of the agent; forget it."""
        run = self.agents.pop(agent_id, None)
        if run is None:
            return
        run.state = "stopping"
        reps = list(run.replicas.values())
        run.replicas.clear()
        await asyncio.gather(*(self._stop(r, run=run) for r in reps), return_exceptions=True)

    def replicas(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's replicas with their accounting."""
        run = self.agents.get(agent_id)
        if run is None:
            return []
        out = []
        for r in run.replicas.values():
            stats = None
            if r.cgroup is not None and self.cgroups is not None:
                with contextlib.suppress(OSError):
                    stats = self.cgroups.stats(r.cgroup)
            out.append(r.info(stats))
        return out

    async def _owner(self, sock: str, within: float) -> tuple[str, str] | None:
        r = self._by_state_socket.get(sock)
        if r is None:
            return None
        if r.agent_id is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await r.bound.wait()
        if r.agent_id is None:
            return None
        run = self.agents.get(r.agent_id)
        return None if run is None else (run.spec.tenant_id, run.spec.agent_id)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.housekeeping)
            try:
                reps = [r for run in self.agents.values() for r in run.replicas.values()]
                reps += [r for q in self.pools.values() for r in q]
                await asyncio.to_thread(_rotate_all, reps)
                for key, spec in list(self.pool_specs.items()):
                    if len(self.pools.get(key, ())) < self.pool_target(spec):
                        self.prewarm(spec)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("runtime housekeeping failed")


def _stale(claim: Path) -> bool:
    """Whether a uid claim's supervisor is gone."""
    try:
        pid = int(claim.read_text() or "0")
    except (OSError, ValueError):
        return False  # being written right now
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@functools.lru_cache(maxsize=256)
def _seccomp_check(deny: tuple[str, ...], on_deny: str) -> int:
    """Compile the profile once per distinct deny list (`SandboxProfileError`, a ValueError,
    names a bad syscall)."""
    from agentgate import _core

    return _core.seccomp_check(list(deny), _core.DenyAction(on_deny))


def _rotate_all(reps: list[Replica]) -> None:
    for r in reps:
        r.logs.rotate()


async def _probe(sock: Path, path: str) -> bool:
    try:
        conn = aiohttp.UnixConnector(path=str(sock))
        async with (
            aiohttp.ClientSession(connector=conn) as s,
            s.get(f"http://replica{path}", timeout=aiohttp.ClientTimeout(total=2)) as resp,
        ):
            return 200 <= resp.status < 300
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


_NO = Capability(False, "not probed")
_APPLIED = ("rlimits", "cgroups", "netns", "mountns", "landlock", "unprivileged_uid", "seccomp")
