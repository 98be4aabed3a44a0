"""The security jobs on their intervals (driven by a fake clock), including a scheduled backup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentgate.config import parse_config
from agentgate.security.scheduler import Scheduler
from agentgate.security.services import Security
from agentgate.store import Store, open_store


async def test_jobs_run_when_due(clock: Any, tmp_path: Path, master_hex: str) -> None:
    # one backend is enough for the timer logic; jobs on both backends are tested elsewhere
    store = await open_store(None, tmp_path, clock=clock)
    try:
        await _jobs(store, clock, tmp_path, master_hex)
    finally:
        await store.close()


async def _jobs(store: Store, clock: Any, tmp_path: Path, master_hex: str) -> None:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path),
            "secrets": {"check_every": "1h"},
            "privacy": {"retention": {"run_every": "1d"}},
            "backup": {
                "destinations": [{"name": "l", "type": "local", "path": str(tmp_path / "bk")}],
                "schedule": "6h",
            },
        }
    )
    sec = Security(store, env={"AGENTGATE_MASTER_KEY": master_hex}, config=cfg)
    s = Scheduler(sec, clock=clock)
    assert await s.run_pending() == []
    clock.advance(3600)
    assert await s.run_pending() == ["rotation"]
    clock.advance(5 * 3600)
    assert await s.run_pending() == ["rotation", "backup"]
    clock.advance(18 * 3600)
    assert await s.run_pending() == ["rotation", "retention", "backup"]
    assert all(j.last_error is None for j in s.jobs), [(j.name, j.last_error) for j in s.jobs]
    assert len(await (await sec.backups()).list()) == 1  # pruned to the newest of the day
    actions = {e.action for e in await store.system.audit.query()}
    assert "retention.run" in actions
    # without a master key the jobs report it and the loop goes on
    bare = Scheduler(Security(store, env={}, config=cfg), clock=clock)
    clock.advance(6 * 3600)
    assert "backup" in await bare.run_pending()
    assert {j.name: j.last_error for j in bare.jobs}["backup"] == "not configured"
    s.start()
    await s.stop()
