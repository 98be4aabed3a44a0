"""`agentgate serve`: one process with the data plane, the admin listener and the control plane.

The data plane is the Rust core's own listener on its own threads; the admin listener
(Starlette: health, metrics, agent state, the control-plane API) is served by granian in this
process's event loop. This module is the composition root: the only place that wires the data
plane (`agentgate.gateway`) to the control plane (store, API, factory).

Signals: SIGTERM/SIGINT stop accepting and drain in-flight requests; SIGHUP reloads the config
file (a changed file reloads by itself too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson

from agentgate.api.admin import create_app
from agentgate.api.app import control_app, control_plane
from agentgate.api.auth import admin_exposure_warning
from agentgate.bus.changes import Change, ChangeFeed
from agentgate.bus.http import bus_app
from agentgate.cli_runtime import runtime_env
from agentgate.config import Agent, ConfigError, Endpoint, GatewayConfig, Match, Route, Timeouts
from agentgate.errors import Forbidden
from agentgate.gateway.dataplane import Gateway
from agentgate.gateway.sources import ConfigFile, FixedSource
from agentgate.observe.cost_feed import CostFeed
from agentgate.observe.dataplane_feed import DataPlaneFeed
from agentgate.runtime.manager import DataPlaneLoad
from agentgate.runtime.store_source import FALLBACK_INTERVAL, StoreSource
from agentgate.security.upstream_secrets import UpstreamSecrets
from agentgate.settings import ENV_CONFIG, Settings
from agentgate.store import Store, open_store

__all__ = ["serve"]

log = logging.getLogger("agentgate")

DRAIN_SECONDS = 30.0


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


async def _listening_port(host: str, taken: set[int], seconds: float = 10.0) -> int:
    """The port this process listens on at `host` besides `taken` (granian binds port 0 for us
    and does not say which port it got), once it listens."""
    import psutil

    me = psutil.Process()
    end = asyncio.get_running_loop().time() + seconds
    while True:
        for c in me.net_connections(kind="tcp"):
            listening = c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port not in taken
            if listening and (c.laddr.ip == host or host in ("0.0.0.0", "::")):
                return int(c.laddr.port)
        if asyncio.get_running_loop().time() > end:
            raise RuntimeError(f"the admin listener on {host} did not open")
        await asyncio.sleep(0.01)


class _Admin:
    """An ASGI app on granian, embedded in this event loop: on `address`, or on a Unix socket
    (`uds`) only this process's data plane talks to."""

    def __init__(self, app: Any, address: str = "127.0.0.1:0", uds: Path | None = None) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        host, port = _split(address)
        self.host = host
        self.server = Server(
            app,
            address=host,
            port=port,
            uds=uds,
            interface=Interfaces.ASGI,
            websockets=False,
            log_level=_granian_level(),
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve until `stop`."""
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        # granian reports nothing when it is up: wait for its socket
        for _ in range(400):
            if self.task.done():
                self.task.result()
                raise RuntimeError("the admin listener stopped at start")
            if self.server._shd is not None or self.server._ssp is not None:
                break
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop serving and wait for it."""
        self.server.signal_handler_interrupt()  # type: ignore[no-untyped-call]
        if self.task is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DRAIN_SECONDS):
                    await self.task


def _granian_level() -> Any:
    from granian.log import LogLevels

    return LogLevels.warning


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_bytes(data)
    os.replace(tmp, path)


BUS_AGENT = "agentgate-bus"
"""The internal agent behind `/bus`: the message bus app on a private Unix socket."""


def _bus_source(sock: Path) -> FixedSource:
    """`/bus/…` through the gateway (its auth, limits and priorities) to the bus app; the
    config file may declare its own route to agent `agentgate-bus` (e.g. with a rate limit)."""
    agent = Agent(
        endpoints=(Endpoint(url=f"unix:{sock}"),),
        # long polls and event streams wait as long as the caller asked
        timeouts=Timeouts(first_byte=0, idle=0),
    )
    route = Route(
        id=BUS_AGENT,
        agent=BUS_AGENT,
        match=Match(path_prefix="/bus"),
        auth="required",
    )
    return FixedSource({BUS_AGENT: agent}, [route])


async def _gateway_tenant(request: Any) -> str:
    """The caller's tenant as the gateway authenticated it (the socket is private to it)."""
    tenant = request.headers.get("x-agentgate-tenant")
    if not tenant:
        raise Forbidden("the API key has no tenant: the bus is per tenant")
    return str(tenant)


def _activator(runtime: Any, source: StoreSource) -> Any:
    """Scale from zero: a request waits for `tenant/agent`; the runtime starts a replica and
    the store source is told at once instead of at its next poll."""

    async def activate(pool: str) -> None:
        tenant, sep, agent = pool.partition("/")
        if not sep:
            return  # a config-file agent: nothing to start
        try:
            if await runtime.activate(tenant, agent):
                source.poke()
        except Exception as e:  # one agent's failure must not stop the others' activations
            log.error("activation of %s failed: %s", pool, e)

    return activate


def _data_dir(cfg: GatewayConfig, settings: Settings) -> Path:
    return settings.data_dir or Path(cfg.data_dir)


