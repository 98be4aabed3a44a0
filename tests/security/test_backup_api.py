"""`/api/backup` with a configured local + S3 destination: create, list, get, verify, status,
prune; tenant admins see no backups; without a backup section the routes answer 409."""

from __future__ import annotations

from pathlib import Path

from sec_api import make_sec_api

from agentgate.config import parse_config


async def test_backup_routes(tmp_path: Path, master_hex: str, s3_bucket: tuple[str, str]) -> None:
    cfg = parse_config(
        {
            "data_dir": str(tmp_path),
            "backup": {
                "destinations": [
                    {"name": "local", "type": "local", "path": str(tmp_path / "bk")},
                    {"name": "s3", "type": "s3", "bucket": s3_bucket[1],
                     "endpoint_url": s3_bucket[0]},
                ],
                "chunk_size": "16384",
            },
        }
    )  # fmt: skip
    env = {"AGENTGATE_MASTER_KEY": master_hex}
    a = await make_sec_api(None, tmp_path, env, config=cfg)
    try:
        c = a.client
        r = await c.post("/api/backup", json={})
        assert r.status_code == 201, r.text
        b = r.json()
        assert b["destinations"] == ["local", "s3"] and b["dialect"] == "sqlite"
        assert [x["id"] for x in (await c.get("/api/backup")).json()] == [b["id"]]
        assert (await c.get(f"/api/backup/{b['id']}")).json()["chunks"] == b["chunks"]
        r = await c.post(f"/api/backup/{b['id']}/verify")
        assert r.status_code == 200 and r.json()["ok"], r.text
        st = (await c.get("/api/backup/-/status")).json()
        assert st["copies"] == 3 and st["offsite"] and st["last"]["id"] == b["id"]
        assert st["warnings"] == [] and st["media"] == ["disk", "object-storage"]
        assert (await c.get("/api/backup/nope")).status_code == 404
        assert (await c.post("/api/backup/-/prune")).json()["removed"]["local"]["forgotten"] == 0
        _, admin = await a.tenant_key("acme", ["admin"])
        assert (await c.get("/api/backup", headers=admin)).status_code == 403
        assert (await c.get(f"/api/backup/{b['id']}", headers=admin)).status_code == 404
        actions = [e.action for e in await a.store.system.audit.query()]
        assert actions.count("backup.create") == 1 and "backup.verify" in actions
    finally:
        await a.close()
    a = await make_sec_api(None, tmp_path / "other", env)
    try:
        r = await a.client.post("/api/backup", json={})
        assert r.status_code == 409 and "backup" in r.json()["detail"]
    finally:
        await a.close()
