"""`agentgate alerts …` / `agentgate metrics …` against the real admin API of a running gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from observe_helpers import Served


def _cli(gw: Served, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AGENTGATE_URL=gw.admin, AGENTGATE_API_KEY=secret)
    env["AGENTGATE_PROFILE_FILE"] = "/nonexistent"
    return subprocess.run(
        [sys.executable, "-m", "agentgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_alerts_cli_round_trip(gateway: tuple[Served, str], tmp_path: Path) -> None:
    gw, secret = gateway
    rule = {
        "name": "CliRule",
        "conditions": [{"metric": "p99_latency", "op": ">", "threshold": 5, "window": "5m"}],
        "severity": "info",
    }
    f = tmp_path / "rule.json"
    f.write_text(json.dumps(rule))
    r = _cli(gw, secret, "alerts", "rules", "put", str(f))
    assert r.returncode == 0, r.stderr
    r = _cli(gw, secret, "alerts", "rules", "get", "CliRule")
    assert json.loads(r.stdout)["conditions"][0]["threshold"] == 5
    names = {x["name"] for x in json.loads(_cli(gw, secret, "alerts", "rules", "list").stdout)}
    assert {"CliRule", "HighLatencyP99", "HighErrorRate", "AgentDown", "QueueDepth"} <= names
    r = _cli(
        gw,
        secret,
        "alerts",
        "silence",
        "--match",
        "agent=~echo.*",
        "--for",
        "30m",
        "--comment",
        "deploy",
    )
    assert r.returncode == 0, r.stderr
    sid = json.loads(r.stdout)["id"]
    sil: list[dict[str, Any]] = json.loads(_cli(gw, secret, "alerts", "silences").stdout)
    assert any(s["id"] == sid and s["comment"] == "deploy" for s in sil)
    assert _cli(gw, secret, "alerts", "unsilence", sid).returncode == 0
    bad = _cli(gw, secret, "alerts", "ack", "no-such-alert")
    assert bad.returncode == 1 and "404" in bad.stderr
    bad = _cli(gw, secret, "alerts", "silence", "--match", "nonsense")
    assert bad.returncode == 1 and "label=value" in bad.stderr
    assert _cli(gw, secret, "alerts", "rules", "delete", "CliRule").returncode == 0
    st = json.loads(_cli(gw, secret, "alerts", "stats").stdout)
    assert "fired" in st


def test_metrics_cli(gateway: tuple[Served, str]) -> None:
    gw, secret = gateway
    for v in (10, 20, 30):
        r = _cli(
            gw,
            secret,
            "metrics",
            "record",
            "orders",
            str(v),
            "--kind",
            "histogram",
            "--label",
            "shop=eu",
        )
        assert r.returncode == 0, r.stderr
    r = _cli(gw, secret, "metrics", "query", "orders", "--agg", "p50", "--by", "shop")
    res = json.loads(r.stdout)["results"]
    assert res[0]["group"] == {"shop": "eu"} and abs(res[0]["value"] - 20) <= 0.2
    sysmon = json.loads(_cli(gw, secret, "metrics", "system").stdout)
    assert sysmon["host"]["cpus"] >= 1
    roles = {p["role"] for p in sysmon["processes"]}
    # one `agentgate serve` process runs the data plane, the admin listener and the control plane
    assert "gateway" in roles
    health = json.loads(_cli(gw, secret, "metrics", "health").stdout)
    assert "score" in health


def test_python_metrics_client(gateway: tuple[Served, str]) -> None:
    import pytest

    from agentgate.observe.client import MetricsClient, MetricsError

    gw, secret = gateway
    m = MetricsClient(gw.admin, secret)
    with m.batch() as b:
        for v in range(1, 101):
            b.record("basket_eur", float(v), kind="histogram", labels={"shop": "de"})
    m.record("signups", 3, kind="counter")
    m.record("signups", 4, kind="counter")
    res = m.query("basket_eur", agg="p95", by=["shop"])
    assert res[0]["group"] == {"shop": "de"} and abs(res[0]["value"] - 95) <= 1.0
    assert m.query("signups", agg="sum")[0]["value"] == 7
    with pytest.raises(MetricsError) as ei:
        m.record("signups", -1, kind="counter")
    assert ei.value.status == 422 and "counter only goes up" in ei.value.detail
    with pytest.raises(MetricsError) as ei:
        MetricsClient(gw.admin, "ag_wrong").record("x", 1)
    assert ei.value.status == 401
