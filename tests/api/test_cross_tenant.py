"""Tenant isolation through EVERY operation of the OpenAPI document (issue 4).

Tenant A (`alphaco`, an admin key) creates one object of every kind through the API: API keys
(one rotated), a publisher key, signed templates with a tag, a trust root, two policy versions
and an agent; all of that leaves audit entries. Tenant B (`betaco`, an admin key too, so no
permission check can hide a leak) then goes through the operations the document lists:

- object operations (a path parameter addresses an object): B with A's identifiers gets a 404
  problem+json, and A's whole state, re-read as A, is unchanged after every mutating call;
- list / search / query operations: nothing of A's appears in B's answers (before and after B
  has objects of its own with the same names);
- create operations: B's object lands in B (same names as A's objects do not collide), A sees
  none of it and A's state is unchanged;
- upserts (PUT by name, create or replace in the caller's tenant): B's PUT with A's names makes
  B's own object, and A's is unchanged;
- system-only operations (tenant administration, whole-chain audit, budgets): B gets 403;
- installation-wide facts that belong to no tenant (the host's isolation mechanisms): B reads
  them, and they name nothing of A's;
- the caller's own tenant: B sees B.

A also has traffic, an alert firing, alert channels, silences, SLOs, custom metrics, token
usage with a budget, and a process agent with a replica on a real agent runtime.

`test_every_operation_is_classified` fails when the document gains an operation this file does
not classify (or loses one it does), so a new endpoint cannot skip the check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
import pytest
import pytest_asyncio
from api_helpers import Api, make_api, signed, template_doc

from agentgate import crypto
from agentgate.api.openapi import openapi_document
from agentgate.registry.signing import TrustedKey, key_id
from agentgate.registry.trust import TrustRoot

Op = tuple[str, str]  # (method, path as in the document)

A_MARK = "ALPHA-MARK-7f3c"  # text only A's objects carry
B_MARK = "BETA-MARK-19d2"
TEMPLATE = "summarizer"
TAG = "stable"
POLICY = "guard"
AGENT = "summarizer"  # the agent takes its template's name
SECRET = "openai"
SUBJECT = "erin@example.com"
BACKUP = "20260101T000000Z-0badc0de"  # backups are the system's: B never sees one
A_VERSIONS = ("1.2.3", "1.3.0")
B_VERSION = "9.0.0"
WORKER = "worker"  # A's process agent: one replica on the real runtime
A_AGENT = f"alphaco/{AGENT}"  # A's agent as the gateway, metrics, alerts and cost name it
B_AGENT = f"betaco/{AGENT}"
RULE = "alpha-errors"
CHANNEL = "alpha-hook"
SLO = "alpha-availability"
METRIC = "alpha_queue"
A_VALUE = 7777.25  # A's custom metric value: no aggregate B reads may show it
B_VALUE = 3.0
MODEL = f"model-{A_MARK}"  # A's usage is of this model (cost per model must not show it)
ECHO_APP = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo_app"


@pytest_asyncio.fixture
async def api(database_url: str | None, tmp_path: Path) -> AsyncIterator[Api]:
    """The API of each backend with the observability service (traffic fed by the test) and a
    real agent runtime (replicas under a root every uid may traverse, for its isolation)."""
    import os
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="agentgate-rt-"))
    os.chmod(root, 0o755)
    a, _ = await make_api(database_url, tmp_path, observe=True, runtime_root=root)
    try:
        yield a
    finally:
        await a.aclose()
        shutil.rmtree(root, ignore_errors=True)


def _rego(mark: str) -> str:
    return (
        f"package agentgate.rules.{POLICY}\n\n"
        "deny contains msg if {\n"
        "  input.request.replicas > 100\n"
        f'  msg := "{mark}"\n'
        "}\n"
    )


@dataclass
class Tenant:
    """One tenant as the test drives it: its id, name, admin key and what it created."""

    id: str
    name: str
    secret: str
    keypair: crypto.KeyPair
    key_ids: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    agent_id: str = ""
    privacy_request_id: str = ""
    alert_id: str = ""
    silence_id: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """Headers presenting the tenant's admin key."""
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class World:
    """The API, tenants A and B, and A's state as A last read it."""

    api: Api
    a: Tenant
    b: Tenant
    a_snapshot: dict[str, Any] = field(default_factory=dict)
    a_audit_seqs: set[int] = field(default_factory=set)
    covered: set[Op] = field(default_factory=set)

    @property
    def publisher_keyid(self) -> str:
        """A's publisher key id."""
        return key_id(self.a.keypair.public_key)

    def a_tokens(self) -> list[str]:
        """Strings that identify A's objects: none may appear in an answer to B."""
        return [
            self.a.id,
            self.a.name,
            A_MARK,
            self.publisher_keyid,
            self.a.agent_id,
            self.a.privacy_request_id,
            self.a.alert_id,
            self.a.silence_id,
            str(A_VALUE),
            *self.a.key_ids,
            *self.a.digests,
        ]

    async def call(
        self,
        who: Tenant,
        method: str,
        url: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request as `who`."""
        return await self.api.client.request(
            method.upper(), url, params=query, json=body, headers=who.headers
        )


@dataclass(frozen=True)
class Call:
    """One request of a probe: path parameters, query and JSON body."""

    path: dict[str, str]
    query: dict[str, str] | None = None
    body: dict[str, Any] | None = None


def _url(path: str, params: dict[str, str]) -> str:
    for k, v in params.items():
        path = path.replace("{" + k + "}", v)
    assert "{" not in path, f"unfilled path parameter in {path}"
    return path


def _is_problem(r: httpx.Response, status: int) -> None:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), where
    doc = r.json()
    assert doc["status"] == status and doc["type"] == "about:blank", where


def _no_leak(w: World, r: httpx.Response) -> None:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == 200, f"{where}: {r.status_code} {r.text}"
    for token in w.a_tokens():
        assert token not in r.text, f"{where} shows tenant A's {token!r}: {r.text}"


# --- setup: tenant A creates one object of every kind -----------------------------------------


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.text}"
    return r.json()


async def _populate_a(w: World) -> None:
    a, call = w.a, w.call
    kp = a.keypair
    # API keys: one extra key, rotated (so a rotated-from chain exists too)
    extra = await _ok(
        await call(a, "post", "/api/keys", body={"name": "ci", "roles": ["viewer"]}), 201
    )
    await _ok(
        await call(a, "post", f"/api/keys/{extra['key']['id']}/rotate", body={"overlap": 3600}),
        201,
    )
    a.key_ids = [k["id"] for k in await _ok(await call(a, "get", "/api/keys"))]
    assert len(a.key_ids) == 3
    # publisher key, two signed versions, a tag moved twice (so rollback has somewhere to go)
    pk = {"public_key": kp.public_b64(), "valid_from": 0}
    await _ok(await call(a, "post", "/api/publisher-keys", body=pk), 201)
    for v in A_VERSIONS:
        doc = template_doc(TEMPLATE, v, description=f"{TEMPLATE} agent {A_MARK} summarises")
        out = await _ok(
            await call(a, "post", "/api/templates", body=signed(doc, kp, w.api.clock.t)), 201
        )
        a.digests.append(out["template"]["digest"])
    for v in A_VERSIONS:
        body = {"target": v}
        await _ok(await call(a, "put", f"/api/templates/{TEMPLATE}/tags/{TAG}", body=body))
    # trust root v1 pinning the publisher key (publishing and deploys then go through it)
    root = TrustRoot.create(
        1, [TrustedKey(w.publisher_keyid, kp.public_key, 0.0, None)], issued_at=w.api.clock.t
    )
    await _ok(await call(a, "post", "/api/trust-roots", body={"body": root.to_json()}), 201)
    # a policy with two versions, the first active
    await _ok(
        await call(a, "post", "/api/policies", body={"name": POLICY, "rego": _rego(A_MARK)}), 201
    )
    body = {"name": POLICY, "rego": _rego(A_MARK + "-v2"), "activate": False}
    await _ok(await call(a, "post", "/api/policies", body=body), 201)
    # an agent from the template
    body = {"template": f"{TEMPLATE}@^1", "params": {"model": A_MARK}, "replicas": 2}
    agent = await _ok(await call(a, "post", "/api/agents", body=body), 201)
    a.agent_id = agent["id"]
    assert agent["tenant"] == a.name
    # a secret (its value is write-only: no answer to anybody carries it)
    body = {"name": SECRET, "value": "value-" + A_MARK, "description": A_MARK}
    await _ok(await call(a, "post", "/api/secrets", body=body), 201)
    # a consent record and a data subject request about one of A's users
    body = {"subject": SUBJECT, "purpose": "newsletter", "granted": True, "source": A_MARK}
    await _ok(await call(a, "post", "/api/privacy/consents", body=body), 201)
    body = {"subject": SUBJECT, "kind": "access", "note": A_MARK}
    a.privacy_request_id = (
        await _ok(await call(a, "post", "/api/privacy/requests", body=body), 201)
    )["id"]
    await _populate_a_runtime(w)
    await _populate_a_observe(w)


async def _populate_a_runtime(w: World) -> None:
    """A process agent of A's with one ready replica on the runtime."""
    a = w.a
    doc = template_doc(WORKER, "1.0.0", description=f"worker {A_MARK}")
    doc["spec"] = {"kind": "process", "app": "app:app", "python_path": [str(ECHO_APP)]}
    doc["scaling"] = {"min_replicas": 1, "max_replicas": 2}
    body = signed(doc, a.keypair, w.api.clock.t)
    await _ok(await w.call(a, "post", "/api/templates", body=body), 201)
    body = {"template": f"{WORKER}@1.0.0", "params": {"model": A_MARK}}
    await _ok(await w.call(a, "post", "/api/agents", body=body), 201)
    reps = (await _ok(await w.call(a, "get", f"/api/agents/{WORKER}/replicas")))["replicas"]
    assert [r["state"] for r in reps] == ["ready"], reps


def _range(w: World, **extra: str) -> dict[str, str]:
    """A fixed query range around the (fixed) clock, so A's reads compare equal later."""
    return {"start": str(w.api.clock.t - 3600), "end": str(w.api.clock.t + 60), **extra}


def _with(path: str, query: dict[str, str]) -> str:
    return f"{path}?{urlencode(query)}"


async def _populate_a_observe(w: World) -> None:
    """A's traffic (10 % errors), an alert firing on it, a channel, a silence, an SLO, a custom
    metric with a threshold, token usage, and a budget the system set for A."""
    from agentgate._core import Sketch
    from agentgate.observe.feed import AgentState, RouteDelta

    a, call, api = w.a, w.call, w.api
    sketch = Sketch()
    sketch.add(0.05, 100)
    api.feed.next.routes.append(RouteDelta(A_AGENT, "r", [0, 0, 90, 0, 0, 10], sketch))
    api.feed.next.agents[A_AGENT] = AgentState(A_AGENT, 1, 1, 0, 0, 0)
    await api.observe.collector.flush()
    cond = {"metric": "error_rate", "op": ">", "threshold": 0.05, "window": 300}
    rule = {"name": RULE, "conditions": [cond], "annotations": {"summary": f"{A_MARK} {{agent}}"}}
    await _ok(await call(a, "post", "/api/alerts/rules", body=rule), 201)
    body = {"kind": "webhook", "config": {"url": f"http://127.0.0.1:9/{A_MARK}"}}
    await _ok(await call(a, "put", f"/api/alerts/channels/{CHANNEL}", body=body))
    body = {"matchers": [{"name": "severity", "value": "info"}], "duration": 3600}
    body["comment"] = A_MARK
    a.silence_id = (await _ok(await call(a, "post", "/api/alerts/silences", body=body), 201))["id"]
    body = {"agent": A_AGENT, "objective": 0.99}
    await _ok(await call(a, "put", f"/api/slos/{SLO}", body=body))
    point = {"name": METRIC, "value": A_VALUE, "agent": A_AGENT, "labels": {"mark": A_MARK}}
    point["at"] = w.api.clock.t - 30  # inside the rules' windows, which end now
    await _ok(await call(a, "post", "/api/metrics/advanced", body={"points": [point]}), 202)
    body = {"value": 5, "agent": A_AGENT}
    await _ok(await call(a, "put", f"/api/metrics/advanced/thresholds/{METRIC}", body=body))
    usage = {"tenant": a.name, "agent": A_AGENT, "model": MODEL, "input_tokens": 1000}
    usage["output_tokens"] = 500
    await _ok(await call(a, "post", "/api/cost/usage", body={"usage": [usage]}), 202)
    await _ok(await api.client.put(f"/api/cost/budgets/{a.name}", json={"amount": 100}))
    # A's rule, its SLO's burn rate and its threshold fire on A's own data
    await api.observe.alerts.evaluate()
    active = await _ok(await call(a, "get", "/api/alerts/active"))
    assert {x["labels"]["agent"] for x in active} == {A_AGENT}
    assert {x["state"] for x in active} == {"firing"}
    assert {x["rule"] for x in active} == {RULE, f"SLOBurn:{SLO}", f"threshold:{METRIC}"}
    a.alert_id = next(x["id"] for x in active if x["rule"] == RULE)


async def _snapshot_a(w: World) -> dict[str, Any]:
    """Everything A can read about its own objects (and the system's view of tenant A)."""
    a = w.a
    reads = [
        "/api/tenant",
        "/api/keys",
        *(f"/api/keys/{k}" for k in a.key_ids),
        "/api/publisher-keys",
        f"/api/publisher-keys/{w.publisher_keyid}",
        "/api/trust-roots",
        "/api/trust-roots/1",
        "/api/templates",
        f"/api/templates/{TEMPLATE}",
        *(f"/api/templates/{TEMPLATE}/{v}" for v in A_VERSIONS),
        f"/api/templates/{TEMPLATE}/tags/{TAG}",
        "/api/policies",
        f"/api/policies/{POLICY}",
        f"/api/policies/{POLICY}/versions",
        "/api/agents",
        f"/api/agents/{AGENT}",
        "/api/audit?limit=10000",
        "/api/secrets",
        f"/api/secrets/{SECRET}",
        "/api/privacy/requests",
        f"/api/privacy/consents?subject={SUBJECT}",
    ]
    reads += [
        "/api/alerts/rules",
        f"/api/alerts/rules/{RULE}",
        f"/api/alerts/rules/{quote('threshold:' + METRIC)}",
        "/api/alerts/active",
        f"/api/alerts/{a.alert_id}",
        "/api/alerts/history?since=0",
        "/api/alerts/stats?since=0",
        "/api/alerts/silences",
        "/api/alerts/channels",
        f"/api/alerts/channels/{CHANNEL}",
        "/api/slos",
        f"/api/slos/{SLO}",
        "/api/metrics/advanced",
        _with("/api/metrics/advanced", _range(w, name=METRIC, by="mark")),
        "/api/metrics/advanced/thresholds",
        _with("/api/metrics/summary", _range(w, agent=A_AGENT)),
        _with("/api/metrics/agents", _range(w)),
        _with("/api/cost", _range(w, by="model")),
        "/api/cost/budgets",
    ]
    snap: dict[str, Any] = {}
    # independent reads, concurrently (this runs after every one of B's changes)
    answers = await asyncio.gather(*(w.call(a, "get", url) for url in reads))
    for url, answer in zip(reads, answers, strict=True):
        snap[url] = await _ok(answer)
    r = await w.api.client.get(f"/api/tenants/{a.id}")  # as the system principal
    snap["system:tenant"] = await _ok(r)
    r = await w.call(a, "get", f"/api/templates/{TEMPLATE}/resolve", query={"ref": TAG})
    snap["resolve:stable"] = await _ok(r)
    # A's replicas: which processes run (their uptime and CPU figures move on by themselves)
    r = await w.call(a, "get", f"/api/agents/{WORKER}/replicas")
    snap["replicas"] = sorted((x["id"], x["pid"], x["state"]) for x in (await _ok(r))["replicas"])
    return snap


async def _assert_a_unchanged(w: World, after: str) -> None:
    now = await _snapshot_a(w)
    for k, v in w.a_snapshot.items():
        assert now[k] == v, f"tenant A's {k} changed after {after}"


# --- object operations: B with A's identifiers gets 404 ---------------------------------------


def _tmpl(w: World, **extra: str) -> dict[str, str]:
    return {"name": TEMPLATE, **extra}


OBJECT: dict[Op, Callable[[World], list[Call]]] = {
    ("get", "/api/tenants/{tenant_id}"): lambda w: [Call({"tenant_id": w.a.id})],
    ("patch", "/api/tenants/{tenant_id}"): lambda w: [
        Call({"tenant_id": w.a.id}, body={"display_name": "owned"}),
        Call({"tenant_id": w.a.id}, body={"disabled": True}),
    ],
    ("delete", "/api/tenants/{tenant_id}"): lambda w: [Call({"tenant_id": w.a.id})],
    ("post", "/api/tenants/{tenant_id}/keys"): lambda w: [
        Call({"tenant_id": w.a.id}, body={"name": "evil", "roles": ["admin"]})
    ],
    ("get", "/api/keys/{key_id}"): lambda w: [Call({"key_id": k}) for k in w.a.key_ids],
    ("delete", "/api/keys/{key_id}"): lambda w: [Call({"key_id": k}) for k in w.a.key_ids],
    ("post", "/api/keys/{key_id}/rotate"): lambda w: [
        Call({"key_id": k}, body={"overlap": 0}) for k in w.a.key_ids
    ],
    ("get", "/api/templates/{name}"): lambda w: [Call(_tmpl(w))],
    ("get", "/api/templates/{name}/resolve"): lambda w: [
        Call(_tmpl(w), query={"ref": ref})
        for ref in ("*", "^1", "1.2.3", TAG, "latest", *w.a.digests)
    ],
    ("put", "/api/templates/{name}/tags/{tag}"): lambda w: (
        [Call(_tmpl(w, tag=TAG), body={"target": t}) for t in ("1.2.3", *w.a.digests)]
        + [Call(_tmpl(w, tag="canary"), body={"target": "1.3.0"})]
    ),
    ("get", "/api/templates/{name}/tags/{tag}"): lambda w: [Call(_tmpl(w, tag=TAG))],
    ("post", "/api/templates/{name}/tags/{tag}/rollback"): lambda w: [
        Call(_tmpl(w, tag=TAG), body={}),
        Call(_tmpl(w, tag=TAG), body={"to": "1.2.3"}),
        Call(_tmpl(w, tag=TAG), body={"to": w.a.digests[0]}),
    ],
    ("get", "/api/templates/{name}/{version}"): lambda w: [
        Call(_tmpl(w, version=v)) for v in (*A_VERSIONS, *w.a.digests)
    ],
    ("post", "/api/templates/{name}/{version}/yank"): lambda w: [
        Call(_tmpl(w, version=v), body={"yanked": y}) for v in A_VERSIONS for y in (True, False)
    ],
    ("post", "/api/templates/{name}/{version}/deprecate"): lambda w: [
        Call(_tmpl(w, version=v), body={"message": m}) for v in A_VERSIONS for m in ("x", None)
    ],
    ("get", "/api/publisher-keys/{keyid}"): lambda w: [Call({"keyid": w.publisher_keyid})],
    ("delete", "/api/publisher-keys/{keyid}"): lambda w: [Call({"keyid": w.publisher_keyid})],
    ("get", "/api/trust-roots/{version}"): lambda w: [Call({"version": "1"})],
    ("get", "/api/policies/{name}"): lambda w: [Call({"name": POLICY})],
    ("delete", "/api/policies/{name}"): lambda w: [Call({"name": POLICY})],
    ("get", "/api/policies/{name}/versions"): lambda w: [Call({"name": POLICY})],
    ("get", "/api/policies/{name}/versions/{version}"): lambda w: [
        Call({"name": POLICY, "version": v}) for v in ("1", "2")
    ],
    ("post", "/api/policies/{name}/activate"): lambda w: [
        Call({"name": POLICY}, body={"version": v}) for v in (1, 2)
    ],
    ("get", "/api/agents/{name}"): lambda w: [Call({"name": AGENT})],
    ("patch", "/api/agents/{name}"): lambda w: [
        Call({"name": AGENT}, body={"replicas": 0}),
        Call({"name": AGENT}, body={"params": {"model": "x"}, "expected_revision": 1}),
        Call({"name": AGENT}, body={"template": f"{TEMPLATE}@1.2.3"}),
    ],
    ("delete", "/api/agents/{name}"): lambda w: [Call({"name": AGENT})],
    ("get", "/api/secrets/{name}"): lambda w: [Call({"name": SECRET})],
    ("delete", "/api/secrets/{name}"): lambda w: [Call({"name": SECRET})],
    ("get", "/api/state/agents/{name}"): lambda w: [
        Call({"name": AGENT}),
        Call({"name": AGENT}, query={"at": "2100-01-01T00:00Z"}),
    ],
    ("post", "/api/state/restore"): lambda w: [
        Call({}, body={"at": 0, "agent": AGENT}),
        Call({}, body={"at": "2100-01-01T00:00Z", "agent": AGENT}),
    ],
    ("get", "/api/privacy/requests/{request_id}"): lambda w: [
        Call({"request_id": w.a.privacy_request_id})
    ],
    ("post", "/api/privacy/requests/{request_id}/process"): lambda w: [
        Call({"request_id": w.a.privacy_request_id})
    ],
    ("get", "/api/privacy/requests/{request_id}/export"): lambda w: [
        Call({"request_id": w.a.privacy_request_id})
    ],
    ("get", "/api/backup/{backup_id}"): lambda w: [Call({"backup_id": BACKUP})],
    ("post", "/api/backup/{backup_id}/verify"): lambda w: [Call({"backup_id": BACKUP})],
    ("post", "/api/secrets/{name}/rotate"): lambda w: [
        Call({"name": SECRET}, body={"value": "stolen"}),
        Call({"name": SECRET}, body={}),
    ],
    ("get", "/api/agents/{name}/replicas"): lambda w: [Call({"name": n}) for n in (AGENT, WORKER)],
    ("post", "/api/agents/{name}/scale"): lambda w: [
        Call({"name": n}, body={"replicas": r}) for n in (AGENT, WORKER) for r in (0, 2)
    ],
    ("get", "/api/alerts/rules/{name}"): lambda w: [
        Call({"name": n}) for n in (RULE, f"threshold:{METRIC}")
    ],
    ("delete", "/api/alerts/rules/{name}"): lambda w: [
        Call({"name": n}) for n in (RULE, f"threshold:{METRIC}")
    ],
    ("get", "/api/alerts/channels/{name}"): lambda w: [Call({"name": CHANNEL})],
    ("delete", "/api/alerts/channels/{name}"): lambda w: [Call({"name": CHANNEL})],
    ("post", "/api/alerts/channels/{name}/test"): lambda w: [Call({"name": CHANNEL})],
    ("delete", "/api/alerts/silences/{silence_id}"): lambda w: [
        Call({"silence_id": w.a.silence_id})
    ],
    ("get", "/api/alerts/{alert_id}"): lambda w: [Call({"alert_id": w.a.alert_id})],
    ("post", "/api/alerts/{alert_id}/ack"): lambda w: [
        Call({"alert_id": w.a.alert_id}),
        Call({"alert_id": w.a.alert_id}, body={"comment": "mine now"}),
    ],
    ("get", "/api/slos/{name}"): lambda w: [Call({"name": SLO})],
    ("delete", "/api/slos/{name}"): lambda w: [Call({"name": SLO})],
}


async def _probe_objects(w: World) -> int:
    n = 0
    wrong: list[str] = []  # every offending call at once, not just the first
    for (method, path), calls in OBJECT.items():
        for c in calls(w):
            r = await w.call(w.b, method, _url(path, c.path), query=c.query, body=c.body)
            try:
                _is_problem(r, 404)
            except AssertionError as e:
                wrong.append(str(e).splitlines()[0])
            if method != "get":
                await _assert_a_unchanged(w, f"{method.upper()} {r.request.url} as B")
            n += 1
        w.covered.add((method, path))
    assert not wrong, "B reached A's objects:\n" + "\n".join(wrong)
    return n


# --- list / search / query operations: nothing of A's in B's answers --------------------------


async def _lists_plain(w: World, op: Op, queries: list[dict[str, str]]) -> None:
    method, path = op
    for q in queries:
        _no_leak(w, await w.call(w.b, method, path, query=q))


async def _list_custom(w: World) -> None:
    # B's own points of the same metric (once B has some) are B_VALUE; A's never show
    queries = [{}] + [
        _range(w, name=METRIC, **q)
        for q in (
            {},
            {"agg": "max"},
            {"agg": "last", "by": "agent"},
            {"agg": "max", "by": "mark"},
            {"agent": A_AGENT, "agg": "max"},
            {"label.mark": A_MARK},
            {"agg": "max", "step": "60"},
        )
    ]
    for q in queries:
        r = await w.call(w.b, "get", "/api/metrics/advanced", query=q)
        _no_leak(w, r)
        for res in r.json().get("results", []):
            values = [res["value"]] if "value" in res else [v for _, v in res["points"]]
            assert {v for v in values if v is not None} <= {B_VALUE}, f"{q}: {res}"


async def _export_custom(w: World) -> None:
    for fmt in ("jsonl", "csv"):
        for q in ({"agg": "max"}, {"agg": "max", "by": "agent,mark"}):
            query = _range(w, name=METRIC, format=fmt, **q)
            r = await w.call(w.b, "get", "/api/metrics/advanced/export", query=query)
            _no_leak(w, r)
            if fmt == "jsonl":
                assert {orjson.loads(x)["value"] for x in r.text.splitlines()} <= {B_VALUE}


async def _traffic_summary(w: World) -> None:
    # B has no traffic: whatever B asks for counts no request (A's 100 stay A's)
    for q in ({}, {"agent": A_AGENT}, {"agent": A_AGENT, "route": "r"}, {"agent": "fleet"}):
        r = await w.call(w.b, "get", "/api/metrics/summary", query=_range(w, **q))
        _no_leak_but_asked(w, r, q)
        assert r.json()["requests"] == 0, f"{q}: {r.text}"


async def _traffic_series(w: World) -> None:
    for q in ({}, {"agent": A_AGENT}, {"agent": "fleet"}):
        r = await w.call(w.b, "get", "/api/metrics/series", query=_range(w, **q))
        _no_leak_but_asked(w, r, q)
        assert all(p["requests"] == 0 for p in r.json()["points"]), f"{q}: {r.text}"


def _no_leak_but_asked(w: World, r: httpx.Response, q: dict[str, str]) -> None:
    """`_no_leak`, except for the agent name B itself put in the query (answers echo it)."""
    asked = q.get("agent")
    if asked is None:
        _no_leak(w, r)
        return
    doc = r.json()
    assert doc.pop("agent") == asked
    _no_leak(w, httpx.Response(r.status_code, json=doc, request=r.request))


async def _system_monitoring(w: World) -> None:
    # the host and its processes are the installation's: a tenant key sees neither
    r = await w.call(w.b, "get", "/api/system/monitoring")
    _no_leak(w, r)
    doc = r.json()
    assert doc["host"] is None and doc["processes"] == [], r.text


async def _list_templates(w: World) -> None:
    queries = [
        {},
        {"name": TEMPLATE},
        {"capability": "text.summarize"},
        {"limit": "1000", "offset": "0"},
    ]
    await _lists_plain(w, ("get", "/api/templates"), queries)
    b_keys = {f"{TEMPLATE}@{v['version']}" for v in await _b_versions(w)}
    for q in (TEMPLATE, "summarises documents", A_MARK, "text.summarize"):
        for query in ({"q": q}, {"q": q, "capability": "text.summarize"}):
            r = await w.call(w.b, "get", "/api/templates", query=query)
            _no_leak(w, r)
            hits = {h["key"] for h in r.json()}
            assert hits <= b_keys, f"search {query} as B found {hits - b_keys}"


async def _b_versions(w: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await _ok(await w.call(w.b, "get", "/api/templates"))
    return rows


def _b_entries(w: World, entries: list[dict[str, Any]], where: str) -> None:
    for e in entries:
        assert e["tenant_id"] == w.b.id, f"{where} shows another tenant's entry {e}"
        assert e["seq"] not in w.a_audit_seqs, f"{where} shows A's entry {e}"
        assert e["actor"] not in {f"key:{k}" for k in w.a.key_ids}, f"{where}: {e}"


def _audit_queries(w: World) -> list[dict[str, str]]:
    return [
        {},
        {"actor": f"key:{w.a.key_ids[0]}"},
        {"target": f"agent:{AGENT}"},
        {"action": "template.publish"},
        {"since": "0", "until": "1e12"},
    ]


async def _list_audit(w: World) -> None:
    for q in [*_audit_queries(w), {"after": "0", "limit": "10000"}]:
        r = await w.call(w.b, "get", "/api/audit", query=q)
        assert r.status_code == 200, r.text
        _b_entries(w, r.json(), f"GET /api/audit {q}")
    r = await w.call(w.b, "get", "/api/audit", query={"actor": f"key:{w.a.key_ids[0]}"})
    assert r.json() == []
    _is_problem(await w.call(w.b, "get", "/api/audit", query={"all": "1"}), 403)


async def _export_audit(w: World) -> None:
    for q in _audit_queries(w):
        r = await w.call(w.b, "get", "/api/audit/export", query=q)
        assert r.status_code == 200, r.text
        _b_entries(w, [orjson.loads(x) for x in r.text.splitlines()], f"export {q}")
    _is_problem(await w.call(w.b, "get", "/api/audit/export", query={"all": "true"}), 403)


async def _dry_run(w: World) -> None:
    # A's policy would deny 1000 replicas with A's mark; B's evaluation must not see it, even
    # when the input claims to be tenant A
    inputs: list[dict[str, Any]] = [
        {"stage": "create", "input": {"request": {"replicas": 1000}}},
        {"stage": "create", "input": {"request": {"replicas": 1000}, "tenant": {"id": w.a.id}}},
        {"stage": "deploy", "input": {"tenant": {"id": w.a.id, "name": w.a.name}}},
    ]
    for body in inputs:
        r = await w.call(w.b, "post", "/api/policies/dry-run", body=body)
        _no_leak(w, r)
        rules = r.json()["rules"]
        assert all(B_MARK not in x for x in rules)  # B's own rule may fire once it exists


LISTS: dict[Op, Callable[[World], Awaitable[None]]] = {
    ("get", "/api/keys"): lambda w: _lists_plain(w, ("get", "/api/keys"), [{}]),
    ("get", "/api/templates"): _list_templates,
    ("get", "/api/publisher-keys"): lambda w: _lists_plain(w, ("get", "/api/publisher-keys"), [{}]),
    ("get", "/api/trust-roots"): lambda w: _lists_plain(w, ("get", "/api/trust-roots"), [{}]),
    ("get", "/api/policies"): lambda w: _lists_plain(
        w, ("get", "/api/policies"), [{}, {"active": "true"}, {"active": "0"}]
    ),
    ("get", "/api/agents"): lambda w: _lists_plain(
        w, ("get", "/api/agents"), [{}, {"limit": "10000", "offset": "0"}]
    ),
    ("get", "/api/audit"): _list_audit,
    ("get", "/api/audit/export"): _export_audit,
    ("post", "/api/policies/dry-run"): _dry_run,
    ("get", "/api/secrets"): lambda w: _lists_plain(w, ("get", "/api/secrets"), [{}]),
    ("get", "/api/state/agents"): lambda w: _lists_plain(
        w, ("get", "/api/state/agents"), [{}, {"at": "2100-01-01T00:00Z"}]
    ),
    ("get", "/api/privacy/requests"): lambda w: _lists_plain(
        w, ("get", "/api/privacy/requests"), [{}, {"status": "received"}, {"overdue": "1"}]
    ),
    ("get", "/api/privacy/consents"): lambda w: _lists_plain(
        w, ("get", "/api/privacy/consents"), [{}, {"subject": SUBJECT}, {"purpose": "newsletter"}]
    ),
    ("get", "/api/privacy/retention"): lambda w: _lists_plain(
        w, ("get", "/api/privacy/retention"), [{}]
    ),
    ("get", "/api/secrets/-/rotation"): lambda w: _lists_plain(
        w, ("get", "/api/secrets/-/rotation"), [{}]
    ),
    ("get", "/api/alerts/rules"): lambda w: _lists_plain(w, ("get", "/api/alerts/rules"), [{}]),
    ("get", "/api/alerts/active"): lambda w: _lists_plain(w, ("get", "/api/alerts/active"), [{}]),
    ("get", "/api/alerts/history"): lambda w: _lists_plain(
        w, ("get", "/api/alerts/history"), [{}, {"since": "0", "limit": "5000"}]
    ),
    ("get", "/api/alerts/stats"): lambda w: _lists_plain(
        w, ("get", "/api/alerts/stats"), [{}, {"since": "0"}]
    ),
    ("get", "/api/alerts/silences"): lambda w: _lists_plain(
        w, ("get", "/api/alerts/silences"), [{}, {"expired": "1"}]
    ),
    ("get", "/api/alerts/channels"): lambda w: _lists_plain(
        w, ("get", "/api/alerts/channels"), [{}]
    ),
    ("get", "/api/slos"): lambda w: _lists_plain(w, ("get", "/api/slos"), [{}]),
    ("get", "/api/cost"): lambda w: _lists_plain(
        w,
        ("get", "/api/cost"),
        [
            _range(w, by=by, tenant=t)
            for by in ("agent", "tenant", "model")
            for t in ("alphaco", "")
        ],
    ),
    ("get", "/api/cost/budgets"): lambda w: _lists_plain(w, ("get", "/api/cost/budgets"), [{}]),
    ("get", "/api/metrics/advanced"): _list_custom,
    ("get", "/api/metrics/advanced/export"): _export_custom,
    ("get", "/api/metrics/advanced/thresholds"): lambda w: _lists_plain(
        w, ("get", "/api/metrics/advanced/thresholds"), [{}]
    ),
    ("get", "/api/metrics/summary"): _traffic_summary,
    ("get", "/api/metrics/series"): _traffic_series,
    ("get", "/api/metrics/agents"): lambda w: _lists_plain(
        w, ("get", "/api/metrics/agents"), [_range(w)]
    ),
    ("get", "/api/health/score"): lambda w: _lists_plain(w, ("get", "/api/health/score"), [{}]),
    ("get", "/api/system/monitoring"): _system_monitoring,
}


async def _probe_lists(w: World) -> None:
    for op, probe in LISTS.items():
        await probe(w)
        w.covered.add(op)


# --- create operations: B's objects land in B only --------------------------------------------


async def _create_key(w: World) -> None:
    b = w.b
    out = await _ok(
        await w.call(b, "post", "/api/keys", body={"name": "ci", "roles": ["viewer"]}), 201
    )
    assert out["key"]["tenant_id"] == b.id
    r = await w.call(b, "get", f"/api/keys/{out['key']['id']}")
    assert (await _ok(r))["tenant_id"] == b.id
    # the new key reads B's tenant, and A's key list does not grow
    r = await w.api.client.get("/api/tenant", headers=w.api.as_(out["secret"]))
    assert (await _ok(r))["id"] == b.id
    _is_problem(await w.call(w.a, "get", f"/api/keys/{out['key']['id']}"), 404)


async def _create_publisher_key(w: World) -> None:
    b = w.b
    body = {"public_key": b.keypair.public_b64(), "valid_from": 0}
    out = await _ok(await w.call(b, "post", "/api/publisher-keys", body=body), 201)
    assert out["keyid"] == key_id(b.keypair.public_key)
    _is_problem(await w.call(w.a, "get", f"/api/publisher-keys/{out['keyid']}"), 404)


async def _create_template(w: World) -> None:
    b, a, clock = w.b, w.a, w.api.clock
    # A's own signed document is not trusted in B (A's publisher key is A's alone)
    a_doc = template_doc(
        TEMPLATE, A_VERSIONS[0], description=f"{TEMPLATE} agent {A_MARK} summarises"
    )
    r = await w.call(b, "post", "/api/templates", body=signed(a_doc, a.keypair, clock.t))
    assert r.status_code in (403, 422), r.text
    assert await _b_versions(w) == []
    # the same name as A's template, B's own key and content
    doc = template_doc(TEMPLATE, B_VERSION, description=f"{TEMPLATE} agent {B_MARK} summarises")
    out = await _ok(
        await w.call(b, "post", "/api/templates", body=signed(doc, b.keypair, clock.t)), 201
    )
    assert out["template"]["tenant_id"] == b.id
    b.digests.append(out["template"]["digest"])
    assert [t["version"] for t in await _b_versions(w)] == [B_VERSION]
    r = await w.call(b, "get", f"/api/templates/{TEMPLATE}/resolve", query={"ref": "*"})
    assert (await _ok(r))["template"]["version"] == B_VERSION
    r = await w.call(a, "get", f"/api/templates/{TEMPLATE}/resolve", query={"ref": "*"})
    assert (await _ok(r))["template"]["version"] == A_VERSIONS[-1]
    _is_problem(await w.call(a, "get", f"/api/templates/{TEMPLATE}/{B_VERSION}"), 404)
    _is_problem(await w.call(a, "get", f"/api/templates/{TEMPLATE}/{b.digests[0]}"), 404)


async def _create_trust_root(w: World) -> None:
    b, kp = w.b, w.b.keypair
    kid = key_id(kp.public_key)
    root = TrustRoot.create(1, [TrustedKey(kid, kp.public_key, 0.0, None)], issued_at=w.api.clock.t)
    out = await _ok(await w.call(b, "post", "/api/trust-roots", body={"body": root.to_json()}), 201)
    assert out["version"] == 1 and kid in out["body"]["keys"]
    r = await w.call(b, "get", "/api/trust-roots/1")
    assert kid in (await _ok(r))["body"]["keys"]


async def _create_policy(w: World) -> None:
    b = w.b
    out = await _ok(
        await w.call(b, "post", "/api/policies", body={"name": POLICY, "rego": _rego(B_MARK)}), 201
    )
    assert out["version"] == 1 and B_MARK in out["rego"]
    dry = {"stage": "create", "input": {"request": {"replicas": 1000}}}
    r = await w.call(b, "post", "/api/policies/dry-run", body=dry)
    res = await _ok(r)
    assert res["allow"] is False and B_MARK in r.text and A_MARK not in r.text
    r = await w.call(w.a, "post", "/api/policies/dry-run", body=dry)
    assert A_MARK in r.text and B_MARK not in r.text


async def _create_agent(w: World) -> None:
    b = w.b
    # B cannot create from A's versions (B has only 9.0.0)
    for ref in (f"{TEMPLATE}@^1", f"{TEMPLATE}@{A_VERSIONS[0]}", f"{TEMPLATE}@{w.a.digests[0]}"):
        body = {"template": ref, "params": {"model": "m"}}
        _is_problem(await w.call(b, "post", "/api/agents", body=body), 404)
    body = {"template": f"{TEMPLATE}@^9", "params": {"model": B_MARK}}
    out = await _ok(await w.call(b, "post", "/api/agents", body=body), 201)
    assert out["tenant"] == b.name and out["name"] == AGENT
    assert out["template"]["digest"] == b.digests[0] and out["id"] != w.a.agent_id
    got = await _ok(await w.call(b, "get", f"/api/agents/{AGENT}"))
    assert got["id"] == out["id"]
    got = await _ok(await w.call(w.a, "get", f"/api/agents/{AGENT}"))
    assert got["id"] == w.a.agent_id


async def _create_secret(w: World) -> None:
    body = {"name": SECRET, "value": "value-" + B_MARK, "description": B_MARK}
    out = await _ok(await w.call(w.b, "post", "/api/secrets", body=body), 201)
    assert out["tenant_id"] == w.b.id
    got = await _ok(await w.call(w.a, "get", f"/api/secrets/{SECRET}"))
    assert got["description"] == A_MARK


async def _create_privacy(w: World) -> None:
    body = {"subject": SUBJECT, "kind": "access", "note": B_MARK}
    out = await _ok(await w.call(w.b, "post", "/api/privacy/requests", body=body), 201)
    assert out["tenant_id"] == w.b.id
    _is_problem(await w.call(w.a, "get", f"/api/privacy/requests/{out['id']}"), 404)


async def _create_consent(w: World) -> None:
    body = {"subject": SUBJECT, "purpose": "newsletter", "granted": False, "source": B_MARK}
    out = await _ok(await w.call(w.b, "post", "/api/privacy/consents", body=body), 201)
    assert out["tenant_id"] == w.b.id
    mine = await _ok(await w.call(w.b, "get", "/api/privacy/consents", query={"subject": SUBJECT}))
    assert [c["source"] for c in mine] == [B_MARK]


async def _create_rules(w: World) -> None:
    b = w.b
    cond = {"metric": "error_rate", "op": ">", "threshold": 0.05, "window": 300}
    # a rule on A's agent is refused (by POST and PUT, and as a threshold)
    aimed = {"name": "aimed-at-a", "conditions": [cond], "agent": A_AGENT}
    _is_problem(await w.call(b, "post", "/api/alerts/rules", body=aimed), 422)
    _is_problem(await w.call(b, "put", "/api/alerts/rules/aimed-at-a", body=aimed), 422)
    path = f"/api/metrics/advanced/thresholds/{METRIC}"
    _is_problem(await w.call(b, "put", path, body={"value": 1, "agent": A_AGENT}), 422)
    # the same name as A's rule, on every agent of B's; one on B's fleet
    rules: list[dict[str, Any]] = [
        {"name": RULE, "conditions": [cond], "annotations": {"summary": B_MARK}},
        {
            "name": "fleet-peek",
            "conditions": [{"metric": "requests", "op": ">", "threshold": 0, "window": 300}],
            "agent": "fleet",
        },
    ]
    for rule in rules:
        out = await _ok(await w.call(b, "post", "/api/alerts/rules", body=rule), 201)
        assert out["name"] == rule["name"]
    # evaluated over everybody's traffic: none of B's rules sees A's agent or the fleet's
    await w.api.observe.alerts.evaluate()
    assert await _ok(await w.call(b, "get", "/api/alerts/active")) == []
    got = await _ok(await w.call(b, "get", f"/api/alerts/rules/{RULE}"))
    assert got["annotations"] == {"summary": B_MARK}


async def _create_silence(w: World) -> None:
    # B silences every agent: B's own silence, A's alerts go on firing unsilenced
    body = {"matchers": [{"name": "agent", "value": ".*", "regex": True}], "duration": 3600}
    out = await _ok(await w.call(w.b, "post", "/api/alerts/silences", body=body), 201)
    assert out["id"] != w.a.silence_id
    mine = await _ok(await w.call(w.b, "get", "/api/alerts/silences"))
    assert [x["id"] for x in mine] == [out["id"]]


async def _create_points(w: World) -> None:
    b = w.b
    point = {"name": METRIC, "value": B_VALUE, "agent": A_AGENT}
    r = await w.call(b, "post", "/api/metrics/advanced", body={"points": [point]})
    _is_problem(r, 422)
    point = {"name": METRIC, "value": B_VALUE, "agent": B_AGENT, "labels": {"mark": B_MARK}}
    point["at"] = w.api.clock.t - 30
    await _ok(await w.call(b, "post", "/api/metrics/advanced", body={"points": [point]}), 202)
    r = await w.call(b, "get", "/api/metrics/advanced", query=_range(w, name=METRIC, agg="max"))
    assert [x["value"] for x in (await _ok(r))["results"]] == [B_VALUE]


async def _create_usage(w: World) -> None:
    b = w.b
    usage = {"agent": B_AGENT, "model": "m", "input_tokens": 1, "output_tokens": 1}
    for tenant in (w.a.name, ""):
        body = {"usage": [{**usage, "tenant": tenant}]}
        _is_problem(await w.call(b, "post", "/api/cost/usage", body=body), 422)
    body = {"usage": [{**usage, "tenant": b.name}]}
    await _ok(await w.call(b, "post", "/api/cost/usage", body=body), 202)
    r = await w.call(b, "get", "/api/cost", query=_range(w, by="model"))
    assert [x["model"] for x in (await _ok(r))["items"]] == ["m"]


# in order: a template needs B's publisher key, the agent B's template
CREATE: dict[Op, Callable[[World], Awaitable[None]]] = {
    ("post", "/api/keys"): _create_key,
    ("post", "/api/publisher-keys"): _create_publisher_key,
    ("post", "/api/templates"): _create_template,
    ("post", "/api/trust-roots"): _create_trust_root,
    ("post", "/api/policies"): _create_policy,
    ("post", "/api/agents"): _create_agent,
    ("post", "/api/secrets"): _create_secret,
    ("post", "/api/privacy/requests"): _create_privacy,
    ("post", "/api/privacy/consents"): _create_consent,
    ("post", "/api/alerts/rules"): _create_rules,
    ("post", "/api/alerts/silences"): _create_silence,
    ("post", "/api/metrics/advanced"): _create_points,
    ("post", "/api/cost/usage"): _create_usage,
}


async def _probe_changes(w: World, table: dict[Op, Callable[[World], Awaitable[None]]]) -> None:
    """Run each of B's creates (or upserts) in order; A's state is unchanged after each."""
    for (method, path), change in table.items():
        await change(w)
        await _assert_a_unchanged(w, f"{method.upper()} {path} as B")
        w.covered.add((method, path))


# --- upserts: PUT by name creates or replaces in the caller's tenant -------------------------


async def _upsert_rule(w: World) -> None:
    cond = {"metric": "requests", "op": ">", "threshold": 1e9, "window": 300}
    body = {"conditions": [cond], "annotations": {"summary": B_MARK + "-put"}}
    out = await _ok(await w.call(w.b, "put", f"/api/alerts/rules/{RULE}", body=body))
    assert out["annotations"] == {"summary": B_MARK + "-put"}


async def _upsert_channel(w: World) -> None:
    body = {"kind": "webhook", "config": {"url": f"http://127.0.0.1:9/{B_MARK}"}}
    await _ok(await w.call(w.b, "put", f"/api/alerts/channels/{CHANNEL}", body=body))
    got = await _ok(await w.call(w.b, "get", "/api/alerts/channels"))
    assert [c["name"] for c in got] == [CHANNEL]


async def _upsert_slo(w: World) -> None:
    # an SLO over A's agent is refused; over B's own it is B's
    body = {"agent": A_AGENT, "objective": 0.5}
    _is_problem(await w.call(w.b, "put", f"/api/slos/{SLO}", body=body), 422)
    body = {"agent": B_AGENT, "objective": 0.5}
    await _ok(await w.call(w.b, "put", f"/api/slos/{SLO}", body=body))
    got = await _ok(await w.call(w.b, "get", "/api/slos"))
    assert len(got) == 1 and A_AGENT not in str(got)


async def _upsert_threshold(w: World) -> None:
    body = {"value": 1, "agg": "max", "agent": B_AGENT}
    path = f"/api/metrics/advanced/thresholds/{METRIC}"
    out = await _ok(await w.call(w.b, "put", path, body=body))
    assert out["name"] == f"threshold:{METRIC}"
    # B's threshold reads B's metric only: A's 7777.25 does not make it fire, B's 3.0 does
    await w.api.observe.alerts.evaluate()
    r = await w.call(w.b, "get", "/api/alerts/active")
    _no_leak(w, r)
    assert [a["rule"] for a in r.json()] == [f"threshold:{METRIC}"], r.text


UPSERT: dict[Op, Callable[[World], Awaitable[None]]] = {
    ("put", "/api/alerts/rules/{name}"): _upsert_rule,
    ("put", "/api/alerts/channels/{name}"): _upsert_channel,
    ("put", "/api/slos/{name}"): _upsert_slo,
    ("put", "/api/metrics/advanced/thresholds/{name}"): _upsert_threshold,
}


# --- installation-wide facts: no tenant's, readable by any viewer -----------------------------

SHARED: dict[Op, Call] = {("get", "/api/runtime/capabilities"): Call({})}


async def _probe_shared(w: World) -> None:
    for (method, path), c in SHARED.items():
        _no_leak(w, await w.call(w.b, method, _url(path, c.path), query=c.query, body=c.body))
        w.covered.add((method, path))


# --- system-only and own-tenant operations ----------------------------------------------------

SYSTEM: dict[Op, Call] = {
    ("get", "/api/tenants"): Call({}),
    ("post", "/api/tenants"): Call({}, body={"name": "evil"}),
    ("get", "/api/audit/verify"): Call({}),
    ("get", "/api/secrets/-/kek"): Call({}),
    ("post", "/api/secrets/-/kek/rotate"): Call({}),
    ("post", "/api/secrets/-/kek/retire"): Call({}, body={"min_decryption_version": 1}),
    ("post", "/api/privacy/retention/run"): Call({}),
    ("get", "/api/backup"): Call({}),
    ("post", "/api/backup"): Call({}, body={}),
    ("get", "/api/backup/-/status"): Call({}),
    ("post", "/api/backup/-/prune"): Call({}),
    ("put", "/api/cost/budgets/{tenant}"): Call({"tenant": "alphaco"}, body={"amount": 1e9}),
    ("delete", "/api/cost/budgets/{tenant}"): Call({"tenant": "alphaco"}),
}


async def _probe_system(w: World) -> None:
    for (method, path), c in SYSTEM.items():
        r = await w.call(w.b, method, _url(path, c.path), query=c.query, body=c.body)
        _is_problem(r, 403)
        if method != "get":
            await _assert_a_unchanged(w, f"{method.upper()} {r.request.url} as B")
        w.covered.add((method, path))
    names = [t["name"] for t in await _ok(await w.api.client.get("/api/tenants"))]
    assert "evil" not in names


async def _own_tenant(w: World) -> None:
    r = await w.call(w.b, "get", "/api/tenant")
    assert (await _ok(r))["id"] == w.b.id
    _no_leak(w, r)
    # B's own tenant is still system-administered: no self-service change or delete
    _is_problem(await w.call(w.b, "patch", f"/api/tenants/{w.b.id}", body={"disabled": True}), 403)
    _is_problem(await w.call(w.b, "delete", f"/api/tenants/{w.b.id}"), 403)
    key = {"name": "self-issued", "roles": ["admin"]}
    _is_problem(await w.call(w.b, "post", f"/api/tenants/{w.b.id}/keys", body=key), 403)
    # nor does a tenant set its own budget
    budget = {"amount": 1e9}
    _is_problem(await w.call(w.b, "put", f"/api/cost/budgets/{w.b.name}", body=budget), 403)


OWN: dict[Op, Callable[[World], Awaitable[None]]] = {("get", "/api/tenant"): _own_tenant}


# --- the tests --------------------------------------------------------------------------------


def _document_ops() -> set[Op]:
    return {
        (method, path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete", "head", "options", "trace")
    }


def test_every_operation_is_classified() -> None:
    """Each operation of the OpenAPI document has exactly one isolation check here."""
    tables: list[set[Op]] = [
        set(OBJECT),
        set(LISTS),
        set(CREATE),
        set(UPSERT),
        set(SHARED),
        set(SYSTEM),
        set(OWN),
    ]
    classified: set[Op] = set().union(*tables)
    assert sum(len(t) for t in tables) == len(classified), "an operation is classified twice"
    ops = _document_ops()
    assert not ops - classified, (
        f"operations without a cross-tenant check: {sorted(ops - classified)}"
    )
    assert not classified - ops, f"classified but not in the document: {sorted(classified - ops)}"
    # an operation with a path parameter addresses an object (B must get 404 there), names one
    # to create in the caller's tenant (upsert), or is the system's (B gets 403)
    with_params = {op for op in ops if "{" in op[1]}
    addressed = set(OBJECT) | set(UPSERT) | set(SYSTEM)
    assert with_params <= addressed, sorted(with_params - addressed)


@pytest.mark.timeout(300)
async def test_cross_tenant_every_operation(api: Api) -> None:
    """B (admin of another tenant) can read, list, change or delete nothing of A's."""
    a_id, a_secret = await api.tenant_key("alphaco", ["admin"])
    b_id, b_secret = await api.tenant_key("betaco", ["admin"])
    a = Tenant(a_id, "alphaco", a_secret, crypto.generate_keypair())
    b = Tenant(b_id, "betaco", b_secret, crypto.generate_keypair())
    w = World(api, a, b)
    await _populate_a(w)
    w.a_snapshot = await _snapshot_a(w)
    w.a_audit_seqs = {e["seq"] for e in w.a_snapshot["/api/audit?limit=10000"]}
    assert len(w.a_audit_seqs) >= 10  # every creation above was audited

    for op, probe in OWN.items():
        await probe(w)
        w.covered.add(op)
    await _probe_system(w)
    await _probe_shared(w)
    probes = await _probe_objects(w)
    assert probes >= 40
    await _probe_lists(w)  # B has nothing yet
    await _probe_changes(w, CREATE)
    await _probe_changes(w, UPSERT)
    await _probe_lists(w)  # B has objects named like A's now
    await _assert_a_unchanged(w, "all of B's calls")

    assert w.covered == _document_ops()
    # A's tag still resolves for A (B's tag and rollback attempts went nowhere)
    r = await w.call(a, "get", f"/api/templates/{TEMPLATE}/resolve", query={"ref": TAG})
    assert (await _ok(r))["template"]["version"] == A_VERSIONS[-1]
    # B's failed attempts are audited in B's trail, never in A's
    r = await w.call(b, "get", "/api/audit", query={"action": "key.revoke", "limit": "1000"})
    outcomes = {e["outcome"] for e in await _ok(r)}
    assert outcomes == {"error:404"}
