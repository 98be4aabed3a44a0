"""`${secret:NAME}` in agents' upstream headers: resolved into each config the gateway installs,
and watched, so a rotated or deleted secret reaches the data plane without a restart.

File agents read the system tenant's secrets; store agents (`<tenant>/<agent>`) their tenant's.
The watch compares the versions that were resolved with the store's current ones (one small
read per secret in use, every `every` seconds); the scheduler's rotations, the API's and
another host's are all seen the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agentgate.config import GatewayConfig
from agentgate.errors import NotFound
from agentgate.secret_refs import check_template, references
from agentgate.security.services import Security
from agentgate.store import Store

__all__ = ["UpstreamSecrets"]

log = logging.getLogger(__name__)


class UpstreamSecrets:
    """Resolves secret references in upstream headers and notices when their values change."""

    def __init__(self, security: Security, store: Store, system_tenant: str = "system") -> None:
        self.security = security
        self.store = store
        self.system_tenant = system_tenant
        # (tenant id, secret name) -> the version in the installed config
        self._resolved: dict[tuple[str, str], int] = {}

    async def resolve(self, cfg: GatewayConfig) -> GatewayConfig:
        """`cfg` with every agent's header references replaced by the current values."""
        needed = {
            name: a for name, a in cfg.agents.items() if any(map(references, a.headers.values()))
        }
        if not needed:
            self._resolved = {}
            return cfg
        secrets = await self.security.secrets()
        tenants: dict[str, str] = {}
        used: dict[tuple[str, str], int] = {}
        for name, a in needed.items():
            tenant_name = name.split("/", 1)[0] if "/" in name else self.system_tenant
            tenants[name] = (await self.store.system.tenants.get_by_name(tenant_name)).id
            # versions first: a rotation racing with the read below is seen by the next watch
            for text in a.headers.values():
                for secret in check_template(text):
                    key = (tenants[name], secret)
                    if key not in used:
                        try:
                            used[key] = (await secrets.get(key[0], secret)).version
                        except NotFound:
                            used[key] = -1  # resolve_headers names it in its error below
        # recorded even when resolving fails: a deleted secret is retried once it exists again,
        # not on every tick
        self._resolved = used
        agents = dict(cfg.agents)
        for name, a in needed.items():
            headers = await secrets.resolve_headers(tenants[name], a.headers)
            agents[name] = a.model_copy(update={"headers": headers})
        return cfg.model_copy(update={"agents": agents})

    async def stale(self) -> bool:
        """Whether a secret the installed config uses was rotated or deleted since."""
        if not self._resolved:
            return False
        secrets = await self.security.secrets()
        for (tenant_id, name), version in self._resolved.items():
            try:
                now = (await secrets.get(tenant_id, name)).version
            except NotFound:
                now = -1
            if now != version:
                return True
        return False

    async def watch(self, reinstall: Callable[[], Awaitable[None]], every: float = 2.0) -> None:
        """Reinstall the config whenever `stale()`, until cancelled; errors are logged."""
        while True:
            await asyncio.sleep(every)
            try:
                if await self.stale():
                    await reinstall()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store may be briefly unavailable: try again next tick
                log.exception("secrets: checking upstream header secrets failed")
