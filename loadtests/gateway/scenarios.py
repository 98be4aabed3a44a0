"""What the gateway benchmark sends and to whom: servers, scenarios, settings of one run."""

from __future__ import annotations

import os
from dataclasses import dataclass

PREV_COMMIT = os.environ.get("PREV_COMMIT", "77f1305")

HOST = "127.0.0.1"
API_KEY = "agentgate-bench-key"  # sha256 of it is in agentgate-bench.yaml
LITELLM_KEY = "sk-agentgate-bench"  # LiteLLM's master key (it wants the sk- prefix)
SERVER_NAMES = (
    "direct",
    "nginx",
    "caddy",
    "aiohttp",
    "litellm",
    "agentgate-prev",
    "agentgate",
    "agentgate-trace1",
    "agentgate-trace100",
)
# agentgate with data-plane tracing on, by sampling ratio: spans recorded in the core and exported
# over OTLP/HTTP to the Go upstream (which answers 200), so the export's cost is in the figures
TRACED = {"agentgate-trace1": 0.01, "agentgate-trace100": 1.0}
NOTES = {
    "litellm": "does far more per request than forwarding: pydantic models, the OpenAI SDK, "
    "cost accounting (POST); GETs use its pass-through endpoints",
    "agentgate-prev": f"previous release ({PREV_COMMIT}): granian worker + Python handler",
    "direct": "no proxy: the upstream itself (its CPU and memory)",
    "agentgate-trace1": "agentgate with tracing, 1 % of requests sampled (OTLP export on)",
    "agentgate-trace100": "agentgate with tracing, every request sampled (OTLP export on)",
}

# The POST scenario's request: an OpenAI-style chat request of exactly 118 bytes.
CHAT_BODY = (
    b'{"model":"bench","messages":[{"role":"user","content":"' + b"x" * 43 + b'"}],"max_tokens":16}'
)
assert len(CHAT_BODY) == 118, len(CHAT_BODY)


@dataclass(frozen=True)
class Scenario:
    """One kind of request every server gets."""

    key: str
    label: str
    method: str
    path: str
    size: int  # bytes of the upstream's answer
    body: bytes | None = None


SCENARIOS = (
    Scenario("get_1k", "GET 1 KiB", "GET", "/1k", 1024),
    Scenario("get_16k", "GET 16 KiB", "GET", "/16k", 16 * 1024),
    Scenario("post", "POST 118 B JSON → 1 KiB", "POST", "/v1/chat/completions", 1024, CHAT_BODY),
)
BY_KEY = {s.key: s for s in SCENARIOS}


@dataclass(frozen=True)
class Settings:
    """Durations and sizes of one run."""

    rounds: int = 3
    wrk_seconds: int = 10
    oha_seconds: int = 10
    warmup_seconds: int = 2
    # (scenario, rate): open-loop latency runs; the first rate of a scenario gives "added p99"
    latency: tuple[tuple[str, int], ...] = (("get_1k", 1000), ("get_1k", 5000), ("post", 1000))
    wrk_connections: int = 64
    sse_streams: int = 30
    sse_events: int = 5
    sse_delay_ms: int = 10
    pycount_seconds: int = 5
    idle_seconds: int = 3  # CPU the server burns with no load (timers, polling)

    @staticmethod
    def quick() -> Settings:
        """Smoke-test settings: one short round."""
        return Settings(
            rounds=1,
            wrk_seconds=2,
            oha_seconds=2,
            warmup_seconds=1,
            sse_streams=5,
            pycount_seconds=2,
            idle_seconds=1,
        )
