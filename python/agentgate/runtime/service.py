"""The runtime inside `agentgate serve`: built from the environment the server sets.

- `AGENTGATE_RUNTIME`: `local` (default), `ray`, or `off`;
- `AGENTGATE_RUNTIME_DIR`: replica sockets, scratch and logs (default `<data dir>/runtime`);
- `AGENTGATE_RAY_ADDRESS`: the Ray cluster for `ray` (`runtime: {backend: ray, address: …}`).

`agentgate serve` (one per host) runs it, so there is one supervisor per host.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from agentgate.runtime.autoscaler import LoadSource
from agentgate.runtime.capabilities import probe_subprocess
from agentgate.runtime.manager import Backend, Runtime
from agentgate.runtime.state_api import StoreCheckpoints
from agentgate.runtime.supervisor import Settings, Supervisor
from agentgate.store import Store
from agentgate.store.runtime import RuntimeRepo

__all__ = ["open_runtime"]

log = logging.getLogger("agentgate.runtime")


async def open_runtime(
    store: Store,
    env: Mapping[str, str],
    *,
    load: LoadSource | None = None,
    inflight: Callable[[str], int | None] | None = None,
) -> Runtime | None:
    """Start the configured runtime backend (None when `AGENTGATE_RUNTIME=off`); `load` is the
    data plane's per-agent load, for autoscaling, and `inflight` its requests in flight per
    endpoint URL, which a drain waits for."""
    from agentgate.runtime.factory import ScopeAudit
    from agentgate.security.audit import seal

    mode = env.get("AGENTGATE_RUNTIME", "local")
    if mode == "off":
        return None
    data_dir = Path(env.get("AGENTGATE_DATA_DIR") or ".")
    root = Path(os.path.abspath(env.get("AGENTGATE_RUNTIME_DIR") or data_dir / "runtime"))  # noqa: ASYNC240
    caps = await asyncio.to_thread(probe_subprocess)
    repo = RuntimeRepo(store.db, store.clock)
    backend: Backend
    if mode == "ray":
        from agentgate.runtime.ray_backend import RayBackend

        backend = RayBackend(
            address=env.get("AGENTGATE_RAY_ADDRESS"),
            repo=repo,
            checkpoints=StoreCheckpoints(repo),
            caps=caps,
        )
    elif mode == "local":
        backend = Supervisor(
            Settings(root=root),
            repo=repo,
            checkpoints=StoreCheckpoints(repo),
            capabilities=caps,
            inflight=inflight,
        )
    else:
        raise ValueError(f"AGENTGATE_RUNTIME must be local, ray or off, got {mode!r}")
    rt = Runtime(store, backend, audit=ScopeAudit(seal), load=load, name=mode)
    await rt.start()
    log.info("agent runtime %s in %s", mode, root)
    return rt
