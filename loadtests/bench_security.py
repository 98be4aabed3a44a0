"""Security benchmarks (`make bench-security`): backups of a 1 GiB SQLite store against
`sqlite3 .backup` + the `zstd` CLI in the same run, the incremental size after 1 % of the rows
change, and envelope encrypt/decrypt per secret against one bare AES-GCM round trip.

Each backup repetition starts from an empty destination and interleaves agentgate and the peer
(A B A B …); medians are reported. agentgate's backup includes what the peer does not:
content-defined chunking, a keyed id and SHA-256 per chunk, AES-256-GCM, fsync per object;
its restore includes verification (every chunk's checksum and authentication, SQLite
integrity_check, the audit chain) before the atomic rename.

    python loadtests/bench_security.py [--size-mib 1024] [--reps 3] [--quick]
"""

# ruff: noqa: E501  (table rows read best one per line)

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.benchmarks_md import replace_section

ROW = 1024


def build_store(path: Path, size_mib: int) -> int:
    """An agentgate store plus a table of ~1 KiB rows (JSON-ish text, about half compressible)."""
    from agentgate.store import open_store

    async def schema() -> None:
        s = await open_store(f"sqlite:///{path}", path.parent)
        await s.close()

    asyncio.run(schema())
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, tenant TEXT, body TEXT, t REAL)")
    rows = size_mib * 1024 * 1024 // (ROW + 60)
    rnd = random.Random(7)
    words = [os.urandom(6).hex() for _ in range(4096)]
    batch = []
    for i in range(rows):
        body = orjson.dumps(
            {"event": "request", "agent": f"agent-{i % 500}", "trace": os.urandom(16).hex(),
             "words": " ".join(rnd.choices(words, k=60))}
        ).decode()[:ROW]  # fmt: skip
        batch.append((i, f"t{i % 50}", body, 1.7e9 + i))
        if len(batch) == 10000:
            con.executemany("INSERT INTO bench_rows VALUES (?, ?, ?, ?)", batch)
            con.commit()
            batch = []
    if batch:
        con.executemany("INSERT INTO bench_rows VALUES (?, ?, ?, ?)", batch)
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return rows


