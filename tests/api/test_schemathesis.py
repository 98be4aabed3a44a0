"""Schemathesis against `/api/openapi.json`, in-process over ASGI with a system admin key: no
5xx, and every response matches the document (status, content type, body schema)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import schemathesis
from api_helpers import signed, template_doc
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from agentgate import crypto
from agentgate.api.app import from_env
from agentgate.registry.service import RegistryService
from agentgate.store import open_store

DATA = Path(tempfile.mkdtemp(prefix="agentgate-st-"))


async def _seed() -> str:
    """Bootstrap, then a publisher key, a signed template and a policy so GETs hit real rows."""
    from agentgate.cli_control import bootstrap

    store = await open_store(None, DATA)
    try:
        t, _, secret = await bootstrap(store)
        scope = store.scoped(t.id)
        kp = crypto.generate_keypair()
        from agentgate.registry.signing import key_id

        await scope.publisher_keys.add(key_id(kp.public_key), kp.public_b64(), valid_from=0)
        body = signed(template_doc(), kp, store.clock())
        await RegistryService(scope).publish(body["template"], body["envelope"])
    finally:
        await store.close()
    return secret


SECRET = asyncio.run(_seed())
_env = dict(os.environ)
os.environ["AGENTGATE_DATA_DIR"] = str(DATA)
os.environ["AGENTGATE_MASTER_KEY"] = os.urandom(32).hex()  # the secret routes need a key ring
os.environ.pop("AGENTGATE_DATABASE_URL", None)
APP = from_env()
os.environ.clear()
os.environ.update(_env)

schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP).exclude(
    # alert channels send to the URLs in their body: fuzzed ones must never be contacted
    operation_id=["putAlertChannel", "testAlertChannel"]
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_openapi(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    case.call_and_validate(headers={"Authorization": f"Bearer {SECRET}"}, checks=CHECKS)
