"""Fixtures of the runtime tests: the host's probed capabilities, supervisors on a real store."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentgate.runtime.capabilities import Capability, probe_subprocess
from agentgate.runtime.state_api import StoreCheckpoints
from agentgate.runtime.supervisor import Settings, Supervisor
from agentgate.store import Store, open_store
from agentgate.store.runtime import RuntimeRepo


@pytest.fixture(scope="session")
def caps() -> dict[str, Capability]:
    """What this host allows, probed once."""
    return probe_subprocess()


@pytest.fixture
def rt_root() -> Iterator[Path]:
    """A runtime root every uid may traverse (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="agentgate-rt-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def rt_store(rt_root: Path) -> AsyncIterator[Store]:
    """A SQLite store for the runtime's rows."""
    s = await open_store(None, rt_root)
    yield s
    await s.close()


MakeSup = Callable[..., Any]


@pytest.fixture
async def make_supervisor(
    rt_root: Path, rt_store: Store, caps: dict[str, Capability]
) -> AsyncIterator[MakeSup]:
    """Started supervisors, closed at the end: `await make_supervisor(caps, inflight, **settings)`
    (`inflight`: the data plane's requests in flight per endpoint, which drains wait for)."""
    made: list[Supervisor] = []

    async def make(
        caps_override: dict[str, Capability] | None = None,
        inflight: Callable[[str], int | None] | None = None,
        **kw: Any,
    ) -> Supervisor:
        settings = Settings(
            root=rt_root / f"rt{len(made)}",
            grace=2.0,
            backoff_base=0.05,
            backoff_max=0.4,
            unpublish_wait=0.02,
            housekeeping=0.2,
        )
        settings = replace(settings, **kw)
        repo = RuntimeRepo(rt_store.db, rt_store.clock)
        c = dict(caps)
        c.update(caps_override or {})
        sup = Supervisor(
            settings,
            repo=repo,
            checkpoints=StoreCheckpoints(repo),
            capabilities=c,
            inflight=inflight,
        )
        await sup.start()
        made.append(sup)
        return sup

    yield make
    for s in made:
        await s.close()
