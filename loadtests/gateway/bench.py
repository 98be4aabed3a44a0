"""Gateway benchmark: agentgate against nginx, Python proxies and no proxy at all, in one run.

    python loadtests/gateway/bench.py [--quick] [--only direct,nginx,...] [--rounds 3]

Servers: `direct` (load straight to the upstream), `nginx` (reverse proxy, keepalive upstream),
`starlette-httpx` (Starlette + httpx under granian), `aiohttp` (aiohttp server + ClientSession),
`agentgate` (`agentgate serve` with auth, rate limit, breaker and metrics on). Each proxy gets one
worker process. Upstream: a tiny Go server (loadtests/gateway/upstream) with fixed bodies.

CPU layout on a 2-core machine (the same for every server): core 0 runs the upstream, the load
generators (wrk, oha) and this harness; core 1 runs the proxy under test alone. With more cores,
the upstream and the load generator get one core each and the proxy the next one.

Per server and round (rounds interleaved, server order rotated each round; reported: medians):
- throughput: wrk, closed loop, 1 thread, 64 connections, 1 KiB and 16 KiB bodies (2xx only);
- latency at a fixed rate of 1k and 5k req/s: oha, open loop with latency correction (no
  coordinated omission): p50, p99, p99.9;
- RSS of the server's process tree after the load;
- SSE: time to the first event of a stream, median over N fresh connections.
Writes all raw runs and the summary as JSON and prints a Markdown table; a full (non-quick) run
also rewrites the `<!-- gateway:begin -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.benchmarks_md import replace_section  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
OHA = HERE / ".tools" / "bin" / "oha"
UPSTREAM_BIN = HERE / "build" / "upstream"

HOST = "127.0.0.1"
UPSTREAM_PORT = 19001
API_KEY = "agentgate-bench-key"  # sha256 of it is in agentgate-bench.yaml
SERVER_NAMES = ("direct", "nginx", "starlette-httpx", "aiohttp", "agentgate")


@dataclass(frozen=True)
class Settings:
    """Durations and sizes of one run."""

    rounds: int = 3
    wrk_seconds: int = 10
    oha_seconds: int = 10
    warmup_seconds: int = 2
    rates: tuple[int, ...] = (1000, 5000)
    wrk_connections: int = 64
    sse_streams: int = 30
    sse_events: int = 5
    sse_delay_ms: int = 10

    @staticmethod
    def quick() -> Settings:
        """Smoke-test settings: one short round."""
        return Settings(rounds=1, wrk_seconds=2, oha_seconds=2, warmup_seconds=1, sse_streams=5)


@dataclass(frozen=True)
class CpuLayout:
    """Which cores run what (taskset lists); empty strings mean "not pinned"."""

    load: str
    upstream: str
    server: str

    @staticmethod
    def detect() -> CpuLayout:
        """Upstream + load on core 0, the server alone on core 1 (2 cores); spread if more."""
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return CpuLayout("", "", "")
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return CpuLayout("", "", "")
        if len(cpus) == 2:
            return CpuLayout(str(cpus[0]), str(cpus[0]), str(cpus[1]))
        return CpuLayout(str(cpus[0]), str(cpus[1]), str(cpus[2]))

    def describe(self) -> str:
        """One line for the report."""
        if not self.server:
            return "not pinned (fewer than 2 usable cores or no taskset)"
        return (
            f"load generator + harness on CPU {self.load}, upstream on CPU {self.upstream}, "
            f"server under test alone on CPU {self.server}"
        )


def pinned(cpus: str, cmd: list[str]) -> list[str]:
    """Prefixes `cmd` with taskset when a CPU list is given."""
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


# --- processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    """A started server: its process group is stopped as a whole."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a grace period."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        """Last lines of its output, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(name: str, cmd: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    """Starts `cmd` in its own session with output to a log file in `workdir`."""
    log = workdir / f"{name}.log"
    out = log.open("ab")
    popen = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=str(workdir),
    )
    out.close()
    return Proc(name, popen, log)


def port_free(port: int) -> bool:
    """True if nothing listens on HOST:port."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) != 0


