"""Templates of kind `process`: validation names the JSON path; the pool key; the gateway pool."""

from __future__ import annotations

from typing import Any

import pytest

from agentgate.errors import Invalid
from agentgate.registry.template import parse_template
from agentgate.runtime.factory import gateway_parts
from agentgate.runtime.spec import AgentSpec


def doc(spec: dict[str, Any], **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "bot",
        "version": "1.0.0",
        "spec": {"kind": "process", **spec},
        "scaling": {"min_replicas": 0, "max_replicas": 4, "warm_pool": 2},
        "params_schema": {"type": "object", "properties": {"greeting": {"type": "string"}}},
    }
    d.update(over)
    return d


def test_valid_command_and_app() -> None:
    t = parse_template(doc({"command": ["python", "server.py"], "env": {"G": "{{greeting}}"}}))
    assert t.model.spec.kind == "process"
    t = parse_template(
        doc(
            {
                "app": "agent.main:app",
                "python_path": ["/srv/agent"],
                "readiness": {"path": "/ready", "timeout": "5s"},
                "network": "egress",
                "seccomp": {"deny": ["socket"], "on_deny": "kill"},
                "isolation": {"require": ["seccomp", "netns", "mountns"]},
                "max_concurrency": 16,
            }
        )
    )
    assert t.model.scaling.warm_pool == 2


@pytest.mark.parametrize(
    ("spec", "over", "path", "text"),
    [
        ({}, {}, "$.spec", "exactly one of command, app"),
        ({"command": ["x"], "app": "a:b"}, {}, "$.spec", "exactly one of command, app"),
        ({"app": "not a module"}, {}, "$.spec.app", "module:attribute"),
        ({"command": []}, {}, "$.spec.command", "at least 1"),
        ({"command": ["x"], "network": "internet"}, {}, "$.spec.network", "none"),
        ({"command": ["x"], "env": {"AGENTGATE_SOCKET": "x"}}, {}, "$.spec.env", "set by"),
        ({"command": ["x"], "env": {"1BAD": "x"}}, {}, "$.spec.env", "variable name"),
        ({"command": ["x"], "readiness": {"path": "health"}}, {}, "readiness.path", "'/'"),
        ({"command": ["x"], "isolation": {"require": ["magic"]}}, {}, "isolation.require", ""),
        (
            {"command": ["x"]},
            {"scaling": {"min_replicas": 1, "max_replicas": 2, "scale_to_zero_after": "5m"}},
            "$.scaling",
            "min_replicas: 0",
        ),
    ],
)
def test_invalid_names_path(
    spec: dict[str, Any], over: dict[str, Any], path: str, text: str
) -> None:
    with pytest.raises(Invalid) as e:
        parse_template(doc(spec, **over))
    assert path in e.value.path or path in str(e.value), e.value
    assert text in str(e.value)


def build(params: dict[str, Any], **spec: Any) -> AgentSpec:
    return AgentSpec.build(
        agent_id="a",
        tenant_id="t",
        tenant="acme",
        name="bot",
        digest="sha256:x",
        body=doc({"command": ["srv"], **spec}),
        params=params,
        replicas=1,
    )


def test_pool_key_follows_what_runs() -> None:
    a = build({"greeting": "hi"}, env={"G": "{{greeting}}"})
    b = build({"greeting": "hi"}, env={"G": "{{greeting}}"})
    c = build({"greeting": "yo"}, env={"G": "{{greeting}}"})
    assert a.pool_key == b.pool_key != c.pool_key
    assert a.spec.env == {"G": "hi"}
    with pytest.raises(Invalid) as e:
        build({}, env={"G": "{{missing}}"})
    assert "missing" in str(e.value)


def test_gateway_pool_from_ready_replicas() -> None:
    body = doc({"command": ["srv"], "max_concurrency": 7, "timeouts": {"first_byte": "2s"}})
    # no ready replica yet (or scaled to zero): the route stays, requests wait for activation
    name, pool, routes = gateway_parts("acme", "bot", body, {}, [])
    assert pool.endpoints == () and pool.activation is not None and pool.activation.timeout > 0
    assert routes[0].match.path_prefix == "/t/acme/agents/bot"
    name, pool, routes = gateway_parts("acme", "bot", body, {}, [], endpoints=["unix:/x.sock"])
    assert name == "acme/bot" and pool.max_concurrency == 7
    assert [ep.url for ep in pool.endpoints] == ["unix:/x.sock"]
    assert routes[0].match.path_prefix == "/t/acme/agents/bot"
