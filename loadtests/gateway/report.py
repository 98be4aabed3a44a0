"""The gateway benchmark's summary: medians, ratios, the issue's targets, Markdown tables."""

from __future__ import annotations

import statistics
from typing import Any

from loadtests.benchmarks_md import replace_section
from loadtests.gateway.pyentries import PROBES
from loadtests.gateway.scenarios import BY_KEY, NOTES, SCENARIOS, SERVER_NAMES, TRACED, Settings


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    return statistics.median(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(
    runs: list[dict[str, Any]], pycounts: list[dict[str, Any]], settings: Settings
) -> dict[str, Any]:
    """Medians per server over rounds, ratios to nginx, added p99 over direct."""
    out: dict[str, Any] = {}
    for name in SERVER_NAMES:
        mine = [r for r in runs if r["server"] == name and "error" not in r]
        failed = [r["error"] for r in runs if r["server"] == name and "error" in r]
        if not mine:
            if failed:
                out[name] = {"error": failed[-1]}
            continue
        row: dict[str, Any] = {"rounds_ok": len(mine), "rounds_failed": len(failed)}
        for sc in SCENARIOS:
            wrk = [r[f"wrk_{sc.key}"] for r in mine]
            row[f"rps_{sc.key}"] = _median([w["rps"] for w in wrk])
            row[f"cpu_us_{sc.key}"] = _median([w["cpu_us_per_request"] for w in wrk])
            row[f"non_2xx_{sc.key}"] = sum(w["non_2xx_3xx"] for w in wrk)
        for key, rate in settings.latency:
            runs_ = [r[f"oha_{key}_{rate}"] for r in mine]
            lat = {
                k: _median([x.get(k) for x in runs_])
                for k in ("p50_ms", "p99_ms", "p999_ms", "achieved_rps")
            }
            lat["failed"] = sum(x.get("failed", 0) for x in runs_)
            row[f"lat_{key}_{rate}"] = lat
        row["idle_cpu_ms_per_s"] = _median([r.get("idle_cpu_ms_per_s") for r in mine])
        row["rss_mib"] = _median([r["rss_mib"] for r in mine])
        row["pss_mib"] = _median([r["pss_mib"] for r in mine])
        row["pss_start_mib"] = _median([r.get("pss_start_mib") for r in mine])
        row["processes"] = len(mine[-1].get("processes", []))
        row["sse_ttfe_ms"] = _median([r["sse"]["ttfe_ms_median"] for r in mine])
        row["sse_incomplete"] = sum(r["sse"]["streams"] - r["sse"]["complete"] for r in mine)
        if name in NOTES:
            row["note"] = NOTES[name]
        out[name] = row

    direct = out.get("direct") or {}
    nginx = out.get("nginx") or {}
    prev = out.get("agentgate-prev") or {}
    untraced = out.get("agentgate") or {}
    for name in TRACED:
        row = out.get(name) or {}
        if "error" in row or "rps_get_1k" not in row:
            continue
        for sc in SCENARIOS:  # tracing's cost: throughput and CPU against the same build untraced
            row[f"x_untraced_{sc.key}"] = _ratio(
                row[f"rps_{sc.key}"], untraced.get(f"rps_{sc.key}")
            )
            row[f"cpu_x_untraced_{sc.key}"] = _ratio(
                row[f"cpu_us_{sc.key}"], untraced.get(f"cpu_us_{sc.key}")
            )
    for row in out.values():
        if "error" in row:
            continue
        for sc in SCENARIOS:
            row[f"x_nginx_{sc.key}"] = _ratio(row[f"rps_{sc.key}"], nginx.get(f"rps_{sc.key}"))
            row[f"x_prev_{sc.key}"] = _ratio(row[f"rps_{sc.key}"], prev.get(f"rps_{sc.key}"))
            row[f"cpu_x_prev_{sc.key}"] = _ratio(
                row[f"cpu_us_{sc.key}"], prev.get(f"cpu_us_{sc.key}")
            )
        for key, rate in settings.latency:
            p99 = row[f"lat_{key}_{rate}"]["p99_ms"]
            base = (direct.get(f"lat_{key}_{rate}") or {}).get("p99_ms")
            row[f"lat_{key}_{rate}"]["added_p99_ms"] = (
                p99 - base if p99 is not None and base is not None else None
            )
    for pc in pycounts:
        row = out.setdefault(pc["server"], {})
        if "error" in pc:
            row["python_entries"] = {"error": pc["error"]}
            continue
        row["python_entries"] = {
            "idle_per_s": {k: pc["idle"][k] / pc["idle"]["seconds"] for k in PROBES},
            **{
                sc: {
                    **pc[sc]["per_request"],
                    **{f"{k}_all": v for k, v in pc[sc].get("all_per_request", {}).items()},
                    "serving_thread": pc[sc].get("busiest_thread") or {},
                }
                for sc in ("get_1k", "post")
            },
        }
    return out


def _added(row: dict[str, Any], key: str, rate: int) -> float | None:
    return ((row.get(f"lat_{key}_{rate}") or {}).get("added_p99_ms")) if row else None


def targets(summary: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The issue's targets for agentgate, checked against this run."""
    ag = summary.get("agentgate") or {}
    if "error" in ag or "rps_get_1k" not in ag:
        return []
    prev = summary.get("agentgate-prev") or {}
    out: list[dict[str, Any]] = []

    def check(target: str, value: float | None, goal: str, met: bool | None) -> None:
        out.append(
            {
                "target": target,
                "value": None if value is None else round(value, 3),
                "goal": goal,
                "met": met,
            }
        )

    for key in ("get_1k", "post"):
        x = ag.get(f"x_nginx_{key}")
        check(
            f"throughput {BY_KEY[key].label} vs nginx", x, "≥ 0.9×", None if x is None else x >= 0.9
        )
    for key, rate in settings.latency:
        if rate != 1000:
            continue
        mine, theirs = _added(ag, key, rate), _added(prev, key, rate)
        met = None if mine is None or theirs is None else mine <= theirs
        goal = "≤ agentgate-prev" + ("" if theirs is None else f" ({theirs:+.3f} ms)")
        check(f"added p99 {BY_KEY[key].label} @ {rate} req/s (ms)", mine, goal, met)
    for name, goal in (("agentgate-trace1", 0.03), ("agentgate-trace100", 0.10)):
        row = summary.get(name) or {}
        for key in ("get_1k", "post"):
            x = row.get(f"x_untraced_{key}")
            cost = None if x is None else 1 - x
            check(
                f"tracing at {TRACED[name]:.0%} sampling: throughput lost, {BY_KEY[key].label}",
                cost,
                f"≤ {goal:.0%} ({goal})",
                None if cost is None else cost <= goal,
            )
    pss = ag.get("pss_mib")
    check(
        "PSS of the process tree, 1 worker (MiB)", pss, "≤ 100", None if pss is None else pss <= 100
    )
    pss = ag.get("pss_start_mib")
    check(
        "PSS of the process tree before any load, 1 worker (MiB)",
        pss,
        "≤ 100",
        None if pss is None else pss <= 100,
    )
    entries = ag.get("python_entries") or {}
    for key in ("get_1k", "post"):
        mine = entries.get(key) or {}
        v = (mine.get("serving_thread") or {}).get("eval")
        check(
            f"Python interpreter entries per request on the serving thread, {BY_KEY[key].label}",
            v,
            "0 (< 0.01)",
            None if v is None else v < 0.01,
        )
        v = mine.get("eval")
        check(
            f"Python interpreter entries per request, whole process, {BY_KEY[key].label}",
            v,
            "≈ 0 (< 0.05 beyond the idle rate)",
            None if v is None else v < 0.05,
        )
    return out  # fmt: skip


def fmt(v: float | None, pattern: str = "{:.0f}") -> str:
    """A number for a table cell; "–" when it is missing."""
    return "–" if v is None else pattern.format(v)


def markdown(summary: dict[str, Any], meta: dict[str, Any], settings: Settings) -> str:
    """The summary as Markdown tables: throughput, latency, cost, Python entries, targets."""
    rows = [(n, summary[n]) for n in SERVER_NAMES if n in summary]
    lines = [
        f"Command: `{meta['command']}` — {meta['rounds']} interleaved round(s), medians; "
        f"{meta['machine']}, {meta['date']}. Machine load (`uptime`): {meta['load_before']} "
        f"before, {meta['load_after']} after (the machine is shared with other engineers' "
        f"builds and test suites: absolute numbers are noisy, ratios less so). "
        f"CPU layout: {meta['cpu_layout']}. Every server has one worker "
        f"(process or thread). Throughput: wrk -t1 -c{settings.wrk_connections} "
        f"-d{settings.wrk_seconds}s (2xx only); × prev: the ratio to agentgate-prev, the previous "
        f"release. Latency: oha at a fixed rate, "
        f"{settings.oha_seconds}s, latency correction (open loop); added p99 = p99 − direct's "
        f"p99. CPU: user + system time of the server's process tree over the wrk run / answered "
        f"requests; idle CPU: the same over {settings.idle_seconds} s with no load. Memory: "
        f"PSS (smaps_rollup) of the server's process tree once it answers, before any load, "
        f"and RSS and PSS after the load (allocators keep what the peak connection count "
        f"needed). SSE: time to "
        f"first event, median of {settings.sse_streams} fresh streams. "
        f"POST: `/v1/chat/completions`, 118-byte JSON body, `Authorization: Bearer`, 1 KiB JSON "
        f"reply; GETs send `X-API-Key`.",
        "",
        "| server | GET 1 KiB req/s (× nginx, × prev) | GET 16 KiB req/s (× nginx, × prev) "
        "| POST req/s (× nginx, × prev) | note |",
        "|---|---:|---:|---:|---|",
    ]

    def err(name: str, row: dict[str, Any]) -> bool:
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0][:100]} |")
            return True
        return "rps_get_1k" not in row

    for name, row in rows:
        if err(name, row):
            continue
        cells = [name]
        for sc in SCENARIOS:
            cells.append(
                f"{fmt(row[f'rps_{sc.key}'])} ({fmt(row[f'x_nginx_{sc.key}'], '{:.2f}')}×, "
                f"{fmt(row.get(f'x_prev_{sc.key}'), '{:.2f}')}×)"
            )
        cells.append(row.get("note", ""))
        lines.append("| " + " | ".join(cells) + " |")

    lines += [
        "",
        "| server "
        + "".join(
            f"| {BY_KEY[k].label} @ {r} req/s: p50 / p99 / p99.9 (ms) | added p99 "
            for k, r in settings.latency
        )
        + "|",
        "|---|" + "---:|---:|" * len(settings.latency),
    ]
    for name, row in rows:
        if "error" in row or "rps_get_1k" not in row:
            continue
        cells = [name]
        for key, rate in settings.latency:
            lat = row[f"lat_{key}_{rate}"]
            cell = " / ".join(fmt(lat[k], "{:.2f}") for k in ("p50_ms", "p99_ms", "p999_ms"))
            achieved = lat.get("achieved_rps")
            if achieved is not None and achieved < 0.95 * rate:
                cell += f" (only {achieved:.0f} req/s)"
            cells += [cell, fmt(lat.get("added_p99_ms"), "{:+.2f}")]
        lines.append("| " + " | ".join(cells) + " |")

    lines += [
        "",
        "| server | CPU µs/request: GET 1 KiB / GET 16 KiB / POST (× prev) | idle CPU (ms/s) "
        "| PSS MiB at start | RSS / PSS MiB after the load (processes) | SSE first event (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows:
        if "error" in row or "rps_get_1k" not in row:
            continue
        cpu = " / ".join(fmt(row[f"cpu_us_{sc.key}"], "{:.1f}") for sc in SCENARIOS)
        cpu += " (" + " / ".join(
            fmt(row.get(f"cpu_x_prev_{sc.key}"), "{:.2f}") for sc in SCENARIOS
        ) + ")"  # fmt: skip
        rss, pss = fmt(row["rss_mib"], "{:.1f}"), fmt(row["pss_mib"], "{:.1f}")
        mem = f"{rss} / {pss} ({row['processes']})"
        start = fmt(row.get("pss_start_mib"), "{:.1f}")
        idle = fmt(row.get("idle_cpu_ms_per_s"), "{:.1f}")
        lines.append(
            f"| {name} | {cpu} | {idle} | {start} | {mem} | {fmt(row['sse_ttfe_ms'], '{:.2f}')} |"
        )

    traced = [(n, r) for n, r in rows if n in TRACED and "x_untraced_get_1k" in r]
    if traced:
        lines += [
            "",
            "Tracing overhead: agentgate with `tracing.sampling_ratio` set, spans recorded in the "
            "core and exported over OTLP/HTTP (protobuf batches) to the upstream host, against "
            "the same build without tracing in the same rounds.",
            "",
            "| server | req/s × untraced: GET 1 KiB / GET 16 KiB / POST "
            "| CPU µs/request × untraced: GET 1 KiB / GET 16 KiB / POST |",
            "|---|---:|---:|",
        ]
        for name, row in traced:
            x = " / ".join(fmt(row[f"x_untraced_{sc.key}"], "{:.3f}") for sc in SCENARIOS)
            c = " / ".join(fmt(row[f"cpu_x_untraced_{sc.key}"], "{:.3f}") for sc in SCENARIOS)
            lines.append(f"| {name} | {x} | {c} |")

    counted = [(n, r["python_entries"]) for n, r in rows if "python_entries" in r]
    if counted:
        lines += [
            "",
            "Python↔Rust crossings, measured from outside: uprobes on libpython count every "
            "entry into the interpreter (`_PyEval_EvalFrameDefault`: an event-loop callback, a "
            "coroutine step, a call from Rust or granian into Python; Python-to-Python calls "
            "stay inside it) and every time native code takes the GIL to call Python "
            "(`PyGILState_Ensure`), on every thread of the server's processes, during a "
            f"{settings.pycount_seconds} s wrk run (64 connections), minus an idle window of the "
            "same length (timers: metrics, config polling; they slow down under load, so the "
            "difference can go below 0); in parentheses everything counted during the run, "
            "timers included, per request. The serving thread is the one that ran longest "
            "during the load (perf stat --per-thread): its count has no timer noise. Python that "
            "never runs cannot call Rust either.",
            "",
            "| server | idle entries/s | entries / request GET 1 KiB | entries / request POST "
            "| serving thread: entries / request GET / POST | GIL takes / request GET / POST |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, pe in counted:
            if "error" in pe:
                lines.append(f"| {name} | failed: {pe['error'].splitlines()[0][:100]} |")
                continue
            get, post = pe["get_1k"], pe["post"]
            cells = [name, fmt(pe["idle_per_s"]["eval"])]
            for sc in (get, post):
                cells.append(f"{fmt(sc['eval'], '{:.2f}')} ({fmt(sc.get('eval_all'), '{:.2f}')})")
            thread = get.get("serving_thread") or {}
            name_ = str(thread.get("thread") or "?").rsplit("-", 1)[0]
            cells.append(
                f"`{name_}` ({fmt(thread.get('cpu_s'), '{:.1f}')} s CPU): "
                f"{fmt(thread.get('eval'), '{:.2f}')} / "
                f"{fmt((post.get('serving_thread') or {}).get('eval'), '{:.2f}')}"
            )
            cells.append(f"{fmt(get['gil'], '{:.2f}')} / {fmt(post['gil'], '{:.2f}')}")
            lines.append("| " + " | ".join(cells) + " |")

    checks = meta.get("targets") or []
    if checks:
        lines += ["", "| agentgate target | this run | goal | met |", "|---|---:|---|:---:|"]
        for t in checks:
            met = "–" if t["met"] is None else ("yes" if t["met"] else "NO")
            value = "–" if t["value"] is None else t["value"]
            lines.append(f"| {t['target']} | {value} | {t['goal']} | {met} |")
    return "\n".join(lines)


def write_benchmarks_md(table: str) -> None:
    """Replaces the gateway section of BENCHMARKS.md, creating the file or section if missing."""
    replace_section(
        "gateway",
        "Gateway (make bench-gateway)",
        table,
        "Regenerate with `make bench-gateway` "
        "(`python loadtests/gateway/bench.py`, raw runs in `loadtests/results/gateway.json`).",
    )