def http_get(
    port: int, path: str, headers: dict[str, str], timeout: float = 2.0
) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 GET (Connection: close); returns status and raw body bytes."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(
    proc: Proc | None, port: int, path: str, headers: dict[str, str], limit: float
) -> None:
    """Waits until GET path answers 200, or raises with the server's log tail."""
    deadline = time.monotonic() + limit
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        try:
            status, _ = http_get(port, path, headers, timeout=1.0)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise RuntimeError(f"not ready after {limit:.0f}s on :{port}{path} ({last})\n{tail}")


def tree_memory(pid: int) -> dict[str, Any]:
    """Memory of a process and all its descendants: summed RSS, PSS, and per process.

    RSS double-counts pages that forked workers share with their parent; PSS splits them, so
    it is the fairer total for multi-process servers (granian, nginx). PSS needs Linux.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {"rss": 0, "pss": None, "processes": []}
    rss, pss, rows = 0, 0, []
    pss_ok = True
    for p in procs:
        try:
            info = p.memory_info()
            row: dict[str, Any] = {
                "pid": p.pid,
                "rss": info.rss,
                "cmd": " ".join(p.cmdline())[:160],
            }
            try:
                row["pss"] = p.memory_full_info().pss
                pss += row["pss"]
            except (psutil.AccessDenied, AttributeError):
                pss_ok = False
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        rows.append(row)
    return {"rss": rss, "pss": pss if pss_ok else None, "processes": rows}


def tree_rss(pid: int) -> int:
    """Summed resident set size in bytes of a process tree."""
    return int(tree_memory(pid)["rss"])


# --- servers under test --------------------------------------------------------------------


@dataclass
class Server:
    """How to start one server under test and how to address it."""

    name: str
    port: int
    command: Callable[[Path, CpuLayout], list[str] | None]  # None: nothing to start (direct)
    headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0

    def url(self, path: str) -> str:
        """Full URL of `path` on this server."""
        return f"http://{HOST}:{self.port}{path}"


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_rlimit_nofile 65535;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream bench {{
        server {host}:{upstream};
        keepalive 256;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def nginx_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """Writes an nginx config (1 worker, keepalive upstream) into tmp; returns the command."""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, host=HOST, upstream=UPSTREAM_PORT, port=18081))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return pinned(
        cpus.server, [nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
    )


def aiohttp_cmd(_tmp: Path, cpus: CpuLayout) -> list[str]:
    """The aiohttp proxy, one process."""
    script = HERE / "peers" / "aiohttp_proxy.py"
    return pinned(
        cpus.server,
        [str(VENV_BIN / "python"), str(script), "--listen", f"{HOST}:18082",
         "--upstream", f"http://{HOST}:{UPSTREAM_PORT}"],
    )  # fmt: skip


def starlette_cmd(_tmp: Path, cpus: CpuLayout) -> list[str]:
    """The Starlette + httpx proxy under granian, one worker."""
    return pinned(
        cpus.server,
        [str(VENV_BIN / "granian"), "--interface", "asgi", "--host", HOST, "--port", "18083",
         "--workers", "1", "--loop", "uvloop", "--http", "1", "--no-ws",
         "--log-level", "warning", "--working-dir", str(HERE / "peers"), "starlette_httpx:app"],
    )  # fmt: skip


def agentgate_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """`agentgate serve` with the bench config (upstream address substituted), one worker."""
    text = (HERE / "agentgate-bench.yaml").read_text()
    text = text.replace("http://127.0.0.1:19001", f"http://{HOST}:{UPSTREAM_PORT}")
    conf = tmp / "agentgate-bench.yaml"
    conf.write_text(text)
    return pinned(
        cpus.server,
        [str(VENV_BIN / "agentgate"), "serve", "--config", str(conf), "--workers", "1",
         "--listen", f"{HOST}:18084", "--admin-listen", f"{HOST}:18085"],
    )  # fmt: skip


def servers() -> dict[str, Server]:
    """All servers under test, by name."""
    return {
        "direct": Server("direct", UPSTREAM_PORT, lambda _t, _c: None),
        "nginx": Server("nginx", 18081, nginx_cmd),
        "starlette-httpx": Server(
            "starlette-httpx",
            18083,
            starlette_cmd,
            env={"BENCH_UPSTREAM": f"http://{HOST}:{UPSTREAM_PORT}"},
        ),
        "aiohttp": Server("aiohttp", 18082, aiohttp_cmd),
        "agentgate": Server(
            "agentgate", 18084, agentgate_cmd, headers={"X-API-Key": API_KEY}, ready_timeout=60
        ),
    }


# --- load generators -------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def run_wrk(
    url: str, headers: dict[str, str], seconds: int, conns: int, cpus: CpuLayout
) -> dict[str, Any]:
    """Closed-loop max throughput; counts only 2xx/3xx responses as throughput."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(
        pinned(cpus.load, [*cmd, url]),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, flags=re.M)}
    requests = int(total.group(1)) if total else 0
    bad = int(non2xx.group(1)) if non2xx else 0
    raw_rps = float(rps.group(1)) if rps else 0.0
    ok_share = (requests - bad) / requests if requests else 0.0
    return {
        "rps": raw_rps * ok_share,
        "raw_rps": raw_rps,
        "requests": requests,
        "non_2xx_3xx": bad,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "closed_loop_p50_ms": lat.get("50"),
        "closed_loop_p99_ms": lat.get("99"),
    }


