"""An in-process API client for the security tests: every error body is collected for the leak
check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from leakcheck import collect

from agentgate.api.app import create_api, standalone
from agentgate.security.services import Security
from agentgate.store import Store, open_store
from agentgate.tenancy import create_key, create_tenant


@dataclass
class SecApi:
    """The API with a system admin key, its store and security services."""

    client: httpx.AsyncClient
    store: Store
    security: Security
    secret: str

    async def tenant_key(self, name: str, roles: list[str]) -> tuple[str, dict[str, str]]:
        """A new tenant with one key of `roles`: (tenant id, auth headers)."""
        t = await create_tenant(self.store, name)
        _, secret = await create_key(self.store.scoped(t.id), f"{name}-key", roles)
        return t.id, {"Authorization": f"Bearer {secret}"}

    async def close(self) -> None:
        """Close client, services and store."""
        await self.client.aclose()
        await self.security.close()
        await self.store.close()


async def _record_errors(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()
        collect(f"http:{response.request.method} {response.request.url.path}", response.text)


async def make_sec_api(
    url: str | None, data_dir: Path, env: dict[str, str], clock: Any = None, **kw: Any
) -> SecApi:
    """A bootstrapped store and the API on it with security services from `env`."""
    from agentgate.cli_control import bootstrap

    store = await open_store(url, data_dir, clock=clock)
    _, _, secret = await bootstrap(store)
    sec = Security(store, env=env, **kw)
    app = standalone(create_api(store, security=sec))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://api",
        headers={"Authorization": f"Bearer {secret}"},
        event_hooks={"response": [_record_errors]},
    )
    return SecApi(client, store, sec, secret)
