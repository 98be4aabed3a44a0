"""Helpers for the control-plane API tests: an in-process API client, signed templates."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from agentgate import crypto
from agentgate.api.app import create_api, standalone
from agentgate.registry.digest import digest as template_digest
from agentgate.registry.signing import sign_template
from agentgate.security.services import Security
from agentgate.store import Store, open_store
from agentgate.tenancy import create_key, create_tenant


@dataclass
class Api:
    """An API under test: the app, a client with the system admin key, the store, a clock."""

    app: Starlette
    client: httpx.AsyncClient
    store: Store
    secret: str
    clock: Any
    observe: Any = None  # agentgate.observe.service.ObserveService, when made with one
    feed: Any = None  # its traffic: the test appends deltas, `observe.collector.flush()` reads
    runtime: Any = None  # agentgate.runtime.manager.Runtime on a real supervisor, if any

    async def aclose(self) -> None:
        """Close the client, the services and the store."""
        await self.client.aclose()
        if self.runtime is not None:
            await self.runtime.close()
        if self.observe is not None:
            await self.observe.close()
        await self.store.close()

    def as_(self, secret: str) -> dict[str, str]:
        """Headers presenting `secret`."""
        return {"Authorization": f"Bearer {secret}"}

    async def tenant_key(self, name: str, roles: list[str]) -> tuple[str, str]:
        """A new tenant `name` with one key of `roles`: (tenant id, secret)."""
        t = await create_tenant(self.store, name)
        _, secret = await create_key(self.store.scoped(t.id), f"{name}-key", roles)
        return t.id, secret


class Clock:
    """A settable epoch clock."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def template_doc(name: str = "summarizer", version: str = "1.2.3", **extra: Any) -> dict[str, Any]:
    """A valid http template document."""
    doc: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": f"{name} agent that summarises documents",
        "capabilities": ["text.summarize"],
        "spec": {"kind": "http", "endpoints": [{"url": "http://127.0.0.1:9"}]},
        "params_schema": {
            "type": "object",
            "properties": {"model": {"type": "string"}},
            "required": ["model"],
        },
    }
    doc.update(extra)
    return doc


def signed(doc: dict[str, Any], key: crypto.KeyPair, at: float) -> dict[str, Any]:
    """The publish body: document plus a DSSE envelope by `key`."""
    digest = template_digest(doc)
    env = sign_template(f"{doc['name']}@{doc['version']}", digest, key.private_key, signed_at=at)
    return {"template": doc, "envelope": env}


class Feed:
    """The data plane's side of the metrics collector, fed by the test (`Deltas`)."""

    def __init__(self) -> None:
        from agentgate.observe.feed import Deltas

        self.next = Deltas()

    def take(self) -> Any:
        """The deltas handed in since the last take."""
        from agentgate.observe.feed import Deltas

        out, self.next = self.next, Deltas()
        return out


async def _runtime(store: Store, root: Path) -> Any:
    """A real agent runtime: a supervisor with this host's capabilities under `root`."""
    from agentgate.runtime.capabilities import probe_subprocess
    from agentgate.runtime.factory import ScopeAudit
    from agentgate.runtime.manager import Runtime
    from agentgate.runtime.state_api import StoreCheckpoints
    from agentgate.runtime.supervisor import Settings, Supervisor
    from agentgate.security.audit import seal
    from agentgate.store.runtime import RuntimeRepo

    repo = RuntimeRepo(store.db, store.clock)
    sup = Supervisor(
        Settings(root=root, grace=2.0, backoff_base=0.05, unpublish_wait=0.02),
        repo=repo,
        checkpoints=StoreCheckpoints(repo),
        capabilities=probe_subprocess(),
    )
    rt = Runtime(store, sup, audit=ScopeAudit(seal))
    await rt.start()
    return rt


async def make_api(
    url: str | None,
    data_dir: Path,
    *,
    observe: bool = False,
    runtime_root: Path | None = None,
) -> tuple[Api, Any]:
    """Open a store, bootstrap the system tenant and build the app + client; with `observe`
    the observability service too (on the store's clock, traffic from `Api.feed`, loops not
    started: the test flushes and evaluates), with `runtime_root` a real agent runtime."""
    from agentgate.cli_control import bootstrap

    clock = Clock()
    store = await open_store(url, data_dir, clock=clock)
    _, _, secret = await bootstrap(store)
    # the secret routes need a key ring: a random master key per API under test
    sec = Security(store, env={"AGENTGATE_MASTER_KEY": os.urandom(32).hex()})
    feed = svc = rt = None
    if observe:
        from agentgate.observe.service import ObserveService, ObserveSettings

        feed = Feed()
        svc = await ObserveService.open(
            store, url, data_dir, ObserveSettings(), feed=feed, clock=clock
        )
    if runtime_root is not None:
        rt = await _runtime(store, runtime_root)
    app = standalone(create_api(store, security=sec, observe=svc, runtime=rt))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://api",
        headers={"Authorization": f"Bearer {secret}"},
    )
    return Api(app, client, store, secret, clock, svc, feed, rt), store
