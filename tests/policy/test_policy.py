"""PolicyService and the _core PolicyEngine against the shipped default policies."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentgate._core import PolicyCompileError, PolicyEngine, PolicyError, PolicyErrorKind
from agentgate.errors import Invalid
from agentgate.policy import PolicyCompileFailed, PolicyService, default_modules


def _input(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {
            "name": "echo",
            "capabilities": ["chat"],
            "resources": {"cpu": 1, "memory_mb": 512},
        },
        "signature": {"verified": True, "key_id": "k1"},
        "tenant": {"id": "acme", "trusted_keys": ["k1"], "allowed_capabilities": ["chat"]},
        "caller": {"id": "alice", "roles": ["operator"]},
        "quotas": {"agents": 5, "replicas": 10, "cpu": 4, "memory_mb": 2048},
        "usage": {"agents": 1, "replicas": 2, "cpu": 2, "memory_mb": 1024},
        "request": {"replicas": 1},
    }
    base.update(over)
    return base


def test_defaults_allow_a_good_request_on_every_stage() -> None:
    svc = PolicyService()
    for stage in ("publish", "create", "deploy"):
        d = svc.evaluate(stage, _input())
        assert d.allow and d.reasons == () and d.stage == stage


def test_each_default_rule_denies_with_its_name() -> None:
    svc = PolicyService()
    d = svc.evaluate("create", _input(signature={"verified": False, "key_id": None}))
    assert not d.allow and d.rules == ("signature",)
    d = svc.evaluate("create", _input(signature={"verified": True, "key_id": "other"}))
    assert d.rules == ("signature",) and "'other'" in d.reasons[0].message
    t = _input()["template"] | {"capabilities": ["chat", "exec"]}
    d = svc.evaluate("publish", _input(template=t))
    assert d.rules == ("capabilities",) and "'exec'" in d.reasons[0].message
    d = svc.evaluate("create", _input(request={"replicas": 3}))
    assert d.rules == ("quotas",)
    assert {r.message.split()[1] for r in d.reasons} == {"cpu", "memory_mb"}
    assert d.as_dict()["reasons"][0]["rule"] == "quotas"


def test_tenant_policy_adds_rules_only_for_that_tenant() -> None:
    svc = PolicyService()
    rego = (
        "package agentgate.rules.no_friday\nimport rego.v1\n\n"
        'deny contains "no deploys by interns" if {\n\t"intern" in input.caller.roles\n}\n'
    )
    svc.validate("no_friday", rego, tenant_id="acme")
    svc.set_tenant_policies("acme", {"no_friday": rego})
    caller = {"id": "bob", "roles": ["intern"]}
    d = svc.evaluate("deploy", _input(caller=caller))
    assert d.rules == ("no_friday",)
    other = _input(caller=caller, tenant={"id": "globex"})
    assert svc.evaluate("deploy", other).allow
    assert svc.tenant_policies("acme") == {"no_friday": rego}


def test_validation_reports_position_and_package_rules() -> None:
    svc = PolicyService()
    bad = (
        "package agentgate.rules.broken\nimport rego.v1\n\n"
        'deny contains "x" if {\n  input.a ==\n}\n'
    )
    with pytest.raises(PolicyCompileFailed) as info:
        svc.validate("broken", bad)
    p = info.value.compile_problem
    assert (p.module, p.line, p.col) == ("tenant/broken.rego", 6, 1)
    assert info.value.problem()["line"] == 6
    with pytest.raises(Invalid, match=r"package agentgate\.rules"):
        svc.validate("x", "package evil\nimport rego.v1\n")
    with pytest.raises(Invalid, match="name"):
        svc.validate("bad name!", "package agentgate.rules.x\n")
    # A failed save leaves the tenant's bundle as it was.
    with pytest.raises(PolicyCompileFailed):
        svc.set_tenant_policies("acme", {"broken": bad})
    assert svc.tenant_policies("acme") == {}


def test_dry_run_shows_decision_rules_and_coverage() -> None:
    svc = PolicyService()
    t = _input()["template"] | {"capabilities": ["exec"]}
    run = svc.dry_run("create", _input(template=t))
    assert not run.decision.allow
    assert run.result["allow"] is False
    assert "capabilities.rego" in run.modules
    cov = {c.module: c for c in run.coverage}
    assert cov["capabilities.rego"].covered
    body = run.as_dict()
    assert body["rules"] == ["capabilities"] and body["coverage"]


def test_bad_stage_and_bad_input_are_invalid() -> None:
    svc = PolicyService()
    with pytest.raises(Invalid, match="stage"):
        svc.evaluate("destroy", _input())  # type: ignore[arg-type]
    eng = svc.engine()
    with pytest.raises(PolicyError) as info:
        eng.evaluate(b"{not json")
    assert info.value.kind == PolicyErrorKind.Input
    assert isinstance(info.value, ValueError)
    with pytest.raises(PolicyError) as info:
        eng.evaluate(b"\xff")
    assert info.value.kind == PolicyErrorKind.Input
    with pytest.raises(TypeError):
        eng.evaluate(123)  # type: ignore[arg-type]


def test_engine_direct_with_data_and_compile_error() -> None:
    src = 'package agentgate\nimport rego.v1\n\ndecision := {"allow": input.u in data.ok}\n'
    eng = PolicyEngine({"a.rego": src}, '{"ok": ["root"]}')
    assert eng.evaluate('{"u": "root"}').allow
    assert not eng.evaluate(b'{"u": "bob"}').allow
    with pytest.raises(PolicyCompileError) as info:
        PolicyEngine({"b.rego": "package x\nimport rego.v1\nallow if {\n"})
    e = info.value
    assert (e.module, e.kind) == ("b.rego", PolicyErrorKind.Compile)
    assert e.line >= 3 and e.message
    assert str(e).startswith(f"b.rego:{e.line}:{e.col}: ")
    assert isinstance(e, PolicyError)
    x = eng.explain('{"u": "root"}')
    assert x.decision.allow and x.decision.reasons == []
    assert [c.module for c in x.coverage] == ["a.rego"] and x.coverage[0].covered
    assert PolicyService().engine().uses_vm
    assert sorted(default_modules()) == [
        "capabilities.rego",
        "main.rego",
        "quotas.rego",
        "signature.rego",
    ]


def test_threads_share_one_engine() -> None:
    svc = PolicyService()
    inputs = [_input(request={"replicas": i}) for i in range(6)]
    expected = [svc.evaluate("create", i) for i in inputs]
    errors: list[str] = []

    def run() -> None:
        for _ in range(50):
            got = [svc.evaluate("create", i) for i in inputs]
            if got != expected:
                errors.append("mismatch")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
