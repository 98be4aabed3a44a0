"""Top-level fixtures: a throwaway PostgreSQL server, per-test databases, a store on each backend.

`store` is parametrized over `sqlite` and `postgres`; use it in any test that should pass on
both. PostgreSQL comes from AGENTGATE_TEST_DATABASE_URL when set (its user must be allowed to
create databases), else from a server started once per session (tests/pg_ephemeral.py).
If PostgreSQL is unavailable the postgres cases fail under CI=true and skip (with the reason)
otherwise.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pg_ephemeral import PgUnavailable, ephemeral_postgres
from redis_ephemeral import RedisServer, RedisUnavailable, ephemeral_redis
from service_check import service_unavailable


class FakeClock:
    """A settable UTC epoch clock for stores and services (tests never sleep)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.t += seconds


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _redis(fsync: str) -> Iterator[RedisServer]:
    try:
        cm = ephemeral_redis(fsync=fsync)
        server = cm.__enter__()
    except (RedisUnavailable, OSError) as e:
        service_unavailable("redis-server", str(e))
        return
    try:
        yield server
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for this session (Unix socket, AOF with appendfsync always)."""
    yield from _redis("always")


@pytest.fixture(scope="session")
def redis_volatile() -> Iterator[RedisServer]:
    """A second redis-server for this session, with the AOF fsynced once a second as state of
    rate limits is usually kept: lease round trips do not wait for this host's disk."""
    yield from _redis("everysec")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of an administrative database on a PostgreSQL server for this session."""
    given = os.environ.get("AGENTGATE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    try:
        cm = ephemeral_postgres()
        url = cm.__enter__()
    except (PgUnavailable, OSError) as e:
        _unavailable(str(e))
        return
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)


async def _admin(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards)."""
    # Sync fixture with its own short-lived loop: usable from sync and async tests alike.
    name = f"t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    base, _, _ = pg_server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock starting at a fixed epoch time."""
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend under test."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in tmp_path) or the URL of a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def store(
    database_url: str | None, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[object]:
    """An open, migrated `agentgate.store.Store` on the parametrized backend."""
    from agentgate.store import open_store

    s = await open_store(database_url, tmp_path, clock=clock)
    try:
        yield s
    finally:
        await s.close()
