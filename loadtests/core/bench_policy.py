"""Policy evaluation latency: agentgate (regorus in the Rust core) against regopy (rego-cpp).

Both evaluate the shipped default policies (`data.agentgate.decision`) for one agent-create
input, already compiled: `agentgate` is the full `PolicyService.evaluate` (dict in, decision
out, JSON encoding included); `agentgate-engine` is the core call on prepared JSON bytes;
`regopy-bundle` sets the same JSON input on a prebuilt rego-cpp bundle and queries it.
"""

from __future__ import annotations

from typing import Any

import orjson
import regopy

from agentgate.policy import PolicyService, default_modules
from loadtests.core.harness import Case

INPUT: dict[str, Any] = {
    "template": {
        "name": "echo",
        "capabilities": ["chat"],
        "resources": {"cpu": 0.5, "memory_mb": 256},
    },
    "signature": {"verified": True, "key_id": "k1"},
    "tenant": {"id": "acme", "trusted_keys": ["k1", "k2"], "allowed_capabilities": ["chat"]},
    "caller": {"id": "alice", "roles": ["operator"]},
    "quotas": {"agents": 10, "replicas": 20, "cpu": 8, "memory_mb": 4096},
    "usage": {"agents": 3, "replicas": 6, "cpu": 3, "memory_mb": 1536},
    "request": {"replicas": 2},
}


def cases() -> list[Case]:
    """Policy evaluation cases; the first is the baseline."""
    svc = PolicyService()
    evaluate = svc.evaluate
    engine = svc.engine()
    raw = orjson.dumps({**INPUT, "stage": "create"})
    text = raw.decode()

    def ours() -> object:
        return evaluate("create", INPUT)

    def ours_engine() -> object:
        return engine.evaluate(raw)

    peer = regopy.Interpreter()
    for name, src in default_modules().items():
        peer.add_module(name, src)
    bundle = peer.build("data.agentgate.decision", [])

    def peer_bundle() -> object:
        peer.set_input_term(text)
        return peer.query_bundle(bundle)

    return [
        Case("policy", "agentgate", ours, baseline=True),
        Case("policy", "agentgate-engine", ours_engine),
        Case("policy", "regopy-bundle", peer_bundle),
    ]


if __name__ == "__main__":
    import timeit

    for c in cases():
        n = 5_000
        t = min(timeit.repeat(c.fn, number=n, repeat=3)) / n
        print(f"{c.group:8} {c.name:18} {t * 1e6:8.1f} us/op")
