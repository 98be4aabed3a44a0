"""StoreSource against the real store on both backends (no gateway process)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from test_factory import OPERATOR, PARAMS, doc, publish, setup

from agentgate.config import GatewayConfig, parse_config
from agentgate.runtime.store_source import StoreSource
from agentgate.store import Store
from agentgate.tenancy import create_key, revoke_key


async def test_poll_installs_on_change_expiry_and_reports_drains(store: Store, clock: Any) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    base = parse_config({})

    def cfg() -> GatewayConfig:
        return sync.contribute(base)

    in_flight = {"acme/bot": 2}
    sync = StoreSource(store, in_flight=lambda: in_flight, clock=clock)
    assert await sync.poll_once() is True and cfg().agents == {}
    assert await sync.poll_once() is False

    rec = await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    key, _ = await create_key(scope, "k", ["viewer"], expires_in=60)
    assert await sync.poll_once() is True
    assert cfg().route_ids() == ["acme/bot/0"]
    assert [k.id for k in cfg().auth.api_keys] == [key.id]

    clock.advance(61)  # expiry changes validity without a write: next_change_at catches it
    assert await sync.poll_once() is True and cfg().auth.api_keys == ()
    key2, _ = await create_key(scope, "k2", ["viewer"])
    await sync.poll_once()
    await revoke_key(scope, key2.id)
    assert await sync.poll_once() is True and cfg().auth.api_keys == ()

    await f.delete(scope, OPERATOR, "bot")
    await f.close()
    assert await sync.poll_once() is True
    assert cfg().route_ids() == [] and "acme/bot" in cfg().agents
    assert await store.system.agents.inflight(rec.agent.id, clock()) == [2]
    assert await f.reap() == 0
    in_flight["acme/bot"] = 0
    clock.advance(1)
    await sync.poll_once()
    assert await f.reap() == 1
    assert await sync.poll_once() is True and cfg().agents == {}


async def test_disabled_tenant_agents_leave_the_gateway(store: Store, clock: Any) -> None:
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    await f.create(scope, OPERATOR, "bot@^1", PARAMS)
    sync = StoreSource(store, clock=clock)
    await sync.poll_once()
    assert sync.contribute(parse_config({})).route_ids() == ["acme/bot/0"]
    await store.system.tenants.update(scope.tenant_id, disabled=True)
    assert await sync.poll_once() is True
    assert sync.contribute(parse_config({})).route_ids() == []


async def test_a_change_committed_here_reaches_the_gateway_without_a_poll(
    store: Store, clock: Any
) -> None:
    """The control plane shares the gateway's process: its commits poke the source, so an hour
    between polls does not delay a new agent or a revoked key."""
    f, scope, kp = await setup(store)
    await publish(scope, kp, doc())
    key, _ = await create_key(scope, "k", ["viewer"])
    sync = StoreSource(store, clock=clock, interval=3600)
    await sync.load()
    changes: asyncio.Queue[GatewayConfig] = asyncio.Queue()

    async def changed() -> None:
        changes.put_nowait(sync.contribute(parse_config({})))

    task = asyncio.create_task(sync.run(changed))
    try:
        await f.create(scope, OPERATOR, "bot@^1", PARAMS)
        cfg = await asyncio.wait_for(changes.get(), 30)
        assert cfg.route_ids() == ["acme/bot/0"]
        await revoke_key(scope, key.id)
        cfg = await asyncio.wait_for(changes.get(), 30)
        assert key.id not in [k.id for k in cfg.auth.api_keys]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await f.close()
    loads = sync.loads
    await create_key(scope, "k2", ["viewer"])  # a stopped source no longer listens
    assert sync.loads == loads and not sync._poked.is_set()
