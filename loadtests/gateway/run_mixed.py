"""Runs the mixed Locust scenario end to end: upstreams, agentgate, Locust, then stops them all.

    python loadtests/gateway/run_mixed.py [locust args, default: -u 50 -r 10 -t 30s]

Starts three Go upstreams (19101 echo, 19102 search, 19103 flaky with 30 % failures), then
`agentgate serve --config loadtests/gateway/agentgate-mixed.yaml` on :8000, waits until a proxied
call answers, and runs `locust --headless -f loadtests/locustfile.py --host http://127.0.0.1:8000`.
Needs the upstream binary (loadtests/gateway/tools.sh builds it). Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench

UPSTREAMS = ((19101, 0.0), (19102, 0.0), (19103, 0.3))
DEFAULT_ARGS = ["-u", "50", "-r", "10", "-t", "30s"]


def main() -> int:
    """Entry point: returns Locust's exit code."""
    locust_args = sys.argv[1:] or DEFAULT_ARGS
    if not bench.UPSTREAM_BIN.exists():
        sys.exit(f"{bench.UPSTREAM_BIN} missing: run loadtests/gateway/tools.sh first")
    for port in (*(p for p, _ in UPSTREAMS), 8000, 8001):
        if not bench.port_free(port):
            sys.exit(f"port {port} already in use")
    procs: list[bench.Proc] = []
    with tempfile.TemporaryDirectory(prefix="agentgate-mixed-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            for port, fail in UPSTREAMS:
                cmd = [str(bench.UPSTREAM_BIN), "-listen", f"127.0.0.1:{port}"]
                if fail:
                    cmd += ["-fail-rate", str(fail)]
                procs.append(bench.start(f"upstream-{port}", cmd, tmp, {"GOMAXPROCS": "1"}))
                bench.wait_ready(procs[-1], port, "/health", {}, 10)
            config = bench.HERE / "agentgate-mixed.yaml"
            gateway = bench.start(
                "agentgate",
                [str(bench.VENV_BIN / "agentgate"), "serve", "--config", str(config)],
                tmp,
            )
            procs.append(gateway)
            key = {"Authorization": "Bearer mixed-key-acme-chat"}
            bench.wait_ready(gateway, 8000, "/agents/echo/1k", key, 60)
            cmd = [
                str(bench.VENV_BIN / "locust"),
                "--headless",
                "-f",
                str(bench.ROOT / "loadtests" / "locustfile.py"),
                "--host",
                "http://127.0.0.1:8000",
                *locust_args,
            ]
            return subprocess.run(cmd, check=False, timeout=3600).returncode
        except RuntimeError as e:
            print(f"run_mixed: {e}", file=sys.stderr)
            return 2
        finally:
            for proc in reversed(procs):
                proc.stop()


if __name__ == "__main__":
    sys.exit(main())
