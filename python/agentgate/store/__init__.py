"""Control-plane storage: one schema on SQLite (embedded default) or PostgreSQL (asyncpg).

Tenant data is reachable only through `store.scoped(tenant_id)`, whose repositories bind the
tenant id into every statement; there is no method that takes a raw WHERE clause. Cross-tenant
administration (tenants, key lookup for authentication, the whole audit trail) lives on
`store.system`.

    store = await open_store(None, data_dir)          # SQLite file data_dir/agentgate.db
    acme = store.scoped(tenant.id)
    await acme.templates.insert(NewTemplate(...))
    await store.close()

Ids are uuid4 hex text, times UTC epoch seconds (float).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from agentgate.store._base import Clock
from agentgate.store.agents import AgentRepo, PolicyRepo, RoutableAgent, SystemAgentRepo
from agentgate.store.audit import GENESIS_HASH, AuditRepo, Seal, SystemAuditRepo
from agentgate.store.db import Database, PostgresDatabase, SqliteDatabase
from agentgate.store.events import EventStore
from agentgate.store.migrate import apply_migrations
from agentgate.store.models import (
    Agent,
    ApiKey,
    AuditEntry,
    NewTemplate,
    Policy,
    PublisherKey,
    Signature,
    TagMove,
    Template,
    TemplateTag,
    Tenant,
    TrustRoot,
)
from agentgate.store.templates import TemplateRepo
from agentgate.store.tenants import ApiKeyRepo, SystemApiKeyRepo, TenantRepo
from agentgate.store.trust import PublisherKeyRepo, SignatureRepo, TrustRootRepo

__all__ = [
    "GENESIS_HASH",
    "Agent",
    "AgentRepo",
    "ApiKey",
    "ApiKeyRepo",
    "AuditEntry",
    "AuditRepo",
    "Clock",
    "Database",
    "EventStore",
    "NewTemplate",
    "Policy",
    "PolicyRepo",
    "PublisherKey",
    "PublisherKeyRepo",
    "RoutableAgent",
    "Seal",
    "Signature",
    "SignatureRepo",
    "Store",
    "SystemAgentRepo",
    "SystemScope",
    "TagMove",
    "Template",
    "TemplateRepo",
    "TemplateTag",
    "Tenant",
    "TenantRepo",
    "TenantScope",
    "TrustRoot",
    "TrustRootRepo",
    "open_store",
]


@dataclass(frozen=True, slots=True)
class TenantScope:
    """Every repository of one tenant; the tenant id cannot be changed or forgotten."""

    tenant_id: str
    clock: Clock
    api_keys: ApiKeyRepo
    templates: TemplateRepo
    signatures: SignatureRepo
    publisher_keys: PublisherKeyRepo
    trust_roots: TrustRootRepo
    policies: PolicyRepo
    agents: AgentRepo
    audit: AuditRepo


@dataclass(frozen=True, slots=True)
class SystemScope:
    """Cross-tenant operations: tenants, key lookup by id, the keys version, the whole trail,
    the gateway's view of every agent."""

    tenants: TenantRepo
    api_keys: SystemApiKeyRepo
    audit: SystemAuditRepo
    agents: SystemAgentRepo


class Store:
    """An open database with its schema migrated."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or time.time
        self.events = EventStore(db, self.clock)
        self.system = SystemScope(
            tenants=TenantRepo(db, self.clock),
            api_keys=SystemApiKeyRepo(db),
            audit=SystemAuditRepo(db, self.clock),
            agents=SystemAgentRepo(db),
        )

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.db.dialect

    def scoped(self, tenant_id: str) -> TenantScope:
        """The repositories of one tenant (cheap: build one per request)."""
        db, c = self.db, self.clock
        return TenantScope(
            tenant_id=tenant_id,
            clock=c,
            api_keys=ApiKeyRepo(db, tenant_id, c),
            templates=TemplateRepo(db, tenant_id, c),
            signatures=SignatureRepo(db, tenant_id, c),
            publisher_keys=PublisherKeyRepo(db, tenant_id, c),
            trust_roots=TrustRootRepo(db, tenant_id, c),
            policies=PolicyRepo(db, tenant_id, c),
            agents=AgentRepo(db, tenant_id, c),
            audit=AuditRepo(db, tenant_id, c),
        )

    async def close(self) -> None:
        """Close connections."""
        await self.db.close()


async def open_store(
    database_url: str | None, data_dir: Path, *, clock: Clock | None = None
) -> Store:
    """Open PostgreSQL for a `postgresql://` (or `postgres://`) URL, else the SQLite file
    `data_dir/agentgate.db` (`sqlite:///path` picks another file); migrate, return the store."""
    db: Database
    if database_url and database_url.startswith(("postgresql://", "postgres://")):
        db = await PostgresDatabase.open(database_url)
    elif database_url and database_url.startswith("sqlite:///"):
        db = await SqliteDatabase.open(Path(database_url.removeprefix("sqlite:///")))
    elif database_url:
        raise ValueError(
            f"database_url must start with postgresql:// or sqlite:///, got {database_url!r}"
        )
    else:
        db = await SqliteDatabase.open(Path(data_dir) / "agentgate.db")
    try:
        await apply_migrations(db)
    except BaseException:
        await db.close()
        raise
    return Store(db, clock)
