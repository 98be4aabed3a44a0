"""Migrations: recorded, idempotent, and all-or-nothing on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentgate.store import open_store
from agentgate.store.db import Database, PostgresDatabase, SqliteDatabase
from agentgate.store.migrate import Migration, apply_migrations, bundled_migrations


async def _open(database_url: str | None, tmp_path: Path) -> Database:
    if database_url is None:
        return await SqliteDatabase.open(tmp_path / "m.db")
    return await PostgresDatabase.open(database_url)


async def test_applied_once_and_recorded(database_url: str | None, tmp_path: Path) -> None:
    db = await _open(database_url, tmp_path)
    try:
        versions = [m.version for m in bundled_migrations(db.dialect)]
        assert versions[0] == 1
        assert await apply_migrations(db) == versions
        assert await apply_migrations(db) == []
        rows = await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions and rows[0]["name"] == "init"
    finally:
        await db.close()


async def test_failed_migration_leaves_nothing(database_url: str | None, tmp_path: Path) -> None:
    db = await _open(database_url, tmp_path)
    bundled = bundled_migrations(db.dialect)
    broken = Migration(
        bundled[-1].version + 1,
        "broken",
        "CREATE TABLE half (x INTEGER);\nINSERT INTO nowhere VALUES (1);\n",
    )
    try:
        await apply_migrations(db, [*bundled_migrations(db.dialect)])
        with pytest.raises(Exception, match=r"(?i)nowhere"):
            await apply_migrations(db, [*bundled_migrations(db.dialect), broken])
        rows = await db.fetch("SELECT version FROM schema_migrations")
        assert sorted(r["version"] for r in rows) == [m.version for m in bundled]
        with pytest.raises(Exception, match=r"(?i)half"):
            await db.fetch("SELECT * FROM half")
        # a fresh database with a broken migration gets no tables at all
    finally:
        await db.close()


async def test_fresh_database_broken_first_run(database_url: str | None, tmp_path: Path) -> None:
    db = await _open(database_url, tmp_path)
    broken = Migration(
        bundled_migrations(db.dialect)[-1].version + 1, "broken", "SELECT * FROM nowhere;\n"
    )
    try:
        with pytest.raises(Exception, match=r"(?i)nowhere"):
            await apply_migrations(db, [*bundled_migrations(db.dialect), broken])
        with pytest.raises(Exception, match=r"(?i)tenants|schema_migrations"):
            await db.fetch("SELECT * FROM tenants")
    finally:
        await db.close()


async def test_open_store_sqlite_file_and_bad_url(tmp_path: Path) -> None:
    s = await open_store(None, tmp_path)
    await s.close()
    assert (tmp_path / "agentgate.db").exists()
    with pytest.raises(ValueError, match="database_url"):
        await open_store("mysql://x", tmp_path)
