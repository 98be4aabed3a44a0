"""Core micro-benchmarks: agentgate's Rust core against what a Python user would otherwise pick.

Every case from `loadtests/core/bench_*.py` runs in the same process, interleaved: each round
times every case once (in a shuffled order), and the report takes the median over rounds. Ratios
are computed inside a group against its baseline case, so machine noise mostly cancels out.

    python loadtests/bench_core.py --out loadtests/results/core.json [--rounds 7] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.benchmarks_md import replace_section  # noqa: E402
from loadtests.core.harness import Case  # noqa: E402


def load_cases(only: set[str] | None) -> list[Case]:
    """Collects cases from every `loadtests/core/bench_*.py` module."""
    cases: list[Case] = []
    for path in sorted((ROOT / "loadtests" / "core").glob("bench_*.py")):
        module = importlib.import_module(f"loadtests.core.{path.stem}")
        for case in module.cases():
            if only is None or case.group in only:
                cases.append(case)
    return cases


def calibrate(case: Case, target_s: float) -> int:
    """Number of calls that take about `target_s` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            case.fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s / 4 or n >= 1 << 24:
            return max(1, int(n * target_s / max(elapsed, 1e-9)))
        n *= 4


def time_case(case: Case, calls: int) -> float:
    """Nanoseconds per unit of work for one timed batch of `calls` calls."""
    fn = case.fn
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    return elapsed / (calls * case.per)


def run(cases: list[Case], rounds: int, target_s: float) -> dict[str, Any]:
    """Times all cases over interleaved rounds and summarises medians and ratios."""
    for case in cases:  # warm up caches, JIT-less but allocator and branch predictors
        case.fn()
    calls = {id(c): calibrate(c, target_s) for c in cases}
    samples: dict[int, list[float]] = defaultdict(list)
    order = list(cases)
    rng = random.Random(42)
    for r in range(rounds):
        rng.shuffle(order)
        for case in order:
            samples[id(case)].append(time_case(case, calls[id(case)]))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    groups: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        groups[case.group].append(case)
    summary: dict[str, Any] = {}
    for group, members in groups.items():
        base = next((c for c in members if c.baseline), members[0])
        base_median = statistics.median(samples[id(base)])
        rows = {}
        for c in members:
            s = samples[id(c)]
            med = statistics.median(s)
            rows[c.name] = {
                "median_ns": round(med, 1),
                "min_ns": round(min(s), 1),
                "max_ns": round(max(s), 1),
                "samples_ns": [round(x, 1) for x in s],
                "per": c.per,
                "calls_per_sample": calls[id(c)],
                "ratio_to_baseline": round(med / base_median, 3),
            }
        summary[group] = {"baseline": base.name, "cases": rows}
    return summary


def _median(summary: dict[str, Any], group: str, name: str) -> float | None:
    row = summary.get(group, {}).get("cases", {}).get(name)
    return None if row is None else float(row["median_ns"])


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks the issue's targets against this run's medians (only for groups that ran)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: bool | None) -> None:
        if value is not None:
            out.append({"target": name, "value": round(value, 3), "goal": goal, "met": ok})

    combined = _median(summary, "admission-combined", "agentgate")
    add(
        "combined admission call (µs)",
        combined and combined / 1000,
        "<= 2 µs",
        combined is not None and combined <= 2000,
    )
    for group, goal in (("ratelimit", 10.0), ("breaker", 10.0)):
        data = summary.get(group)
        if data:
            peers = [
                r["ratio_to_baseline"]
                for n, r in data["cases"].items()
                if n != data["baseline"] and not n.startswith("agentgate")
            ]
            if peers:
                worst = min(peers)
                add(f"{group}: slowest-peer speedup (×)", worst, f">= {goal}×", worst >= goal)
    verify = summary.get("ed25519-verify")
    if verify:
        base = verify["cases"][verify["baseline"]]["median_ns"]
        peers = [r["median_ns"] for n, r in verify["cases"].items() if n != verify["baseline"]]
        if peers:
            ratio = base / min(peers)
            add("ed25519 verify / fastest peer (×)", ratio, "<= 1.2×", ratio <= 1.2)
    singles = _median(summary, "ed25519-batch64", "agentgate-singles")
    for name, label in (
        ("agentgate-batch", "batch-64 (strict, = verify) speedup per signature (×)"),
        ("agentgate-batch-fast", "batch-64 (fast, cofactored) speedup per signature (×)"),
    ):
        batch = _median(summary, "ed25519-batch64", name)
        if singles and batch:
            add(label, singles / batch, ">= 1.5×", singles / batch >= 1.5)
    r10 = _median(summary, "route-lookup-10", "agentgate")
    r10k = _median(summary, "route-lookup-10000", "agentgate")
    if r10 and r10k:
        growth = r10k / r10
        add("route lookup 10k/10 routes cost (×)", growth, "< 1000× (sub-linear)", growth < 1000)
    return out


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """Renders the summary as a Markdown table (slower-than-baseline ratios > 1)."""
    lines = [
        f"Command: `{meta['command']}` — {meta['rounds']} interleaved rounds, median per unit; "
        f"ratio = peer time / agentgate time (higher = agentgate faster). "
        f"Python {meta['python']}, {meta['machine']}, {meta['date']}.",
        "",
        "| group | case | median | ratio vs agentgate |",
        "|---|---|---:|---:|",
    ]
    for group, data in summary.items():
        for name, row in data["cases"].items():
            ns = row["median_ns"]
            shown = f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
            lines.append(f"| {group} | {name} | {shown} | {row['ratio_to_baseline']:.2f}× |")
    checks = meta.get("targets") or []
    if checks:
        lines += ["", "| target | this run | goal | met |", "|---|---:|---|:---:|"]
        for t in checks:
            lines.append(
                f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'NO'} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "loadtests/results/core.json"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--target", type=float, default=0.2, help="seconds per timed batch")
    ap.add_argument("--only", help="comma-separated groups")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, short batches")
    ap.add_argument("--no-md", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.target = 2, 0.02
    only = set(args.only.split(",")) if args.only else None
    cases = load_cases(only)
    if not cases:
        sys.exit("no benchmark cases found")
    summary = run(cases, args.rounds, args.target)
    meta = {
        "command": "make bench-core",
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {_cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }
    meta["targets"] = targets(summary)
    Path(args.out).write_text(json.dumps({"meta": meta, "groups": summary}, indent=2) + "\n")
    table = markdown(summary, meta)
    print(table)
    if not args.no_md and not args.quick:
        replace_section("core", "Core (make bench-core)", table)


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
