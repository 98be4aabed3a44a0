"""Gateway benchmark: agentgate, its previous release, nginx, Caddy, Python proxies and LiteLLM.

    python loadtests/gateway/bench.py [--quick] [--only direct,nginx,...] [--rounds 3]

Servers: `direct` (load straight to the upstream), `nginx` and `caddy` (reverse proxies,
keepalive upstream), `aiohttp` (aiohttp server + ClientSession), `litellm` (LiteLLM's proxy:
its chat-completions path for the POST, its pass-through endpoints for the GETs),
`agentgate-prev` (the previous release, a wheel built from the commit before the data-plane
redesign: granian workers running a Python handler, see prev.sh) and `agentgate` (this
checkout: the Rust core serves the data plane). Both agentgates run with auth, a rate limit,
the breaker, retries, health checks and metrics on. Every server gets one worker (process or
thread). Upstream: a tiny Go server (loadtests/gateway/upstream) with fixed bodies.

CPU layout on a 2-core machine (the same for every server): core 0 runs the upstream, the load
generators (wrk, oha) and this harness; core 1 runs the server under test alone (its whole
process tree). With more cores, the upstream and the load generator get one core each and the
server the next one.

Per server and round (rounds interleaved, server order rotated each round; reported: medians):
- throughput: wrk, closed loop, 1 thread, 64 connections: GET 1 KiB, GET 16 KiB, and POST
  /v1/chat/completions with a 118-byte JSON body and a bearer key, answered with 1 KiB of JSON
  (2xx only);
- server CPU per request: CPU time (user + system, /proc/<pid>/stat) of the server's process
  tree over each wrk run, divided by the requests it answered;
- latency at a fixed rate: oha, open loop with latency correction (no coordinated omission):
  GET 1 KiB at 1k and 5k req/s, POST at 1k req/s: p50, p99, p99.9;
- memory of the server's process tree: PSS once it answers (before any load), and RSS and PSS
  after the load, from smaps_rollup;
- SSE: time to the first event of a stream, median over N fresh connections.
Then, once per Python-served server: entries into the Python interpreter per request, counted
by uprobes on libpython (`perf stat`) over a wrk run, minus an idle window of the same length.
Writes all raw runs and the summary as JSON and prints Markdown tables; a full (non-quick) run
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.gateway.pyentries import PROBES, libpython, perf_count, probes  # noqa: E402
from loadtests.gateway.report import fmt, markdown, summarize, targets, write_benchmarks_md  # noqa: E402
from loadtests.gateway.scenarios import (  # noqa: E402
    API_KEY,
    BY_KEY,
    HOST,
    LITELLM_KEY,
    PREV_COMMIT,
    SCENARIOS,
    SERVER_NAMES,
    TRACED,
    Scenario,
    Settings,
)

VENV_BIN = ROOT / ".venv" / "bin"
TOOLS = HERE / ".tools"
OHA = TOOLS / "bin" / "oha"
CADDY = TOOLS / "caddy" / "bin" / "caddy"
LITELLM = TOOLS / "litellm" / "bin" / "litellm"
UPSTREAM_BIN = HERE / "build" / "upstream"
UPSTREAM_PORT = 19001


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
        # Workers of a server whose leader left first (granian, uvicorn) must not outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)

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


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 request (Connection: close); returns status and raw body bytes."""
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
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
            status, _ = http_request(port, "GET", path, headers, timeout=1.0)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise RuntimeError(f"not ready after {limit:.0f}s on :{port}{path} ({last})\n{tail}")


