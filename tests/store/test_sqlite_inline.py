"""Where SQLite statements run: quick ones on the event loop's thread, the rest on the
connection's thread, with nothing lost or reordered when a statement moves."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentgate.errors import Conflict
from agentgate.store import db as dbmod
from agentgate.store.db import SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[SqliteDatabase, list[int]]]:
    """A database with a table, and `probe(x)`: records the thread that evaluated it."""
    d = await SqliteDatabase.open(tmp_path / "t.db")
    seen: list[int] = []

    def probe(x: object) -> int:
        seen.append(threading.get_ident())
        return 1

    # the SQL function runs wherever the statement runs: the observation these tests need
    d._raw.create_function("probe", 1, probe)
    await d.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    async with d.transaction() as tx:
        for i in range(50):
            await tx.execute("INSERT INTO t (id, v) VALUES (?, ?)", i, f"v{i}")
    seen.clear()
    yield d, seen
    await d.close()


async def test_a_quick_read_runs_on_the_event_loop(
    db: tuple[SqliteDatabase, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, seen = db
    monkeypatch.setattr(dbmod, "INLINE_BUDGET_S", 60.0)
    rows = await d.fetch("SELECT id, probe(id) AS p FROM t WHERE id < 3 ORDER BY id")
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert set(seen) == {threading.get_ident()}


async def test_a_read_over_budget_moves_to_the_thread_and_returns_every_row(
    db: tuple[SqliteDatabase, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, seen = db
    monkeypatch.setattr(dbmod, "INLINE_BUDGET_S", 0.0)  # every read outruns it
    # the uncorrelated subquery (2,500 row pairs, well over the handler's 1,000 steps) runs
    # before the first row, so the inline attempt is interrupted before any probe
    rows = await d.fetch(
        "SELECT a.id, probe(a.id) AS p FROM t a WHERE (SELECT COUNT(*) FROM t b, t c) > 0"
        " ORDER BY a.id"
    )
    assert [r["id"] for r in rows] == list(range(50))
    assert len(seen) == 50 and threading.get_ident() not in seen
    one = await d.fetchrow("SELECT v FROM t WHERE id = ?", 7)
    assert one == {"v": "v7"}


async def test_keyed_writes_inline_deletes_and_commit_on_the_thread(
    db: tuple[SqliteDatabase, list[int]],
) -> None:
    d, seen = db
    loop_thread = threading.get_ident()
    async with d.transaction() as tx:
        await tx.execute("INSERT INTO t (id, v) VALUES (100, ?)", "x")
        await tx.execute("UPDATE t SET v = 'y' WHERE id = 100 AND probe(id) = 1")
        assert seen == [loop_thread]
        seen.clear()
        # a DELETE may purge many rows and cannot be interrupted safely: never on the loop
        n = await tx.execute("DELETE FROM t WHERE id >= 40 AND probe(id) = 1")
        assert n == 11
        assert seen and loop_thread not in seen
    assert (await d.fetchrow("SELECT v FROM t WHERE id = 100")) is None
    assert (await d.fetchrow("SELECT COUNT(*) AS n FROM t"))["n"] == 40  # type: ignore[index]


async def test_statements_of_one_transaction_never_overlap(
    db: tuple[SqliteDatabase, list[int]],
) -> None:
    d, seen = db
    async with d.transaction() as tx:
        # the DELETE goes to the thread; the INSERT issued while it runs queues behind it
        # (same thread) instead of running beside it on the loop
        await asyncio.gather(
            tx.execute("DELETE FROM t WHERE id < 10 AND probe(id) = 1"),
            tx.execute("INSERT INTO t (id, v) SELECT 200, probe(1)"),
            tx.execute("INSERT INTO t (id, v) VALUES (201, 'z')"),
        )
    assert loop_thread_absent(seen)
    rows = await d.fetch("SELECT id FROM t WHERE id >= 200 OR id < 10 ORDER BY id")
    assert [r["id"] for r in rows] == [200, 201]


def loop_thread_absent(seen: list[int]) -> bool:
    """True when no probe ran on the calling (event loop) thread."""
    return threading.get_ident() not in seen


async def test_integrity_errors_inline_are_mapped_and_roll_back(
    db: tuple[SqliteDatabase, list[int]],
) -> None:
    d, _ = db
    with pytest.raises(Conflict):
        async with d.transaction() as tx:
            await tx.execute("INSERT INTO t (id, v) VALUES (300, 'a')")
            await tx.execute("INSERT INTO t (id, v) VALUES (1, 'dup')")
    assert (await d.fetchrow("SELECT id FROM t WHERE id = 300")) is None


async def test_a_transaction_waits_for_another_writer_on_the_thread_not_the_loop(
    db: tuple[SqliteDatabase, list[int]], tmp_path: Path
) -> None:
    d, _ = db
    other = sqlite3.connect(str(tmp_path / "t.db"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    other.execute("INSERT INTO t (id, v) VALUES (400, 'theirs')")

    async def ours() -> None:
        async with d.transaction() as tx:
            await tx.execute("INSERT INTO t (id, v) VALUES (401, 'ours')")

    task = asyncio.create_task(ours())
    # the loop keeps running while our BEGIN waits on the connection's thread
    while d._conn._thread_idle():
        assert not task.done()
        await asyncio.sleep(0)
    assert not task.done()
    await asyncio.to_thread(other.execute, "COMMIT")
    other.close()
    await asyncio.wait_for(task, 10)
    rows = await d.fetch("SELECT id FROM t WHERE id >= 400 ORDER BY id")
    assert [r["id"] for r in rows] == [400, 401]
