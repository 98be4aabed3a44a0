"""`agentgate backup create|list|verify|restore|prune|status --config FILE` as a user runs them."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from leakcheck import track
from test_cli_secrets import ag


def test_backup_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "agentgate.yaml"
    cfg.write_text(
        f"data_dir: {data}\n"
        "backup:\n"
        "  chunk_size: 16KiB\n"
        "  destinations:\n"
        f"    - {{name: local, type: local, path: {tmp_path / 'bk'}}}\n"
        f"    - {{name: usb, type: offline, path: {tmp_path / 'usb'}}}\n"
    )
    env = dict(os.environ, HOME=str(tmp_path))
    for k in ("AGENTGATE_DATABASE_URL", "AGENTGATE_DATA_DIR", "AGENTGATE_CONFIG"):
        env.pop(k, None)
    p = ag(env, "backup", "create", "--config", str(cfg), ok=False)
    assert p.returncode == 1 and "AGENTGATE_MASTER_KEY" in p.stderr
    env["AGENTGATE_MASTER_KEY"] = track(os.urandom(32).hex())
    ag(env, "admin", "bootstrap", "--data-dir", str(data))
    created = json.loads(ag(env, "backup", "create", "--config", str(cfg)).stdout)
    assert created["destinations"] == ["local", "usb"]
    bid = created["id"]
    listed = json.loads(ag(env, "backup", "list", "--config", str(cfg)).stdout)
    assert [b["id"] for b in listed] == [bid]
    rep = json.loads(ag(env, "backup", "verify", bid, "--config", str(cfg)).stdout)
    assert rep["ok"] and set(rep["results"]) == {"local", "usb"}
    st = json.loads(ag(env, "backup", "status", "--config", str(cfg)).stdout)
    assert st["copies"] == 3 and st["offsite"] and st["last"] == bid
    # restore into an empty directory with only the master key and the destinations
    out = json.loads(
        ag(
            env, "backup", "restore", bid, "--into", str(tmp_path / "r"), "--config", str(cfg)
        ).stdout
    )
    con = sqlite3.connect(out["restored"])
    assert con.execute("SELECT name FROM tenants").fetchall() == [("system",)]
    con.close()
    # a corrupted chunk: verify exits 4 naming it, restore from that destination is refused
    chunk = next((tmp_path / "bk" / "chunks").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    blob = bytearray(chunk.read_bytes())
    blob[-1] ^= 0xFF
    chunk.write_bytes(bytes(blob))
    p = ag(env, "backup", "verify", bid, "--config", str(cfg), ok=False)
    assert p.returncode == 4 and chunk.name in p.stdout
    p = ag(
        env,
        "backup",
        "restore",
        bid,
        "--into",
        str(tmp_path / "r2"),
        "--from",
        "local",
        "--config",
        str(cfg),
        ok=False,
    )
    assert p.returncode == 1 and chunk.name in p.stderr and "not restored" in p.stderr
    assert not (tmp_path / "r2" / "agentgate.db").exists()
    pr = json.loads(ag(env, "backup", "prune", "--config", str(cfg)).stdout)
    assert pr["local"]["forgotten"] == 0
    # a wrong master key cannot open the repositories
    env["AGENTGATE_MASTER_KEY"] = track(os.urandom(32).hex())
    p = ag(
        env,
        "backup",
        "restore",
        bid,
        "--into",
        str(tmp_path / "r3"),
        "--config",
        str(cfg),
        ok=False,
    )
    assert p.returncode == 1 and "master key" in p.stderr