# --- what the server's process tree costs ----------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields count from the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def smaps_rollup(pid: int) -> dict[str, int]:
    """Rss and Pss of one process in bytes, as smem reads them (/proc/<pid>/smaps_rollup)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0]) * 1024
    return out


def tree_memory(pid: int) -> dict[str, Any]:
    """Memory of a process and all its descendants: summed RSS, PSS, and per process.

    RSS counts pages that forked workers share with their parent once per process; PSS splits
    every shared page between the processes that map it, so the PSS of a tree is its fair total.
    """
    rss, pss, rows = 0, 0, []
    for p in tree_pids(pid):
        try:
            mem = smaps_rollup(p)
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        rss += mem.get("rss", 0)
        pss += mem.get("pss", 0)
        rows.append({"pid": p, **mem, "cmd": cmd.strip()[:160]})
    return {"rss": rss, "pss": pss, "processes": rows}


# --- servers under test --------------------------------------------------------------------


@dataclass
class Server:
    """How to start one server under test and how to address it."""

    name: str
    port: int
    command: Callable[[Path, CpuLayout], list[str] | None]  # None: nothing to start (direct)
    key: str = API_KEY  # sent as X-API-Key on GETs, as a bearer token on POSTs
    env: Callable[[Path], dict[str, str]] = lambda _tmp: {}
    ready_timeout: float = 30.0
    exact_post: bool = True  # forwards the upstream's POST answer byte for byte
    python: bool = False  # Python runs in it: count interpreter entries per request

    def url(self, path: str) -> str:
        """Full URL of `path` on this server."""
        return f"http://{HOST}:{self.port}{path}"

    def headers(self, scenario: Scenario) -> dict[str, str]:
        """The same request headers for every server: an API key on GETs, a bearer on POSTs."""
        if scenario.body is None:
            return {"X-API-Key": self.key}
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


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


# Caddy as a plain reverse proxy: no admin endpoint, no automatic HTTPS, HTTP/1.1 only, and as
# many idle upstream connections kept as nginx keeps (its default is 32 per host).
CADDYFILE = """\
{{
    admin off
    auto_https off
    persist_config off
    servers {{
        protocols h1
    }}
}}
http://{host}:{port} {{
    reverse_proxy {host}:{upstream} {{
        transport http {{
            keepalive 60s
            keepalive_idle_conns 256
            keepalive_idle_conns_per_host 256
        }}
    }}
}}
"""


def caddy_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """Caddy's reverse_proxy, GOMAXPROCS=1 (one core, like one nginx worker)."""
    conf = tmp / "Caddyfile"
    conf.write_text(CADDYFILE.format(host=HOST, upstream=UPSTREAM_PORT, port=18086))
    return pinned(cpus.server, [str(CADDY), "run", "--config", str(conf), "--adapter", "caddyfile"])


def aiohttp_cmd(_tmp: Path, cpus: CpuLayout) -> list[str]:
    """The aiohttp proxy, one process."""
    script = HERE / "peers" / "aiohttp_proxy.py"
    return pinned(
        cpus.server,
        [str(VENV_BIN / "python"), str(script), "--listen", f"{HOST}:18082",
         "--upstream", f"http://{HOST}:{UPSTREAM_PORT}"],
    )  # fmt: skip


LITELLM_CONF = """\
# LiteLLM's proxy in front of the same upstream: the POST goes through its chat-completions
# path (an OpenAI-compatible model whose api_base is the upstream), the GETs through
# pass-through endpoints. No database: the master key is the only key.
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://{host}:{upstream}/v1
      api_key: upstream-key
general_settings:
  master_key: {key}
  pass_through_endpoints:
    - {{path: /1k, target: "http://{host}:{upstream}/1k"}}
    - {{path: /16k, target: "http://{host}:{upstream}/16k"}}
    - {{path: /sse, target: "http://{host}:{upstream}/sse"}}
litellm_settings:
  telemetry: false
  set_verbose: false
"""


def litellm_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """LiteLLM's proxy (uvicorn), one worker."""
    conf = tmp / "litellm.yaml"
    conf.write_text(LITELLM_CONF.format(host=HOST, upstream=UPSTREAM_PORT, key=LITELLM_KEY))
    return pinned(
        cpus.server,
        [str(LITELLM), "--config", str(conf), "--host", HOST, "--port", "18087",
         "--num_workers", "1"],
    )  # fmt: skip


