"""Versioned schema migrations (`migrations/NNNN_name.sql`), all pending ones in one transaction.

A step that needs engine-specific DDL (an identity column, say) ships as two files of one
version, `NNNN_name.sqlite.sql` and `NNNN_name.postgresql.sql`; each engine runs its own.

Both engines run DDL transactionally, so a failing migration leaves the database exactly as it
was: no half-created tables, no `schema_migrations` row.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources

from agentgate.store.db import Database

__all__ = ["Migration", "apply_migrations", "bundled_migrations", "split_statements"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(sqlite|postgresql))?\.sql$")
# Any 64-bit constant: PostgreSQL advisory lock so two processes don't migrate at once.
_PG_LOCK = 0x61676D6967


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, name and SQL text."""

    version: int
    name: str
    sql: str


def bundled_migrations(dialect: str | None = None) -> list[Migration]:
    """The migrations shipped in `agentgate/store/migrations` for `dialect` (engine-specific
    files of the other engine left out; all of them when None), in version order."""
    out = []
    for entry in resources.files("agentgate.store").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m and (m.group(3) is None or dialect is None or m.group(3) == dialect):
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(out, key=lambda m: m.version)


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: `--` comment lines dropped, split at `;` ending a line."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [p.strip() for p in parts if p.strip()]


async def apply_migrations(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the pending migrations atomically; returns the versions applied now."""
    todo = bundled_migrations(db.dialect) if migrations is None else migrations
    applied_now: list[int] = []
    async with db.transaction() as tx:
        if db.dialect == "postgresql":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {r["version"] for r in await tx.fetch("SELECT version FROM schema_migrations")}
        for m in todo:
            if m.version in done:
                continue
            for stmt in split_statements(m.sql):
                await tx.execute(stmt)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                m.version,
                m.name,
                time.time(),
            )
            applied_now.append(m.version)
    return applied_now
