"""The admin listener's /metrics passes the real `promtool check metrics`, with every family live.

promtool comes from Debian's `prometheus` package (`make services` installs it). Its
`check metrics` reads an exposition on stdin and answers with one of three exit codes; checked
here against promtool 2.42 (Debian bookworm), and `check_metrics` refuses any other shape:

- 0: it parsed and promlint found nothing; stdout and stderr are empty.
- 1: the text-format parser refused it; stderr is `error while linting: <parser error>` (the
  parser's error, e.g. `text format parsing error in line 3: ...`). No lint ran.
- 3: it parsed, and promlint found problems: one `<metric> <problem>` line each on stderr
  (e.g. `foo counter metrics should have "_total" suffix`, `foo no help text`).

So a parse error and a lint warning are told apart by the exit code (1 vs 3), and our /metrics
must get 0. A missing promtool fails the tests under CI=true and skips them otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_process import API_KEY_HASH, start_gateway, stop_gateway
from prometheus_client.parser import text_string_to_metric_families
from upstreams import Upstream, closed_port

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
_CASES = json.loads((TESTDATA / "prometheus_openmetrics_exposition.json").read_text())
TEXT = _CASES["prometheus_text"]

# Inputs that promtool 2.42's parser accepts although newer prometheus/common parsers refuse
# them (negative histogram bucket/count values: those checks came later). Not format errors the
# gateway could make, so they are left out rather than tied to one promtool version.
_NOT_REFUSED_BY_PROMTOOL_2 = {43, 44, 45, 46}


@dataclass
class Check:
    """What `promtool check metrics` said about one input."""

    code: int
    parse_error: str | None = None  # the parser's message when it refused the input (exit 1)
    lint: list[str] = field(default_factory=list)  # promlint's `<metric> <problem>` lines (exit 3)


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of promtool; fails under CI=true when missing, skips otherwise."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (`make services`, or apt-get install prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"promtool required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def check_metrics(promtool: str, data: bytes) -> Check:
    """Run `promtool check metrics` on `data` and classify its answer by exit code."""
    p = subprocess.run(
        [promtool, "check", "metrics"], input=data, capture_output=True, timeout=60, check=False
    )
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    shape = f"promtool exit {p.returncode}, stdout {out!r}, stderr {err!r}"
    lines = err.splitlines()
    if p.returncode == 0:
        assert not out and not err, shape
        return Check(0)
    if p.returncode == 1:
        prefix = "error while linting: "
        assert len(lines) == 1 and lines[0].startswith(prefix), shape
        return Check(1, parse_error=lines[0].removeprefix(prefix))
    if p.returncode == 3:
        assert lines and not out, shape
        assert not any(ln.startswith("error while linting") for ln in lines), shape
        return Check(3, lint=lines)
    raise AssertionError(f"unexpected {shape}")


def _input(case: dict[str, Any]) -> bytes:
    return base64.b64decode(case["input_b64"])


# Cases with `extension_note` use prometheus/common extensions beyond text format 0.0.4 (quoted
# UTF-8 names, gaugehistogram): promtool 2.42 predates most of them, and agentgate emits none.
_VALID = [c for c in TEXT["valid"] if not c.get("extension_note")]
_ERRORS = [
    c
    for c in TEXT["errors"]
    if not c.get("extension_note") and c["id"] not in _NOT_REFUSED_BY_PROMTOOL_2
]


def test_selected_cases_cover_the_classic_format() -> None:
    assert [c["id"] for c in _VALID] == [0, 1, 2, 3, 4, 12, 13, 14]
    assert len(_ERRORS) == 36


@pytest.mark.parametrize("case", _VALID, ids=lambda c: f"valid-{c['id']}")
def test_promtool_parses_valid_exposition(promtool: str, case: dict[str, Any]) -> None:
    res = check_metrics(promtool, _input(case))
    assert res.parse_error is None, case["comment"]
    # only promlint's style warnings (exit 3) may remain
    assert res.code in (0, 3)


@pytest.mark.parametrize("case", _ERRORS, ids=lambda c: f"error-{c['id']}")
def test_promtool_refuses_broken_exposition(promtool: str, case: dict[str, Any]) -> None:
    res = check_metrics(promtool, _input(case))
    assert res.code == 1, f"accepted broken input {case['comment']!r}: {res}"
    assert res.parse_error is not None
    assert res.parse_error.startswith(case["error_legacy_validation"])


def test_promtool_parses_the_large_sample_with_lint_warnings_only(promtool: str) -> None:
    res = check_metrics(promtool, TEXT["sample_valid_exposition"]["text"].encode())
    assert res.code == 3
    assert (
        'http_request_duration_microseconds use base unit "seconds" instead of "microseconds"'
        in res.lint
    )


def test_promtool_tells_lint_from_parse_errors(promtool: str) -> None:
    clean = (
        b"# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n"
        b'jobs_total{kind="a"} 3\n'
        b"# HELP job_duration_seconds Job time.\n# TYPE job_duration_seconds histogram\n"
        b'job_duration_seconds_bucket{le="0.5"} 1\njob_duration_seconds_bucket{le="+Inf"} 2\n'
        b"job_duration_seconds_sum 1.5\njob_duration_seconds_count 2\n"
    )
    assert check_metrics(promtool, clean) == Check(0)
    # the same, but the counter without `_total`: parses, one lint problem
    lint = clean.replace(b"jobs_total", b"jobs")
    assert check_metrics(promtool, lint) == Check(
        3, lint=['jobs counter metrics should have "_total" suffix']
    )
    # and without the final newline: a parse error, no lint
    broken = check_metrics(promtool, clean.rstrip(b"\n"))
    assert broken.code == 1 and broken.lint == []
    assert broken.parse_error is not None
    assert broken.parse_error.endswith("unexpected end of input stream")


# ---- the gateway's own /metrics ----

# Every family /metrics exposes (the names on its TYPE lines) and its type.
EXPECTED_FAMILIES = {
    "agentgate_requests_total": "counter",
    "agentgate_rejected_total": "counter",
    "agentgate_retries_total": "counter",
    "agentgate_shed_total": "counter",
    "agentgate_request_duration_seconds": "histogram",
    "agentgate_upstream_duration_seconds": "histogram",
    "agentgate_in_flight": "gauge",
    "agentgate_queue_depth": "gauge",
    "agentgate_breaker_state": "gauge",
    "agentgate_endpoint_healthy": "gauge",
}

CLUSTER_FAMILIES = {
    "agentgate_cluster_limit_decisions_total": "counter",
    "agentgate_cluster_limit_redis_up": "gauge",
    "agentgate_cluster_limit_redis_errors_total": "counter",
    "agentgate_cluster_limit_leases_total": "counter",
}
"""Declared by the cluster limiter (`limits_cluster.py`) when the gateway imports it: exposed
whether or not a route is cluster-scoped, with no samples until one is."""


def _config(up: Upstream, dead_port: int) -> str:
    return f"""