def litellm_env(tmp: Path) -> dict[str, str]:
    """Offline: the bundled model cost map, no telemetry, quiet logs."""
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
        "HOME": str(tmp),
    }


def _agentgate_conf(tmp: Path, name: str, extra: str = "") -> Path:
    text = (HERE / "agentgate-bench.yaml").read_text()
    text = text.replace("http://127.0.0.1:19001", f"http://{HOST}:{UPSTREAM_PORT}") + extra
    conf = tmp / f"{name}.yaml"
    conf.write_text(text)
    return conf


def agentgate_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """`agentgate serve` with the bench config, one data-plane worker thread."""
    conf = _agentgate_conf(tmp, "agentgate")
    return pinned(
        cpus.server,
        [str(VENV_BIN / "agentgate"), "serve", "--config", str(conf), "--workers", "1",
         "--listen", f"{HOST}:18084", "--admin-listen", f"{HOST}:18085"],
    )  # fmt: skip


def agentgate_traced_cmd(name: str, port: int) -> Callable[[Path, CpuLayout], list[str]]:
    """`agentgate serve` as above with tracing at the server's sampling ratio (`TRACED`)."""

    def cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
        extra = (
            f"tracing: {{otlp_endpoint: 'http://{HOST}:{UPSTREAM_PORT}', "
            f"sampling_ratio: {TRACED[name]}}}\n"
        )
        conf = _agentgate_conf(tmp, name, extra)
        return pinned(
            cpus.server,
            [str(VENV_BIN / "agentgate"), "serve", "--config", str(conf), "--workers", "1",
             "--listen", f"{HOST}:{port}", "--admin-listen", f"{HOST}:{port + 1}"],
        )  # fmt: skip

    return cmd


