"""The metrics store's own connection to the control-plane database.

Metrics are written every flush interval in batches of thousands of rows and read in ranges of
tens of thousands, so they get their own connection instead of sharing the control plane's:
on SQLite a second connection to the same WAL file (readers never wait for the writer, and a
long metrics query never holds the control plane's connection), on PostgreSQL a small asyncpg
pool. Both give `executemany` and rows as tuples, which the shared `store.Database` interface
does not. The schema itself comes from the store's migrations (0020+).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

__all__ = ["MetricsDB", "Tx", "open_metrics_db"]

T = TypeVar("T")
Args = Sequence[Any]

_PG_LOCK = 0x61676D6574  # advisory lock: one metrics writer at a time across gateways


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    n = iter(range(1, 100_000))
    return re.sub(r"\?", lambda _: f"${next(n)}", sql)


class Tx(Protocol):
    """Statements inside one transaction."""

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """All rows, as tuples."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Args]) -> None:
        """One statement for each argument tuple."""
        ...


class MetricsDB(Protocol):
    """Reads outside transactions, writes inside `transaction()`."""

    dialect: Literal["sqlite", "postgresql"]

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """All rows, as tuples."""
        ...

    def transaction(self) -> Any:
        """An async context manager yielding a `Tx` (serialised with other metrics writers)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


class _SqliteTx:
    def __init__(self, db: SqliteMetricsDB) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self._db._run(lambda c: c.execute(sql, args).fetchall())

    async def executemany(self, sql: str, rows: Sequence[Args]) -> None:
        await self._db._run(lambda c: c.executemany(sql, rows))


class SqliteMetricsDB:
    """A dedicated connection (and thread) on the SQLite file."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, pool: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._pool = pool
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteMetricsDB:
        """Connect to the file (WAL, as the control plane sets it)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgate-metrics")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            return conn

        return cls(await asyncio.get_running_loop().run_in_executor(pool, connect), pool)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self._conn)

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """All rows, as tuples."""
        async with self._lock:
            return await self._run(lambda c: c.execute(sql, args).fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """BEGIN IMMEDIATE … COMMIT (rolled back on an exception)."""
        async with self._lock:
            await self._run(lambda c: c.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTx(self)
            except BaseException:
                await self._run(lambda c: c.execute("ROLLBACK"))
                raise
            await self._run(lambda c: c.execute("COMMIT"))

    async def close(self) -> None:
        """Close the connection and its thread."""
        async with self._lock:
            await self._run(lambda c: c.close())
        self._pool.shutdown(wait=True)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._c = conn

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._c.fetch(_pg(sql), *args)]

    async def executemany(self, sql: str, rows: Sequence[Args]) -> None:
        if rows:
            await self._c.executemany(_pg(sql), rows)


class PgMetricsDB:
    """A small asyncpg pool of its own."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PgMetricsDB:
        """Connect a pool (1 to 4 connections)."""
        import asyncpg  # type: ignore[import-untyped]

        # no JIT: metrics queries are short index scans, and compiling one took seconds when a
        # bad estimate tipped a scan over jit_above_cost
        return cls(
            await asyncpg.create_pool(url, min_size=1, max_size=4, server_settings={"jit": "off"})
        )

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """All rows, as tuples."""
        return [tuple(r) for r in await self._pool.fetch(_pg(sql), *args)]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction holding the metrics writers' advisory lock."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
            yield _PgTx(conn)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()


async def open_metrics_db(database_url: str | None, data_dir: Path) -> MetricsDB:
    """The metrics connection for the same database `open_store` opens (already migrated)."""
    if database_url and database_url.startswith(("postgresql://", "postgres://")):
        return await PgMetricsDB.open(database_url)
    if database_url and database_url.startswith("sqlite:///"):
        return await SqliteMetricsDB.open(Path(database_url.removeprefix("sqlite:///")))
    if database_url:
        raise ValueError(
            f"database_url must start with postgresql:// or sqlite:///, got {database_url!r}"
        )
    return await SqliteMetricsDB.open(Path(data_dir) / "agentgate.db")
