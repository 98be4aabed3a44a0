"""Shared plumbing of the repositories: JSON columns, new ids, the tenant binding."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson

from agentgate.errors import NotFound
from agentgate.store.db import Database, Executor, Row

Clock = Callable[[], float]


def dumps(obj: Any) -> str:
    """JSON text of a column value (sorted keys so equal documents store equal text)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def loads(text: str | None) -> Any:
    """Decode a JSON column (None stays None)."""
    return None if text is None else orjson.loads(text)


def new_id() -> str:
    """A fresh uuid4 hex id."""
    return uuid.uuid4().hex


def opt_float(v: Any) -> float | None:
    """A nullable timestamp column as float."""
    return None if v is None else float(v)


def need(row: Row | None, what: str) -> Row:
    """The row, or NotFound naming `what`."""
    if row is None:
        raise NotFound(f"{what} not found")
    return row


class ScopedRepo:
    """Base of tenant repositories: the tenant id is fixed at construction and bound in all SQL."""

    __slots__ = ("_clock", "_db", "_tenant")

    def __init__(self, db: Database, tenant_id: str, clock: Clock) -> None:
        self._db = db
        self._tenant = tenant_id
        self._clock = clock

    @property
    def tenant_id(self) -> str:
        """The tenant this repository is bound to."""
        return self._tenant


async def bump_counter(tx: Executor, name: str) -> None:
    """Increase a monotonic counter inside the caller's transaction."""
    await tx.execute("UPDATE counters SET value = value + 1 WHERE name = ?", name)
