"""Fixtures of the bus suites: one Kafka broker and one redis-server per session, and `make_bus`
parametrized over the three backends so every conformance test runs unchanged on each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from kafka_ephemeral import KafkaBroker, KafkaUnavailable, ephemeral_kafka
from redis_ephemeral import RedisServer
from service_check import service_unavailable

from agentgate.bus import Bus, BusSettings, TopicSettings, open_bus

BACKENDS = ["memory", "redis", "kafka"]
MakeBus = Callable[..., Awaitable[Bus]]


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A single-node KRaft broker for this session."""
    try:
        cm = ephemeral_kafka()
        broker = cm.__enter__()
    except (KafkaUnavailable, OSError) as e:
        service_unavailable("Kafka", str(e))
        return
    try:
        yield broker
    finally:
        cm.__exit__(None, None, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the broker's log to a failing test that used it."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "kafka_broker" in getattr(item, "fixturenames", ()):
        broker = item.funcargs.get("kafka_broker")  # type: ignore[attr-defined]
        if isinstance(broker, KafkaBroker):
            rep.sections.append(("kafka broker log (tail)", broker.log(20_000)))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The bus backend under test."""
    return str(request.param)


def _connect(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return {"redis_url": server.url}
    if backend == "kafka":
        broker: KafkaBroker = request.getfixturevalue("kafka_broker")
        return {"kafka_bootstrap": broker.bootstrap, "kafka_session_timeout": 1.0}
    return {}


@pytest.fixture
def bus_connection(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """BusSettings fields that point at the backend's server."""
    return _connect(backend, request)


@pytest.fixture
async def make_bus(backend: str, bus_connection: dict[str, Any]) -> AsyncIterator[MakeBus]:
    """`await make_bus(**topic_settings)`: a started bus of the backend (closed afterwards),
    every topic with the given settings (short visibility timeout and backoff by default)."""
    made: list[Bus] = []

    async def make(**kw: Any) -> Bus:
        bus_kw = {k: kw.pop(k) for k in ("max_in_flight", "publish_timeout") if k in kw}
        topic = TopicSettings(
            **({"visibility_timeout": 2.0, "retry_base": 0.05, "retry_max": 0.2} | kw)
        )
        settings = BusSettings(defaults=topic, **bus_kw, **bus_connection)
        bus = open_bus(settings, backend)  # type: ignore[arg-type]
        await bus.start()
        made.append(bus)
        return bus

    yield make
    for b in made:
        await b.close()


GroupExists = Callable[[Bus, str, str], Awaitable[bool]]


@pytest.fixture
def group_exists(backend: str) -> GroupExists:
    """`await group_exists(bus, topic, group)`: whether the backend itself still lists the
    group (memory: its table; Redis: XINFO GROUPS of each partition stream; Kafka: the
    broker's consumer group list)."""

    async def exists(bus: Bus, topic: str, group: str) -> bool:
        if backend == "memory":
            from agentgate.bus.memory import MemoryBus

            assert isinstance(bus, MemoryBus)
            t = bus._topics.get(topic)
            return t is not None and group in t.groups
        if backend == "redis":
            from redis.exceptions import ResponseError

            from agentgate.bus.redis_streams import RedisStreamsBus, _stream

            assert isinstance(bus, RedisStreamsBus)
            found = False
            for p in range(bus.settings.topic(topic).partitions):
                try:
                    groups = await bus.redis.xinfo_groups(_stream(bus.settings.prefix, topic, p))
                except ResponseError as e:
                    assert "no such key" in str(e).lower(), e
                    continue
                names = {
                    g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                    for g in groups
                }
                found = found or group in names
            return found
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bus.settings.kafka_bootstrap)
        await admin.start()
        try:
            return group in {g[0] for g in await admin.list_consumer_groups()}
        finally:
            await admin.close()

    return exists


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"
