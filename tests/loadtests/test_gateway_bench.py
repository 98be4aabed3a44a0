"""The gateway benchmark's own arithmetic: parsing wrk and perf output, /proc readings, the
summary and its targets. No server runs and no timing is asserted: speed is measured by
`make bench-gateway`, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from loadtests.gateway.bench import (  # noqa: E402
    cpu_seconds,
    parse_wrk,
    smaps_rollup,
    tree_memory,
    tree_pids,
)
from loadtests.gateway.pyentries import parse_perf_stat  # noqa: E402
from loadtests.gateway.report import markdown, summarize, targets  # noqa: E402
from loadtests.gateway.scenarios import CHAT_BODY, SCENARIOS, Settings  # noqa: E402

WRK_OUT = """\
Running 10s test @ http://127.0.0.1:18084/1k
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms  412.00us  12.10ms   91.20%
  Latency Distribution
     50%    2.25ms
     75%    2.40ms
     90%    2.61ms
     99%    3.90ms
  276000 requests in 10.00s, 300.00MB read
  Non-2xx or 3xx responses: 1000
Requests/sec:  27600.00
Transfer/sec:     30.00MB
"""


def test_chat_body_is_118_bytes_of_json() -> None:
    assert len(CHAT_BODY) == 118
    assert json.loads(CHAT_BODY)["model"] == "bench"


def test_wrk_counts_only_successful_responses() -> None:
    r = parse_wrk(WRK_OUT)
    assert r["requests"] == 276000
    assert r["ok_requests"] == 275000
    assert r["rps"] == 27600.0 * 275000 / 276000
    assert r["closed_loop_p50_ms"] == 2.25
    assert r["closed_loop_p99_ms"] == 3.9


def test_perf_stat_counts_and_not_counted() -> None:
    text = (
        "# started on Wed Dec  2 01:54:07 2026\n\n"
        "agentgate-22723,5779,,agbench:eval,56439931,100.00,,\n"
        "agentgate-dp-22828,0,,agbench:eval,1238669980,100.00,,\n"
        "agentgate-22836,<not counted>,,agbench:eval,0,100.00,,\n"
        "agentgate-22723,777,,agbench:gil,56439931,100.00,,\n"
        "agentgate-dp-22828,0,,agbench:gil,1238669980,100.00,,\n"
        "agentgate-22836,<not counted>,,agbench:gil,0,100.00,,\n"
        "agentgate-22723,12,,cycles,1,100.00,,\n"
    )
    counts = parse_perf_stat(text)
    assert counts.total == {"eval": 5779, "gil": 777}
    assert counts.busiest() == {
        "thread": "agentgate-dp-22828",
        "cpu_s": 1.23866998,
        "eval": 0,
        "gil": 0,
    }
    assert len(counts.threads) == 3


def test_cpu_time_and_memory_of_a_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        pids = tree_pids(os.getpid())
        assert child.pid in pids
        before = cpu_seconds([os.getpid()])
        x = 0
        while cpu_seconds([os.getpid()]) == before:  # CPU ticks, not wall time
            x += sum(range(10_000))
        assert cpu_seconds([os.getpid()]) > before
        mine = smaps_rollup(os.getpid())
        assert 0 < mine["pss"] <= mine["rss"]
        tree = tree_memory(os.getpid())
        assert {p["pid"] for p in tree["processes"]} >= {os.getpid(), child.pid}
        assert tree["rss"] >= tree["pss"] > mine["pss"]
    finally:
        child.communicate(b"", timeout=30)


def _run(server: str, rps: float, p99: float, cpu: float, pss: float) -> dict[str, object]:
    run: dict[str, object] = {"server": server, "round": 0, "rss_mib": pss * 1.5, "pss_mib": pss,
                              "pss_start_mib": pss * 0.9}  # fmt: skip
    for sc in SCENARIOS:
        run[f"wrk_{sc.key}"] = {"rps": rps, "cpu_us_per_request": cpu, "non_2xx_3xx": 0}
    for key, rate in Settings().latency:
        run[f"oha_{key}_{rate}"] = {"p50_ms": p99 / 2, "p99_ms": p99, "p999_ms": p99 * 2,
                                    "achieved_rps": rate, "failed": 0}  # fmt: skip
    run["sse"] = {"ttfe_ms_median": 0.5, "total_ms_median": 41.0, "streams": 30, "complete": 30}
    run["processes"] = [{"pid": 1}]
    return run


def test_summary_ratios_targets_and_tables() -> None:
    settings = Settings()
    runs = [
        _run("direct", 40000, 0.2, 20, 10),
        _run("nginx", 20000, 0.4, 50, 9),
        _run("agentgate-prev", 8000, 0.9, 125, 150),
        _run("agentgate", 19000, 0.5, 52, 80),
        _run("agentgate-trace1", 18810, 0.5, 52.52, 80),
        _run("agentgate-trace100", 17290, 0.6, 57.2, 82),
        {"server": "litellm", "round": 0, "error": "not ready after 120s"},
    ]
    pycounts = [
        {"server": "agentgate", "idle": {"eval": 2000, "gil": 250, "seconds": 5},
         "get_1k": {"per_request": {"eval": 0.001, "gil": 0.0},
                    "busiest_thread": {"thread": "agentgate-dp-7", "cpu_s": 1.2, "eval": 0.0}},
         "post": {"per_request": {"eval": -0.002, "gil": 0.0},
                  "busiest_thread": {"thread": "agentgate-dp-7", "cpu_s": 1.3, "eval": 0.0}}},
        {"server": "agentgate-prev", "idle": {"eval": 900, "gil": 10, "seconds": 5},
         "get_1k": {"per_request": {"eval": 14.2, "gil": 3.0},
                    "all_per_request": {"eval": 14.3, "gil": 3.0}},
         "post": {"per_request": {"eval": 19.5, "gil": 4.0}}},
    ]  # fmt: skip
    summary = summarize(runs, pycounts, settings)
    ag = summary["agentgate"]
    assert ag["x_nginx_get_1k"] == 0.95
    assert ag["x_prev_post"] == 19000 / 8000
    assert ag["cpu_x_prev_get_1k"] == 52 / 125
    assert round(ag["lat_get_1k_1000"]["added_p99_ms"], 6) == 0.3
    assert summary["litellm"] == {"error": "not ready after 120s"}
    checks = {t["target"]: t["met"] for t in targets(summary, settings)}
    assert all(checks.values()), checks
    assert len(checks) == 14
    # tracing's cost is read against the untraced agentgate of the same run
    assert summary["agentgate-trace100"]["x_untraced_post"] == 17290 / 19000
    meta = {"command": "make bench-gateway", "rounds": 1, "machine": "x86_64, 2 CPUs",
            "date": "2026-12-02", "cpu_layout": "pinned", "load_before": "1.0, 1.0, 1.0",
            "load_after": "1.0, 1.0, 1.0", "targets": targets(summary, settings)}  # fmt: skip
    table = markdown(summary, meta, settings)
    assert (
        "| agentgate | 19000 (0.95×, 2.38×) | 19000 (0.95×, 2.38×) | 19000 (0.95×, 2.38×) |"
        in table
    )
    assert (
        "| agentgate | 52.0 / 52.0 / 52.0 (0.42 / 0.42 / 0.42) | – | 72.0 | 120.0 / 80.0 (1) |"
        in table
    )
    assert "| litellm | failed: not ready after 120s |" in table
    assert (
        "| agentgate-prev | 180 | 14.20 (14.30) | 19.50 (–) | `?` (– s CPU): – / – | 3.00 / 4.00 |"
        in table
    )
    assert "`agentgate-dp` (1.2 s CPU): 0.00 / 0.00 |" in table
    assert "| agentgate-trace100 | 0.910 / 0.910 / 0.910 | 1.100 / 1.100 / 1.100 |" in table


def test_a_slower_agentgate_misses_its_targets() -> None:
    settings = Settings()
    runs = [
        _run("direct", 40000, 0.2, 20, 10),
        _run("nginx", 20000, 0.4, 50, 9),
        _run("agentgate-prev", 8000, 0.9, 125, 150),
        _run("agentgate", 10000, 1.2, 100, 120),
        _run("agentgate-trace1", 9500, 1.2, 105, 120),
    ]
    checks = {t["target"]: t["met"] for t in targets(summarize(runs, [], settings), settings)}
    assert checks["throughput GET 1 KiB vs nginx"] is False
    assert checks["PSS of the process tree, 1 worker (MiB)"] is False
    assert checks["PSS of the process tree before any load, 1 worker (MiB)"] is False
    assert checks["added p99 GET 1 KiB @ 1000 req/s (ms)"] is False
    assert checks["tracing at 1% sampling: throughput lost, GET 1 KiB"] is False
    # not measured: neither met nor missed
    assert checks["Python interpreter entries per request on the serving thread, GET 1 KiB"] is None
