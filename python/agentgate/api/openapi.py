"""The OpenAPI 3.1 document of the control-plane API, served at `/api/openapi.json`.

Body schemas come from the same pydantic models the handlers validate and serialise with
(`routes/_models.py`), so the document follows the code; the operation table below lists each
route with its success status. Every operation may also answer a problem+json (`default`).
"""

# ruff: noqa: E501  (the operation table reads best one route per line)

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agentgate.api import openapi_state as so
from agentgate.api.openapi_observe import OPS as OBSERVE_OPS
from agentgate.api.openapi_runtime import OPS as RUNTIME_OPS
from agentgate.api.openapi_security import OPS as SECURITY_OPS
from agentgate.api.routes import _models as m
from agentgate.api.routes import _observe_models as om
from agentgate.api.routes import _security_models as sm

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"

# (method, path, operation id, summary, request model, success status, response, query params)
# response: a model, [model] for an array, "ndjson", or None for an empty body.
_Q_PAGE = [("limit", "integer"), ("offset", "integer")]
_OPS: list[tuple[str, str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    ("get", "/api/tenants", "listTenants", "All tenants (system)", None, 200, [m.TenantOut], _Q_PAGE),
    ("post", "/api/tenants", "createTenant", "Create a tenant (system)", m.TenantCreate, 201, m.TenantOut, []),
    ("get", "/api/tenant", "getOwnTenant", "The caller's tenant", None, 200, m.TenantOut, []),
    ("get", "/api/tenants/{tenant_id}", "getTenant", "One tenant", None, 200, m.TenantOut, []),
    ("patch", "/api/tenants/{tenant_id}", "updateTenant", "Change a tenant (system)", m.TenantUpdate, 200, m.TenantOut, []),
    ("delete", "/api/tenants/{tenant_id}", "deleteTenant", "Delete a tenant (system)", None, 204, None, []),
    ("post", "/api/tenants/{tenant_id}/keys", "createTenantKey", "Issue an API key in a tenant (system; secret shown once)", m.KeyCreate, 201, m.KeyCreated, []),
    ("get", "/api/keys", "listKeys", "API keys of the tenant", None, 200, [m.KeyOut], []),
    ("post", "/api/keys", "createKey", "Create an API key (secret shown once)", m.KeyCreate, 201, m.KeyCreated, []),
    ("get", "/api/keys/{key_id}", "getKey", "One API key", None, 200, m.KeyOut, []),
    ("delete", "/api/keys/{key_id}", "revokeKey", "Revoke an API key", None, 200, m.KeyOut, []),
    ("post", "/api/keys/{key_id}/rotate", "rotateKey", "Rotate an API key", m.KeyRotate, 201, m.KeyRotated, []),
    ("get", "/api/templates", "listTemplates", "List versions, or search with q", None, 200, {"anyOf": [[m.TemplateOut], [m.SearchHit]]}, [("name", "string"), ("capability", "string"), ("q", "string"), *_Q_PAGE]),
    ("post", "/api/templates", "publishTemplate", "Publish a signed template version", m.TemplatePublish, 201, m.TemplatePublished, []),
    ("get", "/api/templates/{name}", "listTemplateVersions", "Versions of a template", None, 200, [m.TemplateOut], []),
    ("get", "/api/templates/{name}/resolve", "resolveTemplate", "Resolve a range, tag, version or digest", None, 200, m.TemplateResolved, [("ref", "string")]),
    ("put", "/api/templates/{name}/tags/{tag}", "setTag", "Point a tag at a version", m.TagSet, 200, m.TagOut, []),
    ("get", "/api/templates/{name}/tags/{tag}", "tagHistory", "A tag's history", None, 200, [m.TagMoveOut], []),
    ("post", "/api/templates/{name}/tags/{tag}/rollback", "rollbackTag", "Move a tag back", m.TagRollback, 200, m.TagOut, []),
    ("get", "/api/templates/{name}/{version}", "getTemplate", "One version (or sha256: digest)", None, 200, m.TemplateOut, []),
    ("post", "/api/templates/{name}/{version}/yank", "yankTemplate", "Yank or restore a version", m.Yank, 200, m.TemplateOut, []),
    ("post", "/api/templates/{name}/{version}/deprecate", "deprecateTemplate", "Deprecate a version", m.Deprecate, 200, m.TemplateOut, []),
    ("get", "/api/publisher-keys", "listPublisherKeys", "Publisher keys", None, 200, [m.PublisherKeyOut], []),
    ("post", "/api/publisher-keys", "addPublisherKey", "Register a publisher key", m.PublisherKeyCreate, 201, m.PublisherKeyOut, []),
    ("get", "/api/publisher-keys/{keyid}", "getPublisherKey", "One publisher key", None, 200, m.PublisherKeyOut, []),
    ("delete", "/api/publisher-keys/{keyid}", "revokePublisherKey", "Revoke a publisher key", None, 200, m.PublisherKeyOut, []),
    ("get", "/api/trust-roots", "listTrustRoots", "Trust-root versions", None, 200, [m.TrustRootOut], []),
    ("post", "/api/trust-roots", "addTrustRoot", "Add the next trust root", m.TrustRootCreate, 201, m.TrustRootOut, []),
    ("get", "/api/trust-roots/{version}", "getTrustRoot", "One trust-root version", None, 200, m.TrustRootOut, []),
    ("get", "/api/policies", "listPolicies", "Policy versions", None, 200, [m.PolicyOut], [("active", "string")]),
    ("post", "/api/policies", "addPolicy", "Add the next version of a policy", m.PolicyCreate, 201, m.PolicyOut, []),
    ("post", "/api/policies/dry-run", "dryRunPolicy", "Decision and the rules behind it", m.PolicyDryRun, 200, m.DryRunOut, []),
    ("get", "/api/policies/{name}", "getPolicy", "The active version", None, 200, m.PolicyOut, []),
    ("delete", "/api/policies/{name}", "deletePolicy", "Delete every version", None, 204, None, []),
    ("get", "/api/policies/{name}/versions", "listPolicyVersions", "All versions", None, 200, [m.PolicyOut], []),
    ("get", "/api/policies/{name}/versions/{version}", "getPolicyVersion", "One version", None, 200, m.PolicyOut, []),
    ("post", "/api/policies/{name}/activate", "activatePolicy", "Make a version active", m.PolicyActivate, 200, m.PolicyOut, []),
    ("get", "/api/agents", "listAgents", "Agents", None, 200, [m.AgentOut], _Q_PAGE),
    ("post", "/api/agents", "createAgent", "Create an agent from a template", m.AgentCreate, 201, m.AgentOut, []),
    ("get", "/api/agents/{name}", "getAgent", "One agent", None, 200, m.AgentOut, []),
    ("patch", "/api/agents/{name}", "updateAgent", "Change an agent", m.AgentUpdate, 200, m.AgentOut, []),
    ("delete", "/api/agents/{name}", "deleteAgent", "Start deleting an agent (routes leave at once, then it drains)", None, 202, m.AgentOut, []),
    ("get", "/api/audit", "queryAudit", "Audit entries", None, 200, [m.AuditOut], [("since", "number"), ("until", "number"), ("actor", "string"), ("target", "string"), ("action", "string"), ("after", "integer"), ("limit", "integer"), ("all", "string")]),
    ("get", "/api/audit/export", "exportAudit", "Audit entries as JSON lines", None, 200, "ndjson", [("since", "number"), ("until", "number"), ("actor", "string"), ("target", "string"), ("action", "string"), ("all", "string")]),
    ("get", "/api/audit/verify", "verifyAudit", "Verify the whole chain (system)", None, 200, m.AuditVerifyOut, []),
]  # fmt: skip


def _schema(resp: Any) -> dict[str, Any]:
    if isinstance(resp, list):
        return {"type": "array", "items": _schema(resp[0])}
    if isinstance(resp, dict):
        return {k: [_schema(x) for x in v] for k, v in resp.items()}
    assert isinstance(resp, type) and issubclass(resp, BaseModel)
    return {"$ref": _REF.format(model=resp.__name__)}


def _query(name: str, typ: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": typ}
    if name == "limit":
        schema.update(minimum=1, maximum=1000 if typ == "integer" else None)
        schema = {k: v for k, v in schema.items() if v is not None}
    elif typ == "integer":
        schema["minimum"] = 0
        schema["maximum"] = 2**53
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _operation(
    op_id: str, summary: str, path: str, req: Any, status: int, resp: Any, query: Any
) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
    params = [
        {"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for seg in path.split("/")
        if seg.startswith("{")
    ]
    params += [_query(n, t) for n, t in query]
    responses: dict[str, Any] = {}
    if resp is None:
        responses[str(status)] = {"description": "Done (no body)"}
    elif resp == "ndjson":
        responses[str(status)] = {
            "description": "One audit entry (AuditOut) per line",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    else:
        responses[str(status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": _schema(resp)}},
        }
    responses["default"] = {"description": "An RFC 9457 problem", "content": problem}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "parameters": params,
        "responses": responses,
    }
    if req is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(req)}},
        }
    return op


@lru_cache(maxsize=1)
def _cached() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (model, "validation") for model in m.REQUESTS + sm.REQUESTS + om.REQUESTS + so.REQUESTS
    ]
    models += [
        (model, "serialization")
        for model in m.RESPONSES + sm.RESPONSES + om.RESPONSES + so.RESPONSES
    ]
    _, defs = models_json_schema(models, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op_id, summary, req, status, resp, query in (
        _OPS + SECURITY_OPS + OBSERVE_OPS + so.OPS + RUNTIME_OPS
    ):
        paths.setdefault(path, {})[method] = _operation(
            op_id, summary, path, req, status, resp, query
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentgate control plane",
            "version": "1",
            "description": "Tenants, API keys, signed templates, policies, agents and audit. "
            "Times are UTC epoch seconds; ids are uuid4 hex. Errors are RFC 9457 "
            "problem+json.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once)."""
    return _cached()
