"""Two database backends behind one tiny executor interface (`fetch`, `fetchrow`, `execute`).

SQL is written once with `?` placeholders in the subset both engines accept; the PostgreSQL
backend rewrites them to `$n`. Integrity errors become `Conflict` / `NotFound` / `Invalid` here so
repositories stay SQL + mapping. Rows come back as plain dicts on both backends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]

from agentgate.errors import Conflict, Invalid, NotFound

__all__ = ["Database", "Executor", "PostgresDatabase", "Row", "SqliteDatabase"]

Row = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger("agentgate.store")


class Executor(Protocol):
    """Runs statements on one connection (or a pool, outside a transaction)."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...


class Database(Executor, Protocol):
    """A connected backend: statements, transactions, close."""

    dialect: Literal["sqlite", "postgresql"]

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """A write transaction: commits on normal exit, rolls back on an exception."""
        ...

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every write transaction this process commits; returns the
        function that stops it."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class _CommitListeners:
    """Listeners told of this process's commits: a gateway in the same process as the control
    plane sees a new agent or a revoked key at once, not at its next poll of the store."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every write transaction this process commits; returns the
        function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _committed(self) -> None:
        for fn in tuple(self._listeners):  # a listener may stop itself
            try:
                fn()
            except Exception:  # a listener's bug must not fail a write that has committed
                log.exception("commit listener failed")


def _integrity(sql: str, message: str, kind: str) -> Exception:
    if kind == "unique":
        return Conflict(f"already exists ({message})")
    if kind == "fk":
        # A failing DELETE means something still points at the row; an insert/update means
        # the row it points at is missing (possibly because it belongs to another tenant).
        if sql.lstrip().upper().startswith("DELETE"):
            return Conflict(f"still referenced ({message})")
        return NotFound(f"referenced object does not exist ({message})")
    return Invalid(f"constraint failed ({message})")


# --- SQLite -------------------------------------------------------------------------------


# How long a statement may run on the event loop's thread before it moves to the connection's
# thread. A hop to that thread and back costs 70 µs at the median and 300 µs at p90 on the
# 2-core CI machine (GIL handoff both ways), while the control plane's keyed statements take
# 30 µs: `POST /api/agents` made 38 hops, 8 ms of its 15 ms (loadtests/bench_runtime.py).
INLINE_BUDGET_S = 0.001
# The progress handler's period in SQLite VM instructions: about 10 µs of work between checks.
_PROGRESS_STEPS = 1000
BUSY_TIMEOUT_MS = 5000


_SELECT = re.compile(r"\bSELECT\b", re.IGNORECASE)


class _Moved(Exception):
    """An inline attempt gave way: the statement goes to the connection's thread instead."""


def _inline_kind(sql: str, in_tx: bool) -> bool:
    """Whether `sql` may run on the event loop's thread.

    Reads may, under the time budget (an interrupted SELECT changes nothing and reruns on the
    thread). Inside a transaction, which already holds the write lock, keyed INSERTs and UPDATEs
    may too; DELETEs (retention purges), INSERT … SELECT and COMMIT (which may checkpoint the WAL
    and fsync) stay on the thread, because a write interrupted mid-transaction cannot be moved.
    """
    head = sql.lstrip()[:6].upper()
    if head == "SELECT":
        return True
    if not in_tx or head not in ("INSERT", "UPDATE"):
        return False
    return _SELECT.search(sql) is None


