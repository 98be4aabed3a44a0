"""SLOs (SLI, error budget, multi-window burn-rate alerts) and cost (prices, rollups, budgets)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentgate._core import Sketch
from agentgate.observe.cost import Usage, period_start
from agentgate.observe.feed import Deltas, RouteDelta
from agentgate.observe.service import ObserveService, ObserveSettings
from agentgate.observe.settings import Budget, CostConfig, ModelPrice, SloConfig
from agentgate.tenancy import create_tenant


@pytest_asyncio.fixture
async def svc(
    store: Any, database_url: str | None, tmp_path: Path, clock: Any
) -> AsyncIterator[ObserveService]:
    """An observe service with a price table."""
    settings = ObserveSettings(
        cost=CostConfig(
            prices={
                "m-small": ModelPrice(input=1.0, output=2.0),
                "m-big": ModelPrice(input=10.0, output=30.0),
            },
            budgets={"acme": Budget(amount=5.0, period="month", action="limit")},
        )
    )
    s = await ObserveService.open(store, database_url, tmp_path, settings, clock=clock)
    try:
        yield s
    finally:
        await s.mdb.close()


def _minute(agent: str, ok: int, bad: int, latencies: list[float]) -> Deltas:
    sk = Sketch()
    sk.add_many(latencies)
    return Deltas(routes=[RouteDelta(agent, "r", [0, 0, ok, 0, 0, bad], sk)])


async def test_slo_budget_and_burn_rate_alerts(svc: ObserveService, store: Any, clock: Any) -> None:
    t = await create_tenant(store, "system")
    rng = random.Random(3)
    # one hour at 20 % errors against a 99 % objective: burn rate 20 on every window
    for _ in range(60):
        lat = [rng.choice((0.05, 0.2)) for _ in range(100)]
        await svc.history.write(clock() - 30, _minute("api", 80, 20, lat))
        clock.advance(60)
    avail = SloConfig(name="api-avail", agent="api", objective=0.99)
    await svc.slos.put(t.id, avail)
    st = await svc.slos.status(avail)
    assert st["requests"] == 6000
    assert st["sli"] == pytest.approx(0.8)
    assert st["budget_remaining"] == pytest.approx(1 - 0.2 / 0.01)
    assert st["burn_rates"]["1h"] == pytest.approx(20.0)
    assert {(a["severity"], a["long_window"]) for a in st["alerts"]} == {
        ("page", "1h"),
        ("page", "6h"),
        ("ticket", "3d"),
    }
    lat = SloConfig(name="api-fast", agent="api", kind="latency", objective=0.9, threshold=0.1)
    await svc.slos.put(t.id, lat)
    st = await svc.slos.status(lat)
    assert 0.4 < st["sli"] < 0.6  # about half the answers took 200 ms
    # the burn-rate alerts go through the alert manager
    await svc.alerts.evaluate()
    active = await svc.alerts.active(t.id)
    burn = {(a["rule"], a["labels"]["window"]) for a in active if a["rule"].startswith("SLOBurn")}
    assert ("SLOBurn:api-avail", "1h") in burn and ("SLOBurn:api-fast", "3d") in burn
    # recovery: an hour without errors ends the fast page (5-minute window clean too)
    for _ in range(70):
        await svc.history.write(clock() - 30, _minute("api", 100, 0, [0.05] * 100))
        clock.advance(60)
    st = await svc.slos.status(avail)
    assert all(a["long_window"] != "1h" for a in st["alerts"])
    await svc.alerts.evaluate()
    burn = {
        (a["rule"], a["labels"]["window"])
        for a in await svc.alerts.active(t.id)
        if a["rule"].startswith("SLOBurn")
    }
    assert ("SLOBurn:api-avail", "1h") not in burn


async def test_cost_prices_rollups_and_budgets(svc: ObserveService, store: Any, clock: Any) -> None:
    acme = await create_tenant(store, "acme")
    day = 86400
    usage = []
    for i in range(48):  # two days, one record an hour for each agent
        at = clock() + i * 3600
        usage.append(Usage("acme", "acme/chat", "m-small", 100_000, 50_000, 10, at))
        usage.append(Usage("acme", "acme/code", "m-big", 10_000, 1_000, 1, at))
        usage.append(Usage("beta", "beta/x", "m-unknown", 5, 5, 1, at))
    total = await svc.cost.record(usage)
    per_chat = (100_000 * 1 + 50_000 * 2) / 1e6
    per_code = (10_000 * 10 + 1_000 * 30) / 1e6
    assert total == pytest.approx(48 * (per_chat + per_code))
    q = await svc.cost.query(clock() - 1, clock() + 2 * day, by="agent")
    items = {i["agent"]: i for i in q["items"]}
    assert items["acme/chat"]["cost"] == pytest.approx(48 * per_chat)
    assert items["acme/chat"]["requests"] == 480
    assert items["acme/code"]["input_tokens"] == 480_000
    assert q["unpriced"] == ["m-unknown"]
    # a range cutting days in the middle: day rows inside, hour rows at the edges (widened
    # outward to whole hours: the clock is 800 s past an hour, so hour 5 and hour 29 are in)
    part = await svc.cost.query(clock() + 5 * 3600, clock() + 29 * 3600, by="tenant", tenant="acme")
    assert part["items"][0]["cost"] == pytest.approx(25 * (per_chat + per_code))
    inner = await svc.cost.query(clock() + 5 * 3600 + 2800, clock() + 29 * 3600 - 800, by="model")
    assert sum(i["requests"] for i in inner["items"]) == 23 * 12  # records 6 … 28
    by_model = await svc.cost.query(clock(), clock() + 2 * day, by="model")
    assert {i["model"] for i in by_model["items"]} == {"m-small", "m-big", "m-unknown"}
    # budget: 5.0 a month, action limit
    clock.advance(2 * day)
    st = await svc.cost.check("acme")
    assert st is not None and st["period_start"] == period_start("month", clock())
    spent_this_month = st["spent"]
    assert spent_this_month > 5.0 and st["exceeded"]
    assert await svc.cost.limited() == ["acme"]
    await svc.alerts.evaluate()
    active = await svc.alerts.active(acme.id)
    assert [a["rule"] for a in active] == ["BudgetExceeded"]
    assert active[0]["labels"]["tenant"] == "acme"
    # the API budget wins over the config file's: alert only, higher amount
    await svc.cost.set_budget("acme", Budget(amount=1000.0, period="month", action="alert"))
    assert await svc.cost.limited() == []
    await svc.alerts.evaluate()
    assert await svc.alerts.active(acme.id) == []
    await svc.cost.delete_budget("acme")
    assert (await svc.cost.budget("acme")) == Budget(amount=5.0, period="month", action="limit")