def prev_venv() -> Path:
    """The venv holding the previous release (built and cached by prev.sh)."""
    out = subprocess.run(
        ["bash", str(HERE / "prev.sh")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PREV_COMMIT": PREV_COMMIT},
    )
    if out.returncode != 0:
        raise RuntimeError(f"prev.sh failed: {out.stderr.strip()[-800:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def agentgate_prev_cmd(tmp: Path, cpus: CpuLayout) -> list[str]:
    """The previous release's `agentgate serve`: one granian data-plane worker process."""
    conf = _agentgate_conf(tmp, "agentgate-prev")
    return pinned(
        cpus.server,
        [str(prev_venv() / "bin" / "agentgate"), "serve", "--config", str(conf),
         "--workers", "1", "--listen", f"{HOST}:18088", "--admin-listen", f"{HOST}:18089"],
    )  # fmt: skip


def _agentgate(
    name: str, port: int, command: Callable[[Path, CpuLayout], list[str] | None]
) -> Server:
    """An agentgate (either version), with a data dir of its own in the run's temp dir."""
    return Server(
        name,
        port,
        command,
        env=lambda tmp: {"AGENTGATE_DATA_DIR": str(tmp / f"{name}-data")},
        ready_timeout=60,
        python=True,
    )


def servers() -> dict[str, Server]:
    """All servers under test, by name."""
    return {
        "direct": Server("direct", UPSTREAM_PORT, lambda _t, _c: None),
        "nginx": Server("nginx", 18081, nginx_cmd),
        "caddy": Server(
            "caddy",
            18086,
            caddy_cmd,
            env=lambda tmp: {
                "GOMAXPROCS": "1",
                "XDG_CONFIG_HOME": str(tmp / "caddy-config"),
                "XDG_DATA_HOME": str(tmp / "caddy-data"),
            },
        ),
        "aiohttp": Server("aiohttp", 18082, aiohttp_cmd, python=True),
        "litellm": Server(
            "litellm",
            18087,
            litellm_cmd,
            key=LITELLM_KEY,
            env=litellm_env,
            # Its start-up (imports) took over 120 s on a core shared with other work.
            ready_timeout=600,
            exact_post=False,
        ),
        "agentgate-prev": _agentgate("agentgate-prev", 18088, agentgate_prev_cmd),
        "agentgate": _agentgate("agentgate", 18084, agentgate_cmd),
        **{
            name: _agentgate(name, port, agentgate_traced_cmd(name, port))
            for name, port in zip(TRACED, (18090, 18092), strict=True)
        },
    }


# --- load generators -------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk_cmd(server: Server, scenario: Scenario, seconds: int, conns: int, tmp: Path) -> list[str]:
    """The wrk command line for one scenario (a Lua script sets method and body)."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for k, v in server.headers(scenario).items():
        cmd += ["-H", f"{k}: {v}"]
    if scenario.body is not None:
        script = tmp / f"wrk-{scenario.key}.lua"
        body = scenario.body.decode().replace("\\", "\\\\").replace('"', '\\"')
        script.write_text(f'wrk.method = "{scenario.method}"\nwrk.body = "{body}"\n')
        cmd += ["-s", str(script)]
    return [*cmd, server.url(scenario.path)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Throughput of a wrk run; counts only 2xx/3xx responses as throughput."""
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
        "ok_requests": requests - bad,
        "non_2xx_3xx": bad,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "closed_loop_p50_ms": lat.get("50"),
        "closed_loop_p99_ms": lat.get("99"),
    }


def run_wrk(
    server: Server,
    scenario: Scenario,
    seconds: int,
    conns: int,
    cpus: CpuLayout,
    tmp: Path,
    pid: int,
) -> dict[str, Any]:
    """Closed-loop max throughput, and the server tree's CPU time per answered request."""
    pids = tree_pids(pid)
    cpu0 = cpu_seconds(pids)
    out = subprocess.run(
        pinned(cpus.load, wrk_cmd(server, scenario, seconds, conns, tmp)),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    cpu = cpu_seconds(pids) - cpu0
    result = parse_wrk(out)
    result["server_cpu_s"] = cpu
    result["cpu_us_per_request"] = (
        cpu / result["ok_requests"] * 1e6 if result["ok_requests"] else None
    )
    return result


def run_oha(
    server: Server, scenario: Scenario, seconds: int, rate: int, cpus: CpuLayout
) -> dict[str, Any]:
    """Open-loop fixed rate with latency correction: latencies count from the scheduled send."""
    conns = max(64, rate // 20)  # Little: room for 50 ms of latency at this rate
    cmd = [str(OHA), "-z", f"{seconds}s", "-q", str(rate), "-c", str(conns),
           "--latency-correction", "--no-tui", "--output-format", "json"]  # fmt: skip
    for k, v in server.headers(scenario).items():
        cmd += ["-H", f"{k}: {v}"]
    if scenario.body is not None:
        cmd += ["-m", scenario.method, "-d", scenario.body.decode()]
    proc = subprocess.run(
        pinned(cpus.load, [*cmd, server.url(scenario.path)]),
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
            streams.append(sse_once(server.port, path, server.headers(BY_KEY["get_1k"])))
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
    """Refuses to measure a proxy that does not return the upstream's answers."""
    for sc in SCENARIOS:
        # The first answer may be slow: LiteLLM imports its OpenAI client on its first call
        # (over 10 s on a busy machine), so the server's start-up allowance applies.
        try:
            status, body = http_request(
                server.port, sc.method, sc.path, server.headers(sc), sc.body,
                timeout=server.ready_timeout,
            )  # fmt: skip
        except OSError as e:
            raise RuntimeError(f"checking {sc.method} {sc.path}: {e}") from e
        if sc.body is not None and not server.exact_post:
            # An LLM proxy re-serialises the model's answer: check it is the upstream's.
            ok = status == 200 and b'"content":"aaaa' in body.replace(b": ", b":")
        else:
            ok = status == 200 and len(body) == sc.size
        if not ok:
            raise RuntimeError(
                f"{sc.method} {sc.path}: status {status}, {len(body)} bytes, want 200/{sc.size}: "
                f"{body[:200]!r}"
            )


@contextlib.contextmanager
def running(server: Server, cpus: CpuLayout, tmp: Path) -> Iterator[int]:
    """Starts the server, waits until it answers, yields the pid of its process tree's root."""
    cmd = server.command(tmp, cpus)
    proc: Proc | None = None
    if cmd is not None:
        if not port_free(server.port):
            raise RuntimeError(f"port {server.port} already in use")
        try:
            proc = start(server.name, cmd, tmp, server.env(tmp))
        except OSError as e:
            raise RuntimeError(f"cannot start {cmd[0]}: {e}") from e
    try:
        wait_ready(proc, server.port, "/1k", server.headers(BY_KEY["get_1k"]), server.ready_timeout)
        check_bodies(server)
        yield proc.popen.pid if proc else UPSTREAM_PID[0]
    finally:
        if proc is not None:
            proc.stop()


def measure(server: Server, settings: Settings, cpus: CpuLayout, tmp: Path) -> dict[str, Any]:
    """Starts the server, runs every measurement against it, stops it."""
    result: dict[str, Any] = {"server": server.name}
    try:
        with running(server, cpus, tmp) as pid:
            # Before any load: what the server costs to hold, apart from what load leaves
            # behind (buffers of its peak connection count that the allocator keeps).
            result["pss_start_mib"] = tree_memory(pid)["pss"] / 2**20
            run_wrk(server, BY_KEY["get_1k"], settings.warmup_seconds, 16, cpus, tmp, pid)
            pids = tree_pids(pid)
            cpu0 = cpu_seconds(pids)
            time.sleep(settings.idle_seconds)
            result["idle_cpu_ms_per_s"] = (cpu_seconds(pids) - cpu0) * 1e3 / settings.idle_seconds
            for sc in SCENARIOS:
                result[f"wrk_{sc.key}"] = run_wrk(
                    server, sc, settings.wrk_seconds, settings.wrk_connections, cpus, tmp, pid
                )
            for key, rate in settings.latency:
                result[f"oha_{key}_{rate}"] = run_oha(
                    server, BY_KEY[key], settings.oha_seconds, rate, cpus
                )
            result["sse"] = run_sse(server, settings)
            memory = tree_memory(pid)
            result["rss_mib"] = memory["rss"] / 2**20
            result["pss_mib"] = memory["pss"] / 2**20
            result["processes"] = memory["processes"]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        result["error"] = str(e)
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


def count_python(server: Server, settings: Settings, cpus: CpuLayout, tmp: Path) -> dict[str, Any]:
    """Interpreter entries per request: (entries under load − idle entries) / requests."""
    result: dict[str, Any] = {"server": server.name}
    seconds = settings.pycount_seconds
    try:
        with running(server, cpus, tmp) as pid:
            pids = tree_pids(pid)
            binary = next(filter(None, map(libpython, pids)), None)
            if binary is None:
                raise RuntimeError("no libpython in the server's processes")
            result["binary"] = binary
            result["processes"] = len(pids)
            for sc in (BY_KEY["get_1k"], BY_KEY["post"]):  # warm every path once, unprobed
                run_wrk(server, sc, 1, 16, cpus, tmp, pid)
            with probes(binary):
                idle, _ = perf_count(pids, ["sleep", str(seconds)], tmp)
                result["idle"] = {**idle.total, "seconds": seconds}
                for sc in (BY_KEY["get_1k"], BY_KEY["post"]):
                    cmd = pinned(
                        cpus.load, wrk_cmd(server, sc, seconds, settings.wrk_connections, tmp)
                    )
                    counts, out = perf_count(pids, cmd, tmp)
                    n = parse_wrk(out)["requests"]
                    busiest = counts.busiest() or {}
                    result[sc.key] = {
                        "requests": n,
                        "counts": counts.total,
                        "threads": counts.threads,
                        # beyond the idle rate: what the requests cost
                        "per_request": {
                            k: (counts.total[k] - idle.total[k]) / n if n else None for k in PROBES
                        },
                        # everything during the run, timers included: an upper bound
                        "all_per_request": {k: counts.total[k] / n if n else None for k in PROBES},
                        # on the thread that served the requests: no timer noise
                        "busiest_thread": {
                            "thread": busiest.get("thread"),
                            "cpu_s": busiest.get("cpu_s"),
                            **{k: busiest.get(k, 0) / n if n else None for k in PROBES},
                        },
                    }
    except (RuntimeError, OSError, subprocess.TimeoutExpired, StopIteration) as e:
        result["error"] = str(e)
    return result


def versions() -> dict[str, str]:
    """Versions of the tools and peers, for the record."""

    def cmd(args: list[str]) -> str:
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return "missing"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr) else "?"

    out = {
        "wrk": cmd(["wrk", "-v"]),
        "nginx": cmd([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "caddy": cmd([str(CADDY), "version"]),
        "litellm": cmd([str(TOOLS / "litellm" / "bin" / "pip"), "show", "litellm"]),
        "oha": cmd([str(OHA), "--version"]),
        "go": cmd(["go", "version"]),
        "granian": cmd([str(VENV_BIN / "granian"), "--version"]),
        "perf": cmd(["perf", "--version"]),
        "python": platform.python_version(),
        "agentgate-prev": PREV_COMMIT,
    }
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("aiohttp", "httpx", "starlette", "uvloop", "agentgate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    try:
        return ", ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


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
        "--no-pycount", action="store_true", help="skip counting Python entries (needs perf)"
    )
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
    if "agentgate-prev" in chosen:
        try:  # build it before anything is timed; a failure shows in its rows
            print(f"agentgate-prev: {prev_venv()}", file=sys.stderr)
        except RuntimeError as e:
            print(f"agentgate-prev: {e}", file=sys.stderr)
    runs: list[dict[str, Any]] = []
    pycounts: list[dict[str, Any]] = []
    started = time.time()
    load_before = load_average()
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
                            "  "
                            + ", ".join(
                                f"{sc.key} {res[f'wrk_{sc.key}']['rps']:.0f} req/s "
                                f"{fmt(res[f'wrk_{sc.key}']['cpu_us_per_request'], '{:.1f}')} µs"
                                for sc in SCENARIOS
                            )
                            + f", PSS {res['pss_mib']:.1f} MiB",
                            file=sys.stderr,
                        )
                    runs.append(res)
            if not args.no_pycount:
                for name in chosen:
                    if not registry[name].python:
                        continue
                    print(f"[python entries] {name} …", file=sys.stderr)
                    pc = count_python(registry[name], settings, cpus, tmp)
                    print(f"  {json.dumps({k: pc.get(k) for k in ('get_1k', 'post', 'error')})}",
                          file=sys.stderr)  # fmt: skip
                    pycounts.append(pc)
    load_after = load_average()

    summary = summarize(runs, pycounts, settings)
    meta: dict[str, Any] = {
        "command": "make bench-gateway"
        + (f' BENCH_GATEWAY_ARGS="{" ".join(sys.argv[1:])}"' if sys.argv[1:] else ""),
        "rounds": settings.rounds,
        "settings": dataclasses.asdict(settings),
        "servers": chosen,
        "cpu_layout": cpus.describe(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "load_before": load_before,
        "load_after": load_after,
        "duration_s": round(time.time() - started, 1),
        "versions": versions(),
    }
    meta["targets"] = targets(summary, settings)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "runs": runs, "python_entries": pycounts},
            indent=2,
            default=str,
        )
        + "\n"
    )
    table = markdown(summary, meta, settings)
    print(table)
    print(f"\nraw runs and summary: {out_path}", file=sys.stderr)
    if not args.no_md and not args.quick:
        write_benchmarks_md(table)


if __name__ == "__main__":
    main()
