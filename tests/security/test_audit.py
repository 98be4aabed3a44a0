"""Audit chain: sealing, tamper detection (edit/delete/reorder/insert/truncate), export, store."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

from agentgate.security.audit import (
    GENESIS_HASH,
    MemoryAuditLog,
    Record,
    export_jsonl,
    read_jsonl,
    seal,
    verify_chain,
    verify_store,
)


def _log(n: int = 5) -> MemoryAuditLog:
    log = MemoryAuditLog()
    for i in range(n):
        log.append(
            time=1000.0 + i,
            actor=f"key-{i % 2}",
            action="agent.create",
            target=f"agent/{i}",
            outcome="allowed" if i % 3 else "denied",
            tenant_id="acme",
            decision={"allow": bool(i % 3), "rules": [] if i % 3 else ["quotas"]},
        )
    return log


def test_intact_chain_verifies() -> None:
    log = _log()
    es = log.entries()
    assert es[0].prev_hash == GENESIS_HASH and es[1].prev_hash == es[0].hash
    r = verify_chain(es, head=log.head)
    assert r.ok and r.checked == 5 and r.first_bad_seq is None and r.head_seq == 5


def test_edit_is_detected_at_its_seq() -> None:
    es = _log().entries()
    es[2] = dataclasses.replace(es[2], outcome="allowed" if es[2].outcome == "denied" else "denied")
    r = verify_chain(es)
    assert not r.ok and r.first_bad_seq == 3 and "hash" in (r.reason or "")


def test_edit_with_rehash_breaks_the_next_link() -> None:
    es = _log().entries()
    forged = dataclasses.replace(es[1], actor="mallory")
    es[1] = dataclasses.replace(forged, hash=seal(forged))
    r = verify_chain(es)
    assert not r.ok and r.first_bad_seq == 3


def test_deletion_reorder_insertion_and_truncation() -> None:
    log = _log()
    es = log.entries()
    assert verify_chain(es[:2] + es[3:]).first_bad_seq == 4
    assert verify_chain([es[0], es[2], es[1], *es[3:]]).first_bad_seq == 3
    extra = Record(3, 1.0, "acme", "x", "a", "t", "ok", prev_hash=es[1].hash)
    extra = dataclasses.replace(extra, hash=seal(extra))
    assert verify_chain([*es[:2], extra, *es[2:]]).first_bad_seq == 3
    # Dropping the newest entries leaves a valid prefix; the recorded head catches it.
    assert verify_chain(es[:3]).ok
    r = verify_chain(es[:3], head=log.head)
    assert not r.ok and r.first_bad_seq == 4


def test_segment_verification_from_a_known_point() -> None:
    es = _log().entries()
    assert verify_chain(es[2:], start_seq=3, start_hash=es[1].hash).ok


def test_query_and_jsonl_round_trip() -> None:
    log = _log()
    assert [e.seq for e in log.query(since=1001.0, until=1003.0)] == [2, 3]
    assert [e.seq for e in log.query(actor="key-0")] == [1, 3, 5]
    assert [e.seq for e in log.query(target="agent/4")] == [5]
    buf = io.BytesIO()
    assert export_jsonl(log.entries(), buf) == 5
    lines = buf.getvalue().splitlines()
    assert len(lines) == 5 and lines[0].startswith(b"{")
    back = read_jsonl(lines)
    assert back == log.entries() and verify_chain(back).ok
    tampered = lines[:]
    tampered[1] = tampered[1].replace(b"key-1", b"key-9")
    assert verify_chain(read_jsonl(tampered)).first_bad_seq == 2


async def test_store_chain_on_sqlite(tmp_path: Path) -> None:
    from agentgate.store import open_store

    store: Any = await open_store(None, tmp_path, clock=lambda: 1234.5)
    try:
        audit = store.system.audit
        for i in range(7):
            await audit.append(
                actor="k",
                action="template.publish",
                target=f"t/{i}",
                outcome="allowed",
                seal=seal,
                tenant_id="acme",
                decision={"allow": True, "rules": []},
            )
        assert (await verify_store(audit, page=3)).ok
        await store.db.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 5")
        r = await verify_store(audit, page=3)
        assert not r.ok and r.first_bad_seq == 5
        await store.db.execute("UPDATE audit SET outcome = 'allowed' WHERE seq = 5")
        await store.db.execute("DELETE FROM audit WHERE seq = 7")
        r = await verify_store(audit)
        assert not r.ok and r.first_bad_seq == 7
    finally:
        await store.close()
