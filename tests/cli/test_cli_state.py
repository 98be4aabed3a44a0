"""`agentgate state show|restore` against a real API server."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_cli_control import _ag, _json, server

__all__ = ["server"]  # the module-scoped API server fixture, shared


def test_state_show_and_restore(server: dict[str, str], tmp_path: Path) -> None:
    env = server
    _ag(env, "keys", "gen", str(tmp_path / "pub"), "--register")
    doc = {
        "name": "history",
        "version": "1.0.0",
        "description": "agent with a history",
        "capabilities": ["echo"],
        "spec": {"kind": "http", "endpoints": [{"url": "http://127.0.0.1:9"}]},
    }
    (tmp_path / "t.json").write_text(json.dumps(doc))
    _ag(env, "template", "publish", str(tmp_path / "t.json"), "--key", str(tmp_path / "pub.key"))
    _ag(env, "agent", "create", "history@^1", "--replicas", "1")
    time.sleep(0.05)  # the server's clock is the wall clock: let "before the update" exist
    before = time.time()
    time.sleep(0.05)
    _ag(env, "agent", "delete", "history")  # drains (no gateway reports here)
    shown = _json(_ag(env, "state", "show", "history", "--at", str(before)))
    assert shown["agent"]["state"] == "active" and shown["version"] == 1
    assert _json(_ag(env, "state", "show", "history"))["agent"]["state"] == "draining"
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before + 3600)) + "Z"
    assert [a["name"] for a in _json(_ag(env, "state", "show", "--at", iso))["agents"]] == [
        "history"
    ]
    # the restore undoes the delete: the agent is active again, one more event in its history
    out = _json(_ag(env, "state", "restore", "history", "--at", str(before)))
    assert [s["agent"]["state"] for s in out["restored"]] == ["active"]
    listed = {a["name"]: a["state"] for a in _json(_ag(env, "agent", "list"))}
    assert listed["history"] == "active"
    assert _json(_ag(env, "state", "show", "history"))["version"] == 3
    bad = _ag(env, "state", "restore", "--at", "soon", ok=False)
    assert bad.returncode == 1 and "agent name or --all" in bad.stderr
    bad = _ag(env, "state", "show", "history", "--at", "soon", ok=False)
    assert bad.returncode == 1 and "$.query.at" in bad.stderr