class _SqliteConn:
    """Statements on the one SQLite connection: quick ones on the event loop's thread, the rest
    (and any that outrun `INLINE_BUDGET_S` or find the database busy) on the connection's own
    thread. Callers serialise their statements (the database's lock), so the two never overlap."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        pool: ThreadPoolExecutor,
        on_thread: list[Future[Any] | None],
        *,
        in_tx: bool,
    ) -> None:
        self._conn = conn
        self._pool = pool
        self._in_tx = in_tx
        # Statements queued on or running on the thread (shared by the connection's two
        # executors): while any is, a new one queues behind it rather than overlap it inline.
        self._on_thread = on_thread

    async def _run(self, fn: Callable[[], T]) -> T:
        def waiting() -> T:
            # Only the thread may wait for another process's write lock; inline attempts
            # run with no busy timeout and move here instead.
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            try:
                return fn()
            finally:
                self._conn.execute("PRAGMA busy_timeout=0")

        # the thread's own future, not the awaiting task: a cancelled caller leaves the statement
        # running there, and nothing may start inline until it has finished
        job = self._pool.submit(waiting)
        self._on_thread[0] = job
        return await asyncio.wrap_future(job)

    def _thread_idle(self) -> bool:
        job = self._on_thread[0]
        return job is None or job.done()

    def _try_inline(self, fn: Callable[[], T], *, budget: bool) -> T:
        """Run `fn` now; raises `_Moved` if it ran out of budget or met a lock."""
        if budget:
            deadline = time.perf_counter() + INLINE_BUDGET_S
            self._conn.set_progress_handler(lambda: time.perf_counter() > deadline, _PROGRESS_STEPS)
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY):
                raise _Moved from e
            raise
        finally:
            if budget:
                self._conn.set_progress_handler(None, 0)

    async def _call(self, sql: str, fn: Callable[[], T]) -> T:
        if self._thread_idle() and _inline_kind(sql, self._in_tx):
            # A write attempted inline cannot be interrupted (that could end the transaction),
            # so only reads carry the budget; `_inline_kind` admits only keyed writes.
            is_read = sql.lstrip()[:6].upper() == "SELECT"
            try:
                return self._try_inline(fn, budget=is_read)
            except _Moved:
                pass
        return await self._run(fn)

    def _exec(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.IntegrityError as e:
            msg = str(e)
            kind = "unique" if "UNIQUE" in msg or "PRIMARY KEY" in msg else "other"
            if "FOREIGN KEY" in msg:
                kind = "fk"
            raise _integrity(sql, msg, kind) from e

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""

        def go() -> list[Row]:
            cur = self._exec(sql, args)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

        return await self._call(sql, go)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""

        def go() -> Row | None:
            cur = self._exec(sql, args)
            r = cur.fetchone()
            if r is None:
                return None
            return dict(zip([d[0] for d in cur.description], r, strict=True))

        return await self._call(sql, go)

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        return await self._call(sql, lambda: self._exec(sql, args).rowcount)

    async def begin(self) -> None:
        """BEGIN IMMEDIATE: inline when the write lock is free, else wait for it on the thread."""
        if self._thread_idle():
            try:
                self._try_inline(lambda: self._conn.execute("BEGIN IMMEDIATE"), budget=False)
                return
            except _Moved:
                pass
        await self._run(lambda: self._conn.execute("BEGIN IMMEDIATE"))


class SqliteDatabase(_CommitListeners):
    """SQLite file in WAL mode with foreign keys on; one connection, one writer at a time."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection, pool: ThreadPoolExecutor) -> None:
        super().__init__()
        self._raw = conn
        self._pool = pool
        on_thread: list[Future[Any] | None] = [None]
        self._conn = _SqliteConn(conn, pool, on_thread, in_tx=False)
        self._tx_conn = _SqliteConn(conn, pool, on_thread, in_tx=True)
        # One connection serves everyone: a transaction holds it from BEGIN to COMMIT.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating) the database file and set the pragmas."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentgate-sqlite")

        def connect() -> sqlite3.Connection:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # 0: statements tried on the event loop must not wait there for another process's
            # lock; the connection's thread sets BUSY_TIMEOUT_MS around what it runs.
            conn.execute("PRAGMA busy_timeout=0")
            return conn

        conn = await asyncio.get_running_loop().run_in_executor(pool, connect)
        return cls(conn, pool)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""
        async with self._lock:
            return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        async with self._lock:
            return await self._conn.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""
        async with self._lock:
            return await self._conn.execute(sql, *args)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Executor]:
        async with self._lock:
            # IMMEDIATE takes the write lock up front, so concurrent processes queue here
            # instead of failing at the first write with SQLITE_BUSY.
            await self._tx_conn.begin()
            try:
                yield self._tx_conn
            except BaseException:
                await self._tx_conn.execute("ROLLBACK")
                raise
            await self._tx_conn.execute("COMMIT")
        self._committed()

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT), rolled back on an exception."""
        return self._tx()

    async def close(self) -> None:
        """Close the connection and its thread."""
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._raw.close)
        self._pool.shutdown(wait=True)


# --- PostgreSQL ---------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class _PgConn:
    """Statements on an asyncpg connection or pool, with errors mapped."""

    def __init__(self, target: Any) -> None:
        self._t = target

    def _map(self, sql: str, e: Exception) -> Exception:

        if isinstance(e, asyncpg.UniqueViolationError):
            return _integrity(sql, str(e), "unique")
        if isinstance(e, asyncpg.ForeignKeyViolationError):
            return _integrity(sql, str(e), "fk")
        return _integrity(sql, str(e), "other")

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All rows of a query."""

        try:
            rows = await self._t.fetch(_pg_sql(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise self._map(sql, e) from e
        return [dict(r.items()) for r in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""

        try:
            r = await self._t.fetchrow(_pg_sql(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise self._map(sql, e) from e
        return None if r is None else dict(r.items())

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed."""

        try:
            status: str = await self._t.execute(_pg_sql(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise self._map(sql, e) from e
        return _rowcount(status)


class PostgresDatabase(_PgConn, _CommitListeners):
    """PostgreSQL through an asyncpg pool."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, pool: Any) -> None:
        _PgConn.__init__(self, pool)
        _CommitListeners.__init__(self)
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        """Connect a pool to `url` (postgresql://…)."""

        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        return cls(pool)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgConn(conn)
        self._committed()

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """A transaction on one pooled connection, rolled back on an exception."""
        return self._tx()

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