def change_rows(path: Path, rows: int, fraction: float, clustered: bool) -> int:
    """Rewrite `fraction` of the rows' bodies (same length), randomly spread or one range."""
    n = int(rows * fraction)
    ids = (
        list(range(rows // 2, rows // 2 + n))
        if clustered
        else random.Random(11).sample(range(rows), n)
    )
    con = sqlite3.connect(path)
    con.executemany(
        "UPDATE bench_rows SET body = substr(?, 1, length(body)) WHERE id = ?",
        [(os.urandom(ROW // 2).hex(), i) for i in ids],
    )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return n


def manager(cfg_dir: Path, data: Path, store_path: Path, chunk: int) -> Any:
    from agentgate.config_security import BackupConfig
    from agentgate.security.backup import BackupManager
    from agentgate.security.keys import LocalKek, MasterKey

    cfg = BackupConfig.model_validate(
        {
            "destinations": [{"name": "local", "type": "local", "path": str(cfg_dir)}],
            "chunk_size": chunk,
            "scratch_dir": str(data / "scratch"),
        }
    )
    kek = LocalKek(MasterKey(os.urandom(32), False), b"bench-salt-16byt")
    return BackupManager(cfg, kek, database_url=f"sqlite:///{store_path}", data_dir=data)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peer_backup(store: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["sqlite3", str(store), f".backup '{out}'"], check=True)
    subprocess.run(["zstd", "-q", "-3", "-T2", "-f", str(out), "-o", f"{out}.zst"], check=True)
    os.unlink(out)
    return time.perf_counter() - t


def peer_restore(zst: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["zstd", "-q", "-d", "-f", str(zst), "-o", str(out)], check=True)
    return time.perf_counter() - t


def crypto_bench(n: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from agentgate.security.envelope import aad, open_sealed, seal
    from agentgate.security.keys import LocalKek, MasterKey

    kek = LocalKek(MasterKey(os.urandom(32), False), b"bench-salt-16byt")
    value = os.urandom(1024)
    ad = aad("secret", "tenant", "openai", "1")
    key = AESGCM(AESGCM.generate_key(bit_length=256))

    async def envelope() -> tuple[float, float]:
        t = time.perf_counter()
        sealed = [await seal(kek, value, ad) for _ in range(n)]
        enc = time.perf_counter() - t
        t = time.perf_counter()
        for s in sealed:
            await open_sealed(kek, s, ad)
        return enc, time.perf_counter() - t

    def bare() -> float:
        t = time.perf_counter()
        for _ in range(n):
            nonce = os.urandom(12)
            key.decrypt(nonce, key.encrypt(nonce, value, ad), ad)
        return time.perf_counter() - t

    encs, decs, bares = [], [], []
    for _ in range(5):
        e, d = asyncio.run(envelope())
        encs.append(e / n * 1e6)
        decs.append(d / n * 1e6)
        bares.append(bare() / n * 1e6)
    return {
        "envelope_encrypt_us": statistics.median(encs),
        "envelope_decrypt_us": statistics.median(decs),
        "aesgcm_roundtrip_us": statistics.median(bares),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=64 * 1024)
    ap.add_argument("--quick", action="store_true", help="64 MiB, one repetition")
    ap.add_argument("--out", default="loadtests/results/security.json")
    ap.add_argument("--no-md", action="store_true", help="do not rewrite BENCHMARKS.md")
    a = ap.parse_args()
    if a.quick:
        a.size_mib, a.reps = 64, 1
    for tool in ("sqlite3", "zstd"):
        if shutil.which(tool) is None:
            sys.exit(f"bench-security: {tool} is missing (apt-get install -y {tool})")
    work = Path(tempfile.mkdtemp(prefix="agentgate-bench-sec-"))
    try:
        data = work / "data"
        data.mkdir()
        store = data / "agentgate.db"
        t = time.perf_counter()
        rows = build_store(store, a.size_mib)
        size = store.stat().st_size
        print(
            f"store: {size / 2**20:.0f} MiB, {rows} rows, built in {time.perf_counter() - t:.0f} s"
        )
        mb = size / 1e6
        res: dict[str, list[float]] = {
            k: [] for k in ("ours_backup", "peer_backup", "ours_restore", "peer_restore")
        }
        stored = peer_size = 0
        for rep in range(a.reps):
            dest = work / f"dest-{rep}"
            mgr = manager(dest, data, store, a.chunk)
            t = time.perf_counter()
            m = asyncio.run(mgr.create(full=True))
            res["ours_backup"].append(time.perf_counter() - t)
            stored = du(dest)
            res["peer_backup"].append(peer_backup(store, work / "peer.db"))
            peer_size = (work / "peer.db.zst").stat().st_size
            t = time.perf_counter()
            asyncio.run(mgr.restore(m.id, work / f"restored-{rep}"))
            res["ours_restore"].append(time.perf_counter() - t)
            res["peer_restore"].append(
                peer_restore(work / "peer.db.zst", work / "peer-restored.db")
            )
            shutil.rmtree(work / f"restored-{rep}")
            os.unlink(work / "peer-restored.db")
            if rep < a.reps - 1:
                shutil.rmtree(dest)
            print(f"rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in res.items()))
        med = {k: statistics.median(v) for k, v in res.items()}
        # incremental after 1 % of the rows change (spread randomly, then one contiguous range)
        incr: dict[str, Any] = {}
        for label, clustered in (("random", False), ("clustered", True)):
            changed = change_rows(store, rows, 0.01, clustered)
            m2 = asyncio.run(mgr.create())
            incr[label] = {
                "rows_changed": changed,
                "uploaded_bytes": m2.stored_new,
                "new_chunks": m2.new_chunks,
                "chunks": len(m2.chunks),
                "fraction_of_full": m2.stored_new / stored,
            }
            print(
                f"incremental ({label} 1 %): {m2.stored_new / 2**20:.1f} MiB = {m2.stored_new / stored:.1%} of a full backup"
            )
        crypto = crypto_bench(2000 if a.quick else 20000)
        out = {
            "store_bytes": size,
            "rows": rows,
            "reps": a.reps,
            "chunk_size": a.chunk,
            "seconds": res,
            "median_seconds": med,
            "mb_per_s": {k: mb / v for k, v in med.items()},
            "stored_bytes": {"ours_full": stored, "peer_zstd": peer_size},
            "incremental": incr,
            "crypto": crypto,
        }
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        if not a.no_md:
            write_md(
                out,
                " ".join(
                    ["make bench-security", *(["BENCH_SECURITY_ARGS=--quick"] if a.quick else [])]
                ),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_md(r: dict[str, Any], command: str) -> None:
    mbs, st, inc, c = r["mb_per_s"], r["stored_bytes"], r["incremental"], r["crypto"]
    lines = [
        f"Command: `{command}`. Store: {r['store_bytes'] / 2**20:.0f} MiB SQLite ({r['rows']} rows of"
        f" ~1 KiB), chunks avg {r['chunk_size'] // 1024} KiB, zstd level 3, {r['reps']} interleaved"
        " repetitions, medians.",
        "",
        "| | agentgate | `sqlite3 .backup` + `zstd -3 -T2` | ratio |",
        "|---|---:|---:|---:|",
        f"| backup MB/s | {mbs['ours_backup']:.0f} | {mbs['peer_backup']:.0f} | {mbs['ours_backup'] / mbs['peer_backup']:.2f}× |",
        f"| restore MB/s (ours verifies first) | {mbs['ours_restore']:.0f} | {mbs['peer_restore']:.0f} | {mbs['ours_restore'] / mbs['peer_restore']:.2f}× |",
        f"| stored size | {st['ours_full'] / 2**20:.0f} MiB | {st['peer_zstd'] / 2**20:.0f} MiB | {st['ours_full'] / st['peer_zstd']:.2f}× |",
        "",
        "Incremental backup after 1 % of the rows change (the peer has no incremental: every run is a full copy):",
        "",
        "| rows changed | uploaded | of a full backup | new chunks |",
        "|---|---:|---:|---:|",
    ]
    for label, v in inc.items():
        lines.append(
            f"| {v['rows_changed']} ({label}) | {v['uploaded_bytes'] / 2**20:.1f} MiB | {v['fraction_of_full']:.1%} | {v['new_chunks']} of {v['chunks']} |"
        )
    lines += [
        "",
        "| per 1 KiB secret | µs |",
        "|---|---:|",
        f"| envelope encrypt (new data key, AES-256-GCM, wrap under the KEK) | {c['envelope_encrypt_us']:.1f} |",
        f"| envelope decrypt (unwrap, AES-256-GCM) | {c['envelope_decrypt_us']:.1f} |",
        f"| bare AES-GCM encrypt + decrypt (reference) | {c['aesgcm_roundtrip_us']:.1f} |",
    ]
    replace_section("security", "Security (make bench-security)", "\n".join(lines))


if __name__ == "__main__":
    main()
