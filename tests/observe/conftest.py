"""Fixtures of the observability tests: the metrics connection on each store backend."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from observe_helpers import EchoUpstream, Served
from observe_servers import Alertmanager, Receiver, SmtpServer, required

from agentgate.observe.db import MetricsDB, open_metrics_db


@pytest_asyncio.fixture
async def mdb(store: Any, database_url: str | None, tmp_path: Path) -> AsyncIterator[MetricsDB]:
    """The metrics connection to the (migrated) store of the parametrized backend."""
    db = await open_metrics_db(database_url, tmp_path)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """An HTTP server recording Slack and webhook posts."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS and AUTH required."""
    s = SmtpServer().start(tmp_path_factory.mktemp("smtp"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def alertmanager() -> Iterator[Alertmanager]:
    """Debian's Prometheus Alertmanager, once per session."""
    required(
        "prometheus-alertmanager",
        os.path.exists(Alertmanager.BIN),
        "apt-get install prometheus-alertmanager (scripts/services.sh does)",
    )
    am = Alertmanager().start()
    yield am
    am.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    """`agentgate serve` (1 s metrics flush) in front of the echo agent, and an admin key."""
    from agentgate.cli_control import bootstrap
    from agentgate.store import open_store

    tmp = tmp_path_factory.mktemp("dash")
    data = tmp / "data"

    async def boot() -> str:
        store = await open_store(None, data)
        try:
            _, _, secret = await bootstrap(store)
            return secret
        finally:
            await store.close()

    secret = asyncio.run(boot())
    up = EchoUpstream().start()
    cfg = f"""
data_dir: {data}
agents:
  echo:
    endpoints: [{{url: "http://127.0.0.1:{up.port}"}}]
routes:
  - id: echo
    match: {{path_prefix: /agents/echo}}
    agent: echo
    strip_prefix: true
metrics:
  flush_interval: 1s
alerts:
  evaluation_interval: 1s
"""
    gw = Served(tmp, cfg)
    try:
        yield gw, secret
    finally:
        gw.stop()
        up.stop()