agents:
  up:
    endpoints: [{{url: "{up.url}"}}]
    timeouts: {{connect: 1s, first_byte: 2s, idle: 2s, total: 0}}
    retries: {{attempts: 2, backoff: {{base: 5ms, max: 20ms}}, budget: 1.0}}
    circuit_breaker: {{consecutive_failures: 1000, min_requests: 1000}}
  brk:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 0}}
    circuit_breaker: {{consecutive_failures: 2, open_for: 60s}}
  narrow:
    endpoints: [{{url: "{up.url}"}}]
    retries: {{attempts: 0}}
    max_concurrency: 1
    max_queue: 16
    queue_timeout: 50ms
  hc:
    endpoints: [{{url: "{up.url}"}}, {{url: "http://127.0.0.1:{dead_port}"}}]
    health_check: {{path: /health, interval: 50ms, timeout: 1s, healthy: 1, unhealthy: 1}}
routes:
  - {{id: up, match: {{path_prefix: /up}}, agent: up, strip_prefix: true}}
  - {{id: auth, match: {{path_prefix: /auth}}, agent: up, strip_prefix: true, auth: required}}
  - id: limited
    match: {{path_prefix: /limited}}
    agent: up
    strip_prefix: true
    rate_limit: {{key: ip, rate: 1/m, burst: 1}}
  - {{id: brk, match: {{path_prefix: /brk}}, agent: brk, strip_prefix: true}}
  - {{id: narrow, match: {{path_prefix: /narrow}}, agent: narrow, strip_prefix: true}}
  - {{id: hc, match: {{path_prefix: /hc}}, agent: hc, strip_prefix: true}}
auth:
  api_keys: [{{id: k1, hash: "{API_KEY_HASH}", tenant: acme, roles: [caller]}}]