async def _open_store(cfg: GatewayConfig, settings: Settings) -> Store:
    data_dir = _data_dir(cfg, settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    return await open_store(settings.database_url or cfg.database_url, data_dir)


async def _run(
    file: ConfigFile,
    settings: Settings,
    workers: int,
    listen: str,
    admin_listen: str,
    ports_file: str | None,
    quiet: bool,
) -> int:
    cfg = file.config
    try:
        # Migrations run here, once, before anything serves.
        store = await _open_store(cfg, settings)
    except Exception as e:  # a store we cannot open is a config problem: say which and stop
        print(
            f"agentgate: cannot open the store ({cfg.database_url or cfg.data_dir}): {e}",
            file=sys.stderr,
        )
        return 2
    gateway: Gateway | None = None
    costs: CostFeed | None = None

    def in_flight() -> dict[str, int]:
        # drains are reported from the data plane's own counts
        return {} if gateway is None else gateway.in_flight()

    def agents() -> list[Any]:
        return [] if gateway is None else gateway.agents()

    source = StoreSource(store, in_flight=in_flight)
    tasks: list[asyncio.Task[None]] = []
    feed = DataPlaneFeed(agents)
    env = dict(os.environ)
    env["AGENTGATE_DATA_DIR"] = str(_data_dir(cfg, settings).resolve())
    env.update(runtime_env(cfg, env))
    admin: _Admin | None = None
    bus_server: _Admin | None = None
    run_dir = Path(tempfile.mkdtemp(prefix="agentgate-"))
    stack = contextlib.AsyncExitStack()
    try:
        api = await stack.enter_async_context(
            control_plane(
                store,
                env,
                database_url=settings.database_url or cfg.database_url,
                data_dir=_data_dir(cfg, settings),
                feed=feed,
                load=DataPlaneLoad(agents),
                inflight=lambda url: None if gateway is None else gateway.endpoint_in_flight(url),
            )
        )
        await source.load()
        sources: list[Any] = [source]
        if api.state.bus is not None:
            sock = run_dir / "bus.sock"
            bus_server = _Admin(bus_app(api.state.bus, _gateway_tenant), uds=sock)
            await bus_server.start()
            sources.append(_bus_source(sock))
        upstream_secrets = UpstreamSecrets(api.state.security, store)
        gateway = await Gateway.create(
            cfg,
            workers=workers,
            sources=sources,
            resolve=upstream_secrets.resolve,
        )
        gw = gateway
        gw.sinks.append(feed.push)
        costs = CostFeed(api.state.observe.cost, gw.core.set_limited_tenants)
        gw.sinks.append(costs.push)
        runtime = api.state.runtime
        if runtime is not None:
            gw.on_activate = _activator(runtime, source)
        port = gw.listen(listen)
        host, _ = _split(listen)
        control = control_app(api, lambda: api)
        admin = _Admin(create_app(gw, control, keys=api.state.context), admin_listen)
        await admin.start()
        a_host, a_port = _split(admin_listen)
        if a_port == 0:
            a_port = await _listening_port(a_host, {port})
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        changes = ChangeFeed(api.state.bus) if api.state.bus is not None else None

        async def reinstall() -> None:
            await gw.install(file.config)

        async def file_changed() -> None:
            if await gw.install(file.config) and changes is not None:
                await changes.publish(
                    Change.of("config.reload", None, "config", {"file": file.path})
                )

        def spawn(coro: Awaitable[None]) -> None:
            tasks.append(loop.create_task(coro))  # type: ignore[arg-type]

        def on_hup() -> None:
            if file.reload():
                spawn(file_changed())
            else:
                print("agentgate: reload refused (see the log)", file=sys.stderr, flush=True)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        spawn(gw.run())
        spawn(costs.run())
        spawn(file.watch(file_changed))
        if changes is not None:
            # changes arrive on the bus at once; polling the store stays as the fallback
            source.interval = FALLBACK_INTERVAL
            spawn(source.follow(changes))
        spawn(source.run(reinstall))
        spawn(upstream_secrets.watch(reinstall))
        urls = {"listen": f"{host}:{port}", "admin": f"{a_host}:{a_port}"}
        if ports_file:
            _write_atomically(ports_file, orjson.dumps(urls))
        if not quiet:
            print(
                f"agentgate: data plane on http://{urls['listen']}  admin on http://{urls['admin']}",
                flush=True,
            )
        await stop.wait()
        return 0
    finally:
        if gateway is not None:
            await gateway.shutdown(DRAIN_SECONDS)
        if costs is not None:
            try:  # the drained requests' usage, before the store closes
                await costs.flush()
            except Exception:
                logging.getLogger(__name__).exception("cost: last flush failed")
        for t in tasks:
            t.cancel()
        if admin is not None:
            await admin.stop()
        if bus_server is not None:
            await bus_server.stop()
        await stack.aclose()
        shutil.rmtree(run_dir, ignore_errors=True)
        await store.close()


def serve(
    config_path: str,
    workers: int = 1,
    listen: str | None = None,
    admin_listen: str | None = None,
    quiet: bool = False,
    ports_file: str | None = None,
) -> int:
    """Run the gateway until SIGTERM/SIGINT; SIGHUP or a file change reloads the config."""
    try:
        file = ConfigFile(config_path)
    except ConfigError as e:
        print(f"agentgate: invalid config: {e}", file=sys.stderr)
        return 2
    cfg = file.config
    exposed = admin_exposure_warning(admin_listen or cfg.admin_listen, cfg.admin_auth)
    if exposed:
        print(f"agentgate: warning: {exposed}", file=sys.stderr, flush=True)
    # modules that read the config file by itself (observability, security) read this one
    os.environ[ENV_CONFIG] = file.path
    settings = Settings.from_env()
    children: list[subprocess.Popen[bytes]] = []
    if cfg.demo_echo:
        children.append(
            subprocess.Popen([sys.executable, "-m", "agentgate.gateway.demo", cfg.demo_echo])
        )
    main = _run(
        file,
        settings,
        workers,
        listen or cfg.listen,
        admin_listen or cfg.admin_listen,
        ports_file,
        quiet,
    )
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(main)
        return uvloop.run(main)
    except OSError as e:
        print(f"agentgate: {e}", file=sys.stderr)
        return 1
    finally:
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGINT)
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
