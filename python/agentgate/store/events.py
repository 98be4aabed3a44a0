"""The append-only event log: streams of versioned events, snapshots, projection positions.

A thin store of our own rather than the `eventsourcing` library, which takes a table lock on
every PostgreSQL insert and has a sync API. Appends to different streams never wait for each
other: optimistic concurrency is the `(stream, version)` unique key plus an optional expected
version. Positions are global and increasing, but on PostgreSQL they become visible out of
order and may have gaps (see `agentgate.state.projection` for tailing them safely).

Times are the store clock's UTC epoch seconds; within a stream they never go backwards, so
"the state as of T" is a prefix of the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentgate.errors import Conflict, NotFound
from agentgate.store._base import Clock, dumps, loads
from agentgate.store.db import Database, Executor, Row

__all__ = ["Event", "EventStore", "NewEvent", "Snapshot", "StreamInfo", "VersionConflict"]

_CHUNK = 400  # rows per multi-row INSERT (well under SQLite's bound variable limit)
_COLS = "position, tenant_id, stream, version, type, class, data, meta, at"


class VersionConflict(Conflict):
    """The stream moved past the expected version: reload and decide again."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; `cls` picks its retention (`lifecycle`, `checkpoint`, …)."""

    type: str
    data: Mapping[str, Any]
    cls: str = "lifecycle"
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """A stored event."""

    position: int
    tenant_id: str
    stream: str
    version: int
    type: str
    cls: str
    data: dict[str, Any]
    meta: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stream's folded state after `version` (the event at `at`)."""

    stream: str
    version: int
    at: float
    state: Any


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream: whose, what, how far, and since when history is complete."""

    stream: str
    tenant_id: str
    kind: str
    name: str
    version: int
    pruned_to: float
    updated_at: float


def _event(r: Row) -> Event:
    return Event(
        position=int(r["position"]),
        tenant_id=r["tenant_id"],
        stream=r["stream"],
        version=int(r["version"]),
        type=r["type"],
        cls=r["class"],
        data=loads(r["data"]),
        meta=loads(r["meta"]),
        at=float(r["at"]),
    )


def _info(r: Row) -> StreamInfo:
    return StreamInfo(
        stream=r["stream"],
        tenant_id=r["tenant_id"],
        kind=r["kind"],
        name=r["name"],
        version=int(r["version"]),
        pruned_to=float(r["pruned_to"]),
        updated_at=float(r["updated_at"]),
    )


class EventStore:
    """Events, snapshots and projection positions on the control-plane database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._db.dialect

    async def append(
        self,
        tenant_id: str,
        stream: str,
        events: Sequence[NewEvent],
        *,
        kind: str,
        name: str,
        expected_version: int | None = None,
    ) -> list[Event]:
        """Append `events` to `stream` in one transaction; `VersionConflict` when
        `expected_version` is given and the stream is elsewhere (0: must not exist yet)."""
        if not events:
            return []
        async with self._db.transaction() as tx:
            return await self._append(tx, tenant_id, stream, events, kind, name, expected_version)

    async def append_many(
        self, batches: Sequence[tuple[str, str, str, str, Sequence[NewEvent]]]
    ) -> list[Event]:
        """Append to several streams in one transaction (tenant, stream, kind, name, events);
        no version check: for writers that own their streams (bulk import, benchmarks)."""
        out: list[Event] = []
        async with self._db.transaction() as tx:
            for tenant_id, stream, kind, name, events in batches:
                out += await self._append(tx, tenant_id, stream, events, kind, name, None)
        return out

    async def _append(
        self,
        tx: Executor,
        tenant_id: str,
        stream: str,
        events: Sequence[NewEvent],
        kind: str,
        name: str,
        expected: int | None,
    ) -> list[Event]:
        row = await tx.fetchrow(
            "SELECT tenant_id, version, updated_at FROM event_streams WHERE stream = ?", stream
        )
        now = self._clock()
        if row is None:
            current, last_at = 0, now
        else:
            if row["tenant_id"] != tenant_id:
                raise NotFound(f"stream {stream} not found")
            current, last_at = int(row["version"]), float(row["updated_at"])
        if expected is not None and expected != current:
            raise VersionConflict(f"stream {stream} is at version {current}, expected {expected}")
        at = max(now, last_at)  # never backwards within a stream
        if row is None:
            await tx.execute(
                "INSERT INTO event_streams (stream, tenant_id, kind, name, version, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                stream,
                tenant_id,
                kind,
                name,
                current + len(events),
                at,
            )
        else:
            n = await tx.execute(
                "UPDATE event_streams SET version = ?, updated_at = ? "
                "WHERE stream = ? AND version = ?",
                current + len(events),
                at,
                stream,
                current,
            )
            if n != 1:
                raise VersionConflict(f"stream {stream} moved during the append")
        out: list[Event] = []
        for start in range(0, len(events), _CHUNK):
            chunk = events[start : start + _CHUNK]
            values: list[Any] = []
            for i, e in enumerate(chunk, start=current + start + 1):
                values += [tenant_id, stream, i, e.type, e.cls, dumps(e.data), dumps(e.meta), at]
            marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            rows = await tx.fetch(
                "INSERT INTO events (tenant_id, stream, version, type, class, data, meta, at) "
                f"VALUES {marks} RETURNING {_COLS}",
                *values,
            )
            out += sorted((_event(r) for r in rows), key=lambda e: e.version)
        return out

    async def info(self, stream: str) -> StreamInfo | None:
        """The stream's row, or None."""
        r = await self._db.fetchrow("SELECT * FROM event_streams WHERE stream = ?", stream)
        return None if r is None else _info(r)

    async def streams(self, tenant_id: str, kind: str) -> list[StreamInfo]:
        """The tenant's streams of one kind, by name."""
        rows = await self._db.fetch(
            "SELECT * FROM event_streams WHERE tenant_id = ? AND kind = ? ORDER BY name",
            tenant_id,
            kind,
        )
        return [_info(r) for r in rows]

    async def read(
        self,
        stream: str,
        *,
        after_version: int = 0,
        until: float | None = None,
        max_version: int | None = None,
        limit: int = 100_000,
    ) -> list[Event]:
        """Events of `stream` after `after_version`, at or before `until` and at or below
        `max_version` (no bound for None), oldest first."""
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM events WHERE stream = ? AND version > ? AND at <= ? "
            "AND version <= ? ORDER BY version LIMIT ?",
            stream,
            after_version,
            float("inf") if until is None else until,
            2**62 if max_version is None else max_version,
            limit,
        )
        return [_event(r) for r in rows]

    async def last(self, stream: str, until: float | None = None) -> Event | None:
        """The newest event of `stream` (at or before `until` when given)."""
        r = await self._db.fetchrow(
            f"SELECT {_COLS} FROM events WHERE stream = ? AND at <= ? "
            "ORDER BY version DESC LIMIT 1",
            stream,
            float("inf") if until is None else until,
        )
        return None if r is None else _event(r)

    async def read_all(self, after_position: int, limit: int = 1000) -> list[Event]:
        """Events of every stream after `after_position`, by position (gaps included)."""
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            after_position,
            limit,
        )
        return [_event(r) for r in rows]

    async def put_snapshot(self, snap: Snapshot) -> None:
        """Store a snapshot (the same version again is a no-op)."""
        sql = (
            "INSERT INTO event_snapshots (stream, version, at, state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (stream, version) DO NOTHING"
        )
        await self._db.execute(sql, snap.stream, snap.version, snap.at, dumps(snap.state))

    async def snapshot_before(
        self, stream: str, until: float | None = None, max_version: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot of `stream` taken at or before `until` and at or below
        `max_version` (no bound for None)."""
        r = await self._db.fetchrow(
            "SELECT * FROM event_snapshots WHERE stream = ? AND at <= ? AND version <= ? "
            "ORDER BY version DESC LIMIT 1",
            stream,
            float("inf") if until is None else until,
            2**62 if max_version is None else max_version,
        )
        if r is None:
            return None
        return Snapshot(r["stream"], int(r["version"]), float(r["at"]), loads(r["state"]))

    async def prune(self, stream: str, cls: str, upto_version: int, pruned_to: float) -> int:
        """Delete the `cls` events up to `upto_version` of `stream` and older snapshots (a
        snapshot at that version must exist: replays start there from now on); states before
        `pruned_to` are no longer answerable."""
        async with self._db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM events WHERE stream = ? AND version <= ? AND class = ?",
                stream,
                upto_version,
                cls,
            )
            await tx.execute(
                "DELETE FROM event_snapshots WHERE stream = ? AND version < ?",
                stream,
                upto_version,
            )
            await tx.execute(
                "UPDATE event_streams SET pruned_to = ? WHERE stream = ? AND pruned_to < ?",
                pruned_to,
                stream,
                pruned_to,
            )
        return n

    async def expired(self, cls: str, before: float, limit: int = 1000) -> list[tuple[str, int]]:
        """(stream, newest expired version) of streams holding `cls` events older than
        `before`."""
        rows = await self._db.fetch(
            "SELECT stream, MAX(version) AS v FROM events WHERE class = ? AND at < ? "
            "GROUP BY stream ORDER BY stream LIMIT ?",
            cls,
            before,
            limit,
        )
        return [(r["stream"], int(r["v"])) for r in rows]

    async def position(self, name: str) -> int:
        """A projection's stored position (0 when new)."""
        r = await self._db.fetchrow(
            "SELECT position FROM projection_positions WHERE name = ?", name
        )
        return 0 if r is None else int(r["position"])

    async def save_position(self, name: str, position: int, tx: Executor | None = None) -> None:
        """Store a projection's position."""
        ex = tx or self._db
        await ex.execute(
            "INSERT INTO projection_positions (name, position, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
            "updated_at = excluded.updated_at",
            name,
            position,
            self._clock(),
        )

    @property
    def db(self) -> Database:
        """The database (projections write their views in its transactions)."""
        return self._db