"""


@dataclass
class Exposition:
    """One /metrics body, its TYPE lines and its samples."""

    text: str
    types: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        """Read the TYPE lines and every sample."""
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        samples = [
            (s.name, dict(s.labels), s.value)
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        ]
        return cls(text, types, samples)

    def values(self, name: str, **labels: str) -> list[float]:
        """Values of the samples named `name` whose labels include `labels`."""
        return [
            v
            for n, lab, v in self.samples
            if n == name and all(lab.get(k) == w for k, w in labels.items())
        ]

    def missing(self) -> list[str]:
        """What the traffic should have produced but this scrape does not show (yet)."""
        out = [f for f in EXPECTED_FAMILIES if f not in self.types]
        for fam, kind in EXPECTED_FAMILIES.items():
            name = f"{fam}_count" if kind == "histogram" else fam
            if sum(self.values(name)) <= 0 and kind != "gauge":
                out.append(f"{name} > 0")
            elif not self.values(name):
                out.append(f"samples of {name}")
        for cls in ("2xx", "4xx", "5xx"):
            if not self.values("agentgate_requests_total", status_class=cls):
                out.append(f"requests {cls}")
        for status in ("401", "404", "429", "503"):
            if not self.values("agentgate_rejected_total", status=status):
                out.append(f"rejected {status}")
        if 1.0 not in self.values("agentgate_breaker_state", agent="brk"):
            out.append("an open breaker")
        if sorted(self.values("agentgate_endpoint_healthy", agent="hc")) != [0.0, 1.0]:
            out.append("one healthy and one unhealthy endpoint")
        return out


async def _traffic(s: aiohttp.ClientSession, url: str) -> None:
    """Requests that make every metric family count something (bounded, self-checking)."""

    async def get(path: str) -> tuple[int, bytes]:
        async with s.get(f"{url}{path}") as r:
            return r.status, await r.read()

    for _ in range(6):
        assert (await get("/up/x"))[0] == 200
    assert (await get("/up/x?status=404"))[0] == 404  # a 4xx from the upstream
    assert (await get("/nope"))[0] == 404  # no route
    assert (await get("/auth/x"))[0] == 401
    # rate limits are per worker: burst 1, so 3 requests put 2 on one worker
    statuses = [(await get("/limited/x"))[0] for _ in range(3)]
    assert 429 in statuses, statuses
    # one upstream failure, then success: a retry (the budget is per worker, so try a few)
    for i in range(10):
        status, body = await get(f"/up/flaky?key=retry{i}&fail=1")
        if status == 200 and body == b"ok after 1 failures":
            break
    else:
        pytest.fail("no request was retried")
    # breakers are per worker: failures until one answers circuit_open
    for _ in range(20):
        status, body = await get("/brk/flaky?key=brk&fail=1000")
        assert status == 503
        if b"circuit_open" in body:
            break
    else:
        pytest.fail("the breaker never opened")
    # one slot per worker: 6 concurrent slow requests put at least 3 on one worker, which
    # queues 2 of them past the 50 ms queue timeout
    for _ in range(3):
        got = await asyncio.gather(*(get("/narrow/slow-first?delay=0.5") for _ in range(6)))
        if any(st == 503 and b"queue_timeout" in body for st, body in got):
            break
    else:
        pytest.fail("nothing was shed from the queue")


@pytest.fixture
def up() -> Iterator[Upstream]:
    u = Upstream("metrics").start()
    yield u
    u.stop()


async def test_gateway_metrics_pass_promtool(up: Upstream, promtool: str, tmp_path: Path) -> None:
    g = start_gateway(_config(up, closed_port()), tmp_path, workers=2)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            await _traffic(s, g.url)
            # workers flush their counts every 0.5 s: scrape until everything shows
            for _ in range(100):
                async with s.get(f"{g.admin}/metrics") as r:
                    assert r.status == 200
                    body = await r.read()
                    ctype = r.headers["content-type"]
                exp = Exposition.parse(body.decode())
                if not exp.missing():
                    break
                await asyncio.sleep(0.1)
    finally:
        stop_gateway(g)
    assert exp.missing() == [], exp.text
    # prometheus-client 0.22+ labels the classic text format 1.0.0 (0.0.4 plus quoted UTF-8
    # names, which only non-legacy names need; ours are all legacy, so the bodies are the same)
    assert re.match(r"text/plain; version=(0\.0\.4|1\.0\.0)", ctype), ctype
    agentgate = {n: t for n, t in exp.types.items() if n.startswith("agentgate_")}
    assert {n: t for n, t in agentgate.items() if n not in CLUSTER_FAMILIES} == EXPECTED_FAMILIES
    assert {n: t for n, t in agentgate.items() if n in CLUSTER_FAMILIES} in ({}, CLUSTER_FAMILIES)
    res = check_metrics(promtool, body)
    assert res == Check(0), f"{res}\n{exp.text}"
