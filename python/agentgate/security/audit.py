"""Hash-chained audit trail: sealing entries, verifying a chain, exporting JSON lines.

Each entry's `hash` is SHA-256 over the canonical JSON (sorted keys, no whitespace, UTF-8) of
the entry without `hash` — including `seq` and `prev_hash` — so editing, deleting, reordering
or inserting an entry breaks the chain at that point. The first entry links to
`GENESIS_HASH`. Storage is somebody else's job (`store.AuditRepo` serialises appends and calls
`seal`); this module only needs entries in `seq` order, from any source. Times are epoch
seconds (float, UTC).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson

__all__ = [
    "GENESIS_HASH",
    "ChainEntry",
    "MemoryAuditLog",
    "Record",
    "VerifyResult",
    "canonical",
    "entry_dict",
    "export_jsonl",
    "read_jsonl",
    "seal",
    "stream_entries",
    "verify_chain",
    "verify_chain_async",
    "verify_store",
]

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first entry."""

FIELDS = (
    "seq",
    "time",
    "tenant_id",
    "actor",
    "action",
    "target",
    "outcome",
    "decision",
    "details",
    "prev_hash",
)
"""What the hash covers, i.e. every field except `hash`."""


class ChainEntry(Protocol):
    """Any object with the audit fields (e.g. `store.models.AuditEntry`)."""

    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> float: ...
    @property
    def tenant_id(self) -> str | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def decision(self) -> dict[str, Any] | None: ...
    @property
    def details(self) -> dict[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A plain audit entry (what `MemoryAuditLog` stores and `export_jsonl` round-trips)."""

    seq: int
    time: float
    tenant_id: str | None
    actor: str
    action: str
    target: str
    outcome: str
    decision: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        """Build from an exported JSON line's object."""
        return cls(
            seq=int(d["seq"]),
            time=float(d["time"]),
            tenant_id=d.get("tenant_id"),
            actor=str(d["actor"]),
            action=str(d["action"]),
            target=str(d["target"]),
            outcome=str(d["outcome"]),
            decision=d.get("decision"),
            details=dict(d.get("details") or {}),
            prev_hash=str(d.get("prev_hash", "")),
            hash=str(d.get("hash", "")),
        )


def entry_dict(entry: ChainEntry, *, with_hash: bool = True) -> dict[str, Any]:
    """The entry as a JSON-ready dict (with or without its own `hash`)."""
    d: dict[str, Any] = {name: getattr(entry, name) for name in FIELDS}
    if d["details"] is None:
        d["details"] = {}
    if with_hash:
        d["hash"] = entry.hash
    return d


def canonical(entry: ChainEntry) -> bytes:
    """Canonical JSON of the entry without `hash`: the bytes its hash covers."""
    return orjson.dumps(entry_dict(entry, with_hash=False), option=orjson.OPT_SORT_KEYS)


def seal(entry: ChainEntry) -> str:
    """The entry's hash (hex SHA-256 of `canonical(entry)`); pass as `seal=` to AuditRepo."""
    return hashlib.sha256(canonical(entry)).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of a chain check: `ok`, entries checked, and the first bad seq with why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int = 0
    head_hash: str = GENESIS_HASH


class _Verifier:
    def __init__(self, start_seq: int, start_hash: str) -> None:
        self.expected_seq = start_seq
        self.prev = start_hash
        self.checked = 0
        self.bad: VerifyResult | None = None

    def _fail(self, seq: int, reason: str) -> None:
        self.bad = VerifyResult(False, self.checked, seq, reason, self.expected_seq - 1, self.prev)

    def feed(self, e: ChainEntry) -> bool:
        if e.seq != self.expected_seq:
            kind = "missing entries (deleted?)" if e.seq > self.expected_seq else "out of order"
            self._fail(e.seq, f"expected seq {self.expected_seq}, found {e.seq}: {kind}")
            return False
        if e.prev_hash != self.prev:
            self._fail(e.seq, "prev_hash does not match the previous entry's hash")
            return False
        if seal(e) != e.hash:
            self._fail(e.seq, "hash does not match the entry's content (edited?)")
            return False
        self.prev = e.hash
        self.expected_seq += 1
        self.checked += 1
        return True

    def result(self, head: tuple[int, str] | None) -> VerifyResult:
        if self.bad is not None:
            return self.bad
        last = self.expected_seq - 1
        if head is not None and (head[0], head[1]) != (last, self.prev):
            return VerifyResult(
                False,
                self.checked,
                last + 1 if head[0] > last else head[0],
                f"chain ends at seq {last} but the recorded head is seq {head[0]} (truncated?)",
                last,
                self.prev,
            )
        return VerifyResult(True, self.checked, None, None, last, self.prev)


def verify_chain(
    entries: Iterable[ChainEntry],
    *,
    start_seq: int = 1,
    start_hash: str = GENESIS_HASH,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """Recompute the chain over entries in seq order; report the first bad seq.

    Detects edits (hash mismatch), deletions (seq gap / prev_hash mismatch), reorders and
    insertions. Deleting the newest entries leaves a valid shorter chain: pass the stored
    `head` (seq, hash) to catch that too. Verify a later segment with `start_seq` and the hash
    of the entry before it.
    """
    v = _Verifier(start_seq, start_hash)
    for e in entries:
        if not v.feed(e):
            break
    return v.result(head)


async def verify_chain_async(
    entries: AsyncIterable[ChainEntry],
    *,
    start_seq: int = 1,
    start_hash: str = GENESIS_HASH,
    head: tuple[int, str] | None = None,
) -> VerifyResult:
    """`verify_chain` over an async source (e.g. pages streamed from the store)."""
    v = _Verifier(start_seq, start_hash)
    async for e in entries:
        if not v.feed(e):
            break
    return v.result(head)


async def stream_entries(repo: Any, **filters: Any) -> AsyncIterator[Any]:
    """All entries of a store audit repo (`SystemAuditRepo`/`AuditRepo`) in seq order, paged.

    `filters` go to `repo.query` (since, until, actor, target, ...); `page=` sets the page size.
    """
    page = int(filters.pop("page", 1000))
    after = 0
    while True:
        batch = await repo.query(after_seq=after, limit=page, **filters)
        for e in batch:
            yield e
        if len(batch) < page:
            return
        after = batch[-1].seq


async def verify_store(repo: Any, *, page: int = 1000) -> VerifyResult:
    """Verify the whole chain held by a `SystemAuditRepo`, against its recorded head.

    After retention removed the oldest entries the chain is checked from the recorded anchor
    (the last removed entry's seq and hash) instead of the genesis hash.
    """
    head = await repo.head()
    anchor = await repo.anchor() if hasattr(repo, "anchor") else (0, GENESIS_HASH)
    return await verify_chain_async(
        stream_entries(repo, page=page),
        start_seq=anchor[0] + 1,
        start_hash=anchor[1],
        head=head,
    )


def export_jsonl(entries: Iterable[ChainEntry], out: IO[bytes]) -> int:
    """Write entries as JSON lines (sorted keys, with hash) to a binary stream; returns count."""
    n = 0
    for e in entries:
        out.write(
            orjson.dumps(entry_dict(e), option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
        )
        n += 1
    return n


def read_jsonl(lines: Iterable[bytes | str]) -> list[Record]:
    """Parse exported JSON lines back into records (to verify an export offline)."""
    return [Record.from_dict(orjson.loads(line)) for line in lines if line.strip()]


class MemoryAuditLog:
    """In-memory append-only chain: the same sealing as the store, for tests and embedding."""

    def __init__(self) -> None:
        self._entries: list[Record] = []

    def append(
        self,
        *,
        time: float,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        tenant_id: str | None = None,
        decision: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> Record:
        """Append one sealed entry linked to the previous one."""
        prev = self._entries[-1].hash if self._entries else GENESIS_HASH
        r = Record(
            seq=len(self._entries) + 1,
            time=time,
            tenant_id=tenant_id,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            decision=decision,
            details=dict(details or {}),
            prev_hash=prev,
        )
        r = Record(**{**entry_dict(r, with_hash=False), "hash": seal(r)})
        self._entries.append(r)
        return r

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest entry; (0, GENESIS_HASH) when empty."""
        if not self._entries:
            return (0, GENESIS_HASH)
        return (self._entries[-1].seq, self._entries[-1].hash)

    def entries(self) -> list[Record]:
        """All entries in seq order (a copy)."""
        return list(self._entries)

    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        target: str | None = None,
        tenant_id: str | None = None,
    ) -> list[Record]:
        """Entries with since <= time < until, matching actor/target/tenant when given."""
        return [
            e
            for e in self._entries
            if (since is None or e.time >= since)
            and (until is None or e.time < until)
            and (actor is None or e.actor == actor)
            and (target is None or e.target == target)
            and (tenant_id is None or e.tenant_id == tenant_id)
        ]
