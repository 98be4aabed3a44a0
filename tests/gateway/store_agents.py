"""Agents created through the control plane's factory on a gateway's own store, as the API
would create them: a tenant, a signed published template, an API key."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from agentgate import crypto
from agentgate.policy import PolicyService
from agentgate.registry.service import RegistryService
from agentgate.registry.signing import key_id, sign_template
from agentgate.registry.template import parse_template
from agentgate.runtime import AgentFactory, ScopeAudit
from agentgate.store import AuditEntry, Store, TenantScope
from agentgate.tenancy import Principal, create_key

OPERATOR = Principal(tenant_id="", key_id="op", roles=frozenset({"operator"}))


def seal(e: AuditEntry) -> str:
    """The audit chain's seal of an entry."""
    return hashlib.sha256(f"{e.seq}|{e.prev_hash}|{e.action}".encode()).hexdigest()


def template(url: str) -> dict[str, Any]:
    """An `echo` template serving `url` behind a route that requires a key."""
    return {
        "name": "echo",
        "version": "1.0.0",
        "spec": {"kind": "http", "endpoints": [{"url": url}]},
        "routes": [{"match": {"path_prefix": "/"}, "strip_prefix": True, "auth": "required"}],
    }


async def prepare(store: Store, url: str) -> tuple[AgentFactory, TenantScope, str]:
    """Tenant `acme` with `echo@1.0.0` published for `url`; the factory, scope and a key."""
    t = await store.system.tenants.create("acme")
    scope = store.scoped(t.id)
    kp = crypto.generate_keypair()
    await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0.0)
    d = template(url)
    tpl = parse_template(d)
    env = sign_template(tpl.ref, tpl.digest, kp.private_key, signed_at=time.time())
    await RegistryService(scope).publish(d, env)
    factory = AgentFactory(store, RegistryService, PolicyService(), ScopeAudit(seal))
    _, secret = await create_key(scope, "client", ["viewer"])
    return factory, scope, secret
