"""A realistic mixed load on agentgate: agents, tenants, keys, priorities and one flaky agent.

Against the gateway configured by `loadtests/gateway/agentgate-mixed.yaml` (3 agents: `echo`,
`search`, and `flaky`, whose upstream fails ~30 % of requests). Start everything and run with

    python loadtests/gateway/run_mixed.py -u 50 -r 10 -t 30s

or, with a gateway already listening on :8000,

    locust --headless -f loadtests/locustfile.py --host http://127.0.0.1:8000 -u 50 -r 10 -t 30s

Users are agents of three kinds: chat agents (frequent small calls, streaming replies, mostly
normal priority), batch agents (bulk 16 KiB reads at low priority) and operators (rare critical
calls, including to the flaky agent). Answers the gateway is designed to give under this load
(429 over a key's rate, 503 while the flaky agent's breaker is open or a pool sheds) count as
successes of their own request name, so the report shows how often each happens; anything else
(wrong status, malformed problem body, a stream without events) is a failure.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import HttpUser, between, events, task

# Keys known to agentgate-mixed.yaml (only their sha256 is in the config). Override with
# AGENTGATE_KEYS="chat=k1,batch=k2,ops=k3" to run against another gateway.
KEYS: dict[str, str] = {
    "chat": "mixed-key-acme-chat",
    "batch": "mixed-key-acme-batch",
    "ops": "mixed-key-globex-ops",
}
if os.environ.get("AGENTGATE_KEYS"):
    KEYS.update(dict(kv.split("=", 1) for kv in os.environ["AGENTGATE_KEYS"].split(",")))

EXPECTED_SHED = {429, 503}  # designed answers under load: rate limited, shed, breaker open
PROBLEM = "application/problem+json"


def _check(resp: Any, ok: set[int], name_by_status: bool = True) -> None:
    """Marks a catch_response response: ok statuses succeed, designed rejections are checked."""
    status = resp.status_code
    if status in ok:
        resp.success()
    elif status in EXPECTED_SHED:
        if PROBLEM not in resp.headers.get("Content-Type", ""):
            resp.failure(f"{status} without a problem+json body")
        elif status == 429 and "Retry-After" not in resp.headers:
            resp.failure("429 without Retry-After")
        else:
            resp.success()
    else:
        resp.failure(f"unexpected status {status}")
    if name_by_status and status != 200:
        # Shows rejections as their own rows in the report instead of hiding them.
        resp.request_meta["name"] = f"{resp.request_meta['name']} [{status}]"


class ChatAgent(HttpUser):
    """An interactive agent: small calls and streamed replies, sometimes raised to high."""

    weight = 6
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        """Each chat agent authenticates with the chat key and has its own conversation id."""
        self.client.headers.update({"Authorization": f"Bearer {KEYS['chat']}"})
        self.conversation = f"conv-{random.randrange(1 << 30)}"

    def _priority(self) -> dict[str, str]:
        return {"X-Priority": "high" if random.random() < 0.1 else "normal"}

    @task(5)
    def ask(self) -> None:
        """A small JSON call answered in one piece."""
        with self.client.post(
            "/agents/echo/echo",
            data=json.dumps({"conversation": self.conversation, "text": "hello"}),
            headers={**self._priority(), "Content-Type": "application/json"},
            name="echo POST",
            catch_response=True,
        ) as resp:
            _check(resp, {200})

    @task(3)
    def read(self) -> None:
        """A 1 KiB read."""
        with self.client.get(
            "/agents/echo/1k", headers=self._priority(), name="echo 1k", catch_response=True
        ) as resp:
            _check(resp, {200})
            if resp.status_code == 200 and len(resp.content) != 1024:
                resp.failure(f"body of {len(resp.content)} bytes, want 1024")

    @task(2)
    def stream(self) -> None:
        """A streamed reply (SSE): records time to first event as its own metric."""
        start = time.perf_counter()
        with self.client.get(
            "/agents/echo/sse?n=5&delay=20",
            headers={**self._priority(), "Accept": "text/event-stream"},
            name="echo SSE",
            stream=True,
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                _check(resp, {200})
                return
            first: float | None = None
            count = 0
            for line in resp.iter_lines():
                if line.startswith(b"data:"):
                    count += 1
                    if first is None:
                        first = time.perf_counter() - start
            if count != 5:
                resp.failure(f"{count} events, want 5")
                return
            resp.success()
            if first is not None:
                events.request.fire(  # type: ignore[no-untyped-call]
                    request_type="SSE",
                    name="echo SSE first event",
                    response_time=first * 1000.0,
                    response_length=0,
                    exception=None,
                    context={},
                )


class BatchAgent(HttpUser):
    """A batch agent: bulk reads at low priority, the first to be shed under pressure."""

    weight = 3
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        """Batch agents use the batch key (role capped at low priority)."""
        self.client.headers.update({"X-API-Key": KEYS["batch"], "X-Priority": "low"})

    @task(4)
    def bulk(self) -> None:
        """A 16 KiB read from the search agent."""
        with self.client.get("/agents/search/16k", name="search 16k", catch_response=True) as r:
            _check(r, {200})

    @task(1)
    def escalate(self) -> None:
        """Asks for critical: the role caps it at low, the call must still be served."""
        with self.client.get(
            "/agents/search/1k",
            headers={"X-Priority": "critical"},
            name="search 1k (asks critical)",
            catch_response=True,
        ) as resp:
            _check(resp, {200, 403})


class Operator(HttpUser):
    """An operator agent: rare critical calls, including to the flaky agent."""

    weight = 1
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        """Operators use the ops key of another tenant."""
        self.client.headers.update({"Authorization": f"Bearer {KEYS['ops']}"})

    @task(3)
    def flaky(self) -> None:
        """The flaky agent: retries hide some failures, the breaker answers fast when open."""
        with self.client.get(
            "/agents/flaky/1k",
            headers={"X-Priority": "critical"},
            name="flaky 1k",
            catch_response=True,
        ) as resp:
            # 502/503/504 are what a flaky upstream may cause: the gateway's own answers are
            # problem+json; the upstream's 503 after the last retry is passed through as is.
            status = resp.status_code
            if status in {502, 503, 504}:
                own = PROBLEM in resp.headers.get("Content-Type", "")
                if own or (status == 503 and "flaky upstream" in resp.text):
                    resp.success()
                else:
                    resp.failure(f"{status} neither problem+json nor the upstream's own")
                resp.request_meta["name"] = f"flaky 1k [{status}]"
            else:
                _check(resp, {200})

    @task(1)
    def critical(self) -> None:
        """A critical call to echo."""
        with self.client.get(
            "/agents/echo/1k",
            headers={"X-Priority": "critical"},
            name="echo 1k critical",
            catch_response=True,
        ) as resp:
            _check(resp, {200})

    @task(1)
    def unauthenticated(self) -> None:
        """A request with a wrong key must get 401, never reach the agent."""
        with self.client.get(
            "/agents/echo/1k",
            headers={"Authorization": "Bearer not-a-key"},
            name="echo bad key",
            catch_response=True,
        ) as resp:
            if resp.status_code == 401:
                resp.success()
            else:
                resp.failure(f"bad key got {resp.status_code}, want 401")