def run_oha(
    url: str, headers: dict[str, str], seconds: int, rate: int, cpus: CpuLayout
) -> dict[str, Any]:
    """Open-loop fixed rate with latency correction: latencies count from the scheduled send."""
    conns = max(64, rate // 20)  # Little: room for 50 ms of latency at this rate
    cmd = [str(OHA), "-z", f"{seconds}s", "-q", str(rate), "-c", str(conns),
           "--latency-correction", "--no-tui", "--output-format", "json"]  # fmt: skip
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    proc = subprocess.run(
        pinned(cpus.load, [*cmd, url]),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": f"oha failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"}
    pct = data.get("latencyPercentiles") or {}
    summary = data.get("summary") or {}
    codes = {str(k): int(v) for k, v in (data.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith(("2", "3")))
    errors = data.get("errorDistribution") or {}
    # Requests still in flight at the deadline are cut by oha, not failures of the server.
    failed = sum(v for k, v in errors.items() if "deadline" not in k)

    def ms(key: str) -> float | None:
        v = pct.get(key)
        return None if v is None else float(v) * 1000.0

    return {
        "rate": rate,
        "connections": conns,
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "achieved_rps": ok / seconds if seconds else 0.0,
        "ok": ok,
        "status_codes": codes,
        "errors": errors,
        "failed": failed + sum(v for k, v in codes.items() if not k.startswith(("2", "3"))),
        "success_rate": summary.get("successRate"),
    }


def sse_once(port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """One fresh connection: time to the first `data:` line and to the end of the stream."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode()
    t0 = time.perf_counter()
    first: float | None = None
    buf = b""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            head_end = buf.find(b"\r\n\r\n")
            if first is None and head_end >= 0 and b"data:" in buf[head_end:]:
                first = time.perf_counter() - t0
            if buf.endswith(b"\r\n0\r\n\r\n"):  # last chunk of a chunked body
                break
    total = time.perf_counter() - t0
    status = buf.split(b" ", 2)[1].decode() if buf.startswith(b"HTTP/") else "?"
    return {
        "status": status,
        "ttfe_ms": None if first is None else first * 1000.0,
        "total_ms": total * 1000.0,
        "events": buf.count(b"data:"),
    }


def run_sse(server: Server, settings: Settings) -> dict[str, Any]:
    """Median time to first event over fresh streams; checks every event arrived."""
    path = f"/sse?n={settings.sse_events}&delay={settings.sse_delay_ms}"
    streams = []
    for _ in range(settings.sse_streams):
        try:
            streams.append(sse_once(server.port, path, server.headers))
        except OSError as e:
            streams.append({"error": str(e)})
    ttfe = [s["ttfe_ms"] for s in streams if s.get("ttfe_ms") is not None]
    complete = sum(1 for s in streams if s.get("events") == settings.sse_events)
    return {
        "streams": len(streams),
        "complete": complete,
        "ttfe_ms_median": statistics.median(ttfe) if ttfe else None,
        "total_ms_median": statistics.median(
            [s["total_ms"] for s in streams if "total_ms" in s] or [float("nan")]
        ),
        # Streaming proven: the first event came well before the upstream's last one.
        "raw": streams,
    }


# --- one measurement of one server ---------------------------------------------------------


def check_bodies(server: Server) -> None:
    """Refuses to measure a proxy that does not return the upstream's exact bodies."""
    for path, size in (("/1k", 1024), ("/16k", 16 * 1024)):
        status, body = http_get(server.port, path, server.headers)
        if status != 200 or len(body) != size:
            raise RuntimeError(f"GET {path}: status {status}, {len(body)} bytes, want 200/{size}")


def measure(server: Server, settings: Settings, cpus: CpuLayout, tmp: Path) -> dict[str, Any]:
    """Starts the server, runs every measurement against it, stops it."""
    result: dict[str, Any] = {"server": server.name}
    cmd = server.command(tmp, cpus)
    proc: Proc | None = None
    if cmd is not None:
        if not port_free(server.port):
            return {**result, "error": f"port {server.port} already in use"}
        try:
            proc = start(server.name, cmd, tmp, server.env)
        except OSError as e:
            return {**result, "error": f"cannot start {cmd[0]}: {e}"}
    rss_pid = proc.popen.pid if proc else UPSTREAM_PID[0]
    try:
        wait_ready(proc, server.port, "/1k", server.headers, server.ready_timeout)
        check_bodies(server)
        run_wrk(server.url("/1k"), server.headers, settings.warmup_seconds, 16, cpus)
        rss_samples = []
        for size in ("1k", "16k"):
            result[f"wrk_{size}"] = run_wrk(
                server.url(f"/{size}"),
                server.headers,
                settings.wrk_seconds,
                settings.wrk_connections,
                cpus,
            )
            rss_samples.append(tree_rss(rss_pid))
        for rate in settings.rates:
            result[f"oha_1k_{rate}"] = run_oha(
                server.url("/1k"), server.headers, settings.oha_seconds, rate, cpus
            )
            rss_samples.append(tree_rss(rss_pid))
        result["sse"] = run_sse(server, settings)
        memory = tree_memory(rss_pid)
        result["rss_mib"] = memory["rss"] / 2**20
        result["pss_mib"] = None if memory["pss"] is None else memory["pss"] / 2**20
        result["processes"] = memory["processes"]
        result["rss_peak_sampled_mib"] = max([*rss_samples, 0]) / 2**20
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        result["error"] = str(e)
    finally:
        if proc is not None:
            proc.stop()
    return result


UPSTREAM_PID = [0]


@contextlib.contextmanager
def upstream(cpus: CpuLayout, tmp: Path) -> Iterator[Proc]:
    """The Go upstream for the whole run, GOMAXPROCS=1 on its own CPU."""
    if not UPSTREAM_BIN.exists():
        sys.exit(f"{UPSTREAM_BIN} missing: run loadtests/gateway/tools.sh first")
    if not port_free(UPSTREAM_PORT):
        sys.exit(f"port {UPSTREAM_PORT} already in use")
    cmd = pinned(cpus.upstream, [str(UPSTREAM_BIN), "-listen", f"{HOST}:{UPSTREAM_PORT}"])
    proc = start("upstream", cmd, tmp, {"GOMAXPROCS": "1"})
    try:
        wait_ready(proc, UPSTREAM_PORT, "/health", {}, 10)
        UPSTREAM_PID[0] = proc.popen.pid
        yield proc
    finally:
        proc.stop()


# --- summary -------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """Medians per server over rounds, ratios to nginx and aiohttp, added p99 over direct."""
    out: dict[str, Any] = {}
    for name in SERVER_NAMES:
        mine = [r for r in runs if r["server"] == name and "error" not in r]
        failed = [r["error"] for r in runs if r["server"] == name and "error" in r]
        if not mine:
            if failed:
                out[name] = {"error": failed[-1]}
            continue
        row: dict[str, Any] = {"rounds_ok": len(mine), "rounds_failed": len(failed)}
        for size in ("1k", "16k"):
            row[f"rps_{size}"] = _median([r[f"wrk_{size}"]["rps"] for r in mine])
            row[f"non_2xx_{size}"] = sum(r[f"wrk_{size}"]["non_2xx_3xx"] for r in mine)
        for rate in settings.rates:
            key = f"oha_1k_{rate}"
            row[f"lat_{rate}"] = {
                k: _median([r[key].get(k) for r in mine])
                for k in ("p50_ms", "p99_ms", "p999_ms", "achieved_rps")
            }
            row[f"lat_{rate}"]["failed"] = sum(r[key].get("failed", 0) for r in mine)
        row["rss_mib"] = _median([r["rss_mib"] for r in mine])
        row["pss_mib"] = _median([r.get("pss_mib") for r in mine])
        row["processes"] = len(mine[-1].get("processes", []))
        row["sse_ttfe_ms"] = _median([r["sse"]["ttfe_ms_median"] for r in mine])
        row["sse_total_ms"] = _median([r["sse"]["total_ms_median"] for r in mine])
        row["sse_incomplete"] = sum(r["sse"]["streams"] - r["sse"]["complete"] for r in mine)
        out[name] = row

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    base_rate = settings.rates[0]
    direct_p99 = (out.get("direct") or {}).get(f"lat_{base_rate}", {}).get("p99_ms")
    for row in out.values():
        if "error" in row:
            continue
        for size in ("1k", "16k"):
            for peer in ("nginx", "aiohttp"):
                peer_rps = (out.get(peer) or {}).get(f"rps_{size}")
                row[f"x_{peer}_{size}"] = ratio(row[f"rps_{size}"], peer_rps)
        p99 = row[f"lat_{base_rate}"]["p99_ms"]
        row[f"added_p99_{base_rate}_ms"] = (
            p99 - direct_p99 if p99 is not None and direct_p99 is not None else None
        )
    return out


def targets(summary: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The issue's targets for agentgate, checked against this run."""
    ag = summary.get("agentgate") or {}
    if "error" in ag or not ag:
        return []
    rate = settings.rates[0]
    checks = [
        ("throughput 1 KiB vs nginx", ag.get("x_nginx_1k"), 0.5, "≥ 0.5×"),
        ("throughput 16 KiB vs nginx", ag.get("x_nginx_16k"), 0.5, "≥ 0.5×"),
        ("throughput 1 KiB vs aiohttp proxy", ag.get("x_aiohttp_1k"), 3.0, "≥ 3×"),
        ("throughput 16 KiB vs aiohttp proxy", ag.get("x_aiohttp_16k"), 3.0, "≥ 3×"),
    ]
    out = [
        {"target": t, "value": None if v is None else round(v, 2), "goal": g,
         "met": None if v is None else v >= goal}
        for t, v, goal, g in checks
    ]  # fmt: skip
    added = ag.get(f"added_p99_{rate}_ms")
    out.append(
        {
            "target": f"added p99 over direct at {rate} req/s",
            "value": None if added is None else round(added, 3),
            "goal": "≤ 1 ms",
            "met": None if added is None else added <= 1.0,
        }
    )
    return out


def _f(v: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(summary: dict[str, Any], meta: dict[str, Any], settings: Settings) -> str:
    """The summary as Markdown tables (throughput, latency, memory, SSE, targets)."""
    r1 = settings.rates[0]
    lines = [
        f"Command: `{meta['command']}` — {meta['rounds']} interleaved round(s), medians; "
        f"{meta['machine']}, {meta['date']}. CPU layout: {meta['cpu_layout']}. "
        f"Throughput: wrk -t1 -c{settings.wrk_connections} -d{settings.wrk_seconds}s (2xx only). "
        f"Latency: oha at a fixed rate, {settings.oha_seconds}s, latency correction (open loop), "
        f"1 KiB. Memory: the server's whole process tree after the load. "
        f"SSE: time to first event, median of {settings.sse_streams} fresh streams.",
        "",
        "| server | req/s 1 KiB | req/s 16 KiB | × nginx (1K/16K) | × aiohttp (1K/16K) "
        + "".join(f"| p50 / p99 / p99.9 @ {r} req/s (ms) " for r in settings.rates)
        + f"| added p99 @ {r1} (ms) | RSS / PSS (MiB, procs) | SSE first event (ms) |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(settings.rates) + "---:|---:|---:|",
    ]
    for name in SERVER_NAMES:
        row = summary.get(name)
        if row is None:
            continue
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error'].splitlines()[0][:80]} |")
            continue
        cells = [
            name,
            _f(row["rps_1k"]),
            _f(row["rps_16k"]),
            f"{_f(row['x_nginx_1k'], '{:.2f}')} / {_f(row['x_nginx_16k'], '{:.2f}')}",
            f"{_f(row['x_aiohttp_1k'], '{:.2f}')} / {_f(row['x_aiohttp_16k'], '{:.2f}')}",
        ]
        for rate in settings.rates:
            lat = row[f"lat_{rate}"]
            cell = " / ".join(_f(lat[k], "{:.2f}") for k in ("p50_ms", "p99_ms", "p999_ms"))
            achieved = lat.get("achieved_rps")
            if achieved is not None and achieved < 0.95 * rate:
                cell += f" (only {achieved:.0f} req/s)"
            cells.append(cell)
        cells += [
            _f(row[f"added_p99_{r1}_ms"], "{:+.2f}"),
            f"{_f(row['rss_mib'], '{:.1f}')} / {_f(row['pss_mib'], '{:.1f}')} ({row['processes']})",
            _f(row["sse_ttfe_ms"], "{:.2f}"),
        ]
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


def versions() -> dict[str, str]:
    """Versions of the tools and peers, for the record."""

    def cmd(args: list[str]) -> str:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "missing"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr) else "?"

    out = {
        "wrk": cmd(["wrk", "-v"]),
        "nginx": cmd([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "oha": cmd([str(OHA), "--version"]),
        "go": cmd(["go", "version"]),
        "granian": cmd([str(VENV_BIN / "granian"), "--version"]),
        "python": platform.python_version(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("aiohttp", "httpx", "starlette", "uvloop", "agentgate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def main() -> None:
    """Entry point."""
    global UPSTREAM_PORT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON results (default: loadtests/results/gateway.json; "
                    "--quick: loadtests/results/gateway.quick.tmp)")  # fmt: skip
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, --quick 1)")
    ap.add_argument("--only", help=f"comma-separated servers among {','.join(SERVER_NAMES)}")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 s per load")
    ap.add_argument("--no-md", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument(
        "--upstream-port", type=int, default=UPSTREAM_PORT, help="port of the Go upstream"
    )
    args = ap.parse_args()
    UPSTREAM_PORT = args.upstream_port

    settings = Settings.quick() if args.quick else Settings()
    if args.rounds:
        settings = dataclasses.replace(settings, rounds=args.rounds)
    chosen = list(SERVER_NAMES)
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(SERVER_NAMES))
        if unknown:
            sys.exit(f"--only: unknown server(s) {unknown}; known: {', '.join(SERVER_NAMES)}")
    for tool, path in (("wrk", shutil.which("wrk")), ("oha", str(OHA) if OHA.exists() else None)):
        if path is None:
            sys.exit(f"{tool} missing: run loadtests/gateway/tools.sh (make bench-gateway does)")
    out_path = Path(
        args.out
        or ROOT / "loadtests/results" / ("gateway.quick.tmp" if args.quick else "gateway.json")
    )

    # Make's or a CI runner's SIGTERM must still stop the servers (each in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cpus = CpuLayout.detect()
    if cpus.load:
        os.sched_setaffinity(0, {int(c) for c in cpus.load.split(",")})
    registry = servers()
    runs: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="agentgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with upstream(cpus, tmp):
            for rnd in range(settings.rounds):
                order = chosen[rnd % len(chosen) :] + chosen[: rnd % len(chosen)]
                for name in order:
                    print(f"[round {rnd + 1}/{settings.rounds}] {name} …", file=sys.stderr)
                    res = measure(registry[name], settings, cpus, tmp)
                    res["round"] = rnd
                    if "error" in res:
                        print(f"  {name} failed: {res['error']}", file=sys.stderr)
                    else:
                        print(
                            f"  {name}: {res['wrk_1k']['rps']:.0f} req/s 1k, "
                            f"{res['wrk_16k']['rps']:.0f} req/s 16k, "
                            f"p99@{settings.rates[0]} "
                            f"{_f(res[f'oha_1k_{settings.rates[0]}'].get('p99_ms'), '{:.2f}')} ms",
                            file=sys.stderr,
                        )
                    runs.append(res)

    summary = summarize(runs, settings)
    meta: dict[str, Any] = {
        "command": "make bench-gateway" + (" (quick)" if args.quick else ""),
        "rounds": settings.rounds,
        "settings": dataclasses.asdict(settings),
        "servers": chosen,
        "cpu_layout": cpus.describe(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "duration_s": round(time.time() - started, 1),
        "versions": versions(),
    }
    meta["targets"] = targets(summary, settings)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=2, default=str) + "\n"
    )
    table = markdown(summary, meta, settings)
    print(table)
    print(f"\nraw runs and summary: {out_path}", file=sys.stderr)
    if not args.no_md and not args.quick:
        write_benchmarks_md(table)


if __name__ == "__main__":
    main()
