"""Control-plane benchmarks in one run: API resolve/create with 10,000 templates on SQLite and
PostgreSQL, create → first routed request through a real gateway, store queries, and the Rego
policy evaluation latency in the core.

    python loadtests/bench_control.py [--quick]

Each part is its own script (`loadtests/control/*.py`, `cargo test … latency_report`); this runs
them one after the other, keeps their output lines, writes `loadtests/results/control.json` and
the control section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.benchmarks_md import replace_section

ROOT = Path(__file__).resolve().parent.parent


def parts(quick: bool) -> list[tuple[str, list[str]]]:
    """The commands, smaller with --quick."""
    py = sys.executable
    n, req, creates = ("1000", "100", "10") if quick else ("10000", "500", "50")
    return [
        ("api", [py, "loadtests/control/bench_api.py", "--n", n, "--requests", req, "--pg"]),
        ("deploy", [py, "loadtests/control/bench_deploy.py", "--n", creates]),
        ("store", [py, "loadtests/control/bench_store.py", "--n", n]),
        (
            "policy",
            ["cargo", "test", "--release", "-q", "-p", "agentgate-core", "--test", "policy",
             "latency_report", "--", "--nocapture"],
        ),
    ]  # fmt: skip


def run(quick: bool) -> dict[str, list[str]]:
    """Runs every part and returns its result lines."""
    out: dict[str, list[str]] = {}
    for name, cmd in parts(quick):
        print(f"== {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            sys.exit(f"{name} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        keep = [
            line.rstrip()
            for line in p.stdout.splitlines()
            if re.search(r"median|p50|p99", line) and "test result" not in line
        ]
        out[name] = keep
        print("\n".join(keep), flush=True)
    return out


def write_md(results: dict[str, list[str]], command: str) -> None:
    """Replaces the control section of BENCHMARKS.md."""
    lines = [f"Command: `{command}` ({time.strftime('%Y-%m-%d')}); raw lines per part:", ""]
    for name, rows in results.items():
        lines += [f"**{name}**", "```", *rows, "```"]
    replace_section("control", "Control plane (make bench-control)", "\n".join(lines))


def main() -> None:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no files written")
    args = ap.parse_args()
    results = run(args.quick)
    if not args.quick:
        (ROOT / "loadtests/results/control.json").write_text(
            json.dumps({"date": time.strftime("%Y-%m-%d"), "parts": results}, indent=2) + "\n"
        )
        write_md(results, "make bench-control")


if __name__ == "__main__":
    main()
