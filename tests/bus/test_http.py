"""Agent messaging over HTTP (`/bus/{topic}`), through the Python client, on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agentgate.bus import Bus
from agentgate.bus.client import BusClient, BusClientError
from agentgate.bus.http import api_key_tenant, bus_app
from agentgate.store import Store, open_store
from agentgate.tenancy import create_key, create_tenant

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(None, tmp_path)
    yield s
    await s.close()


async def tenant_key(store: Store, name: str) -> str:
    t = await create_tenant(store, name)
    _, secret = await create_key(store.scoped(t.id), "agent", ["operator"])
    return secret


async def test_publish_long_poll_ack_nack_stream(make_bus, store: Store, topic: str) -> None:
    bus: Bus = await make_bus(max_deliveries=2, visibility_timeout=2.0)
    app = bus_app(bus, api_key_tenant(store), max_body=1000)
    transport = httpx.ASGITransport(app=app)
    acme = BusClient("http://gw", await tenant_key(store, "acme"), transport=transport)
    first = await acme.publish(topic, b'{"job": 1}', key="doc-1", idempotency_key="j1")
    assert await acme.publish(topic, b"again", idempotency_key="j1") == first
    await acme.publish(topic, b"\xff\x00binary")
    got = await acme.fetch(topic, "workers", max=10, wait=5)
    assert [(m["data"], m["key"], m["attempt"]) for m in got] == [
        (b'{"job": 1}', "doc-1", 1),
        (b"\xff\x00binary", None, 1),
    ]
    assert got[0]["text"] == '{"job": 1}' and got[1]["text"] is None
    await acme.ack(topic, "workers", got[0]["id"])
    await acme.nack(topic, "workers", got[1]["id"], "cannot parse")
    with pytest.raises(BusClientError) as e:
        await acme.ack(topic, "workers", got[0]["id"])  # already acked
    assert e.value.status == 404
    # the nacked one comes again (attempt 2), then its second nack dead-letters it
    [again] = await acme.fetch(topic, "workers", wait=10)
    assert again["attempt"] == 2
    await acme.nack(topic, "workers", again["id"], "still cannot parse")
    [dead] = await acme.fetch(f"{topic}.dlq", "ops", wait=10)
    assert dead["data"] == b"\xff\x00binary" and dead["headers"]["x-error"] == "still cannot parse"
    # SSE: messages as they come, ended by max
    for i in range(3):
        await acme.publish(topic, b"sse %d" % i)
    seen = [m async for m in acme.stream(topic, "streamers", max=5, wait=10)]
    assert [m["data"] for m in seen][:2] == [b'{"job": 1}', b"\xff\x00binary"]
    assert [m["data"] for m in seen][2:] == [b"sse 0", b"sse 1", b"sse 2"]
    await acme.close()
    await app.state.members.close()


async def test_tenants_are_isolated_and_input_checked(make_bus, store: Store, topic: str) -> None:
    bus: Bus = await make_bus()
    app = bus_app(bus, api_key_tenant(store), max_body=100)
    transport = httpx.ASGITransport(app=app)
    acme = BusClient("http://gw", await tenant_key(store, "acme"), transport=transport)
    beta = BusClient("http://gw", await tenant_key(store, "beta"), transport=transport)
    await acme.publish(topic, b"acme's secret")
    assert await beta.fetch(topic, "workers", wait=1) == []  # same name, other tenant
    await beta.publish(topic, b"beta's")
    assert [m["data"] for m in await acme.fetch(topic, "workers", wait=5)] == [b"acme's secret"]
    with pytest.raises(BusClientError) as e:
        await acme.publish(topic, b"x" * 101)
    assert e.value.status == 413
    with pytest.raises(BusClientError) as e:
        await acme.fetch("bad topic!", "g")
    assert e.value.status == 422
    with pytest.raises(BusClientError) as e:
        await acme.fetch(topic, "no/slash")
    assert e.value.status == 422
    nobody = BusClient("http://gw", "ag_not_a_key", transport=transport)
    with pytest.raises(BusClientError) as e:
        await nobody.publish(topic, b"x")
    assert e.value.status == 401
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as raw:
        r = await raw.get(f"/bus/{topic}/messages", params={"group": "g", "max": "x"})
        assert r.status_code == 401  # auth before anything else
    for c in (acme, beta, nobody):
        await c.close()
    await app.state.members.close()
