"""Agents and versioned policies (tenant-scoped)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from agentgate.errors import Conflict, NotFound
from agentgate.store._base import ScopedRepo, bump_counter, dumps, loads, need, new_id
from agentgate.store.db import Database, Row
from agentgate.store.models import Agent, Policy

__all__ = ["AgentRepo", "PolicyRepo", "RoutableAgent", "SystemAgentRepo"]

_AG = (
    "id, tenant_id, name, template_ref, template_digest, params, replicas, routes, state, "
    "revision, created_at, updated_at"
)
_PO = "tenant_id, name, version, rego, active, created_at, created_by"


def _agent(r: Row) -> Agent:
    return Agent(
        id=r["id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        template_ref=r["template_ref"],
        template_digest=r["template_digest"],
        params=loads(r["params"]),
        replicas=int(r["replicas"]),
        routes=loads(r["routes"]),
        state=r["state"],
        revision=int(r["revision"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


def _policy(r: Row) -> Policy:
    return Policy(
        tenant_id=r["tenant_id"],
        name=r["name"],
        version=int(r["version"]),
        rego=r["rego"],
        active=bool(r["active"]),
        created_at=float(r["created_at"]),
        created_by=r["created_by"],
    )


class AgentRepo(ScopedRepo):
    """Agents of one tenant, unique by name; updates can be conditional on `revision`."""

    async def create(
        self,
        name: str,
        *,
        template_ref: str,
        template_digest: str,
        params: dict[str, Any] | None = None,
        replicas: int = 1,
        routes: builtins.list[Any] | None = None,
        state: str = "pending",
    ) -> Agent:
        """Insert an agent (Conflict on a taken name; NotFound if the digest is not this
        tenant's template)."""
        now = self._clock()
        aid = new_id()
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO agents ({_AG}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                aid,
                self._tenant,
                name,
                template_ref,
                template_digest,
                dumps(params or {}),
                replicas,
                dumps(routes or []),
                state,
                now,
                now,
            )
            await bump_counter(tx, "agents_version")
        return await self.get(name)

    async def get(self, name: str) -> Agent:
        """An agent by name, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_AG} FROM agents WHERE tenant_id = ? AND name = ?", self._tenant, name
        )
        return _agent(need(row, f"agent {name}"))

    async def get_by_id(self, agent_id: str) -> Agent:
        """An agent by id, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_AG} FROM agents WHERE tenant_id = ? AND id = ?", self._tenant, agent_id
        )
        return _agent(need(row, "agent"))

    async def list(
        self, *, state: str | None = None, limit: int = 1000, offset: int = 0
    ) -> builtins.list[Agent]:
        """Agents by name, optionally only those in `state`."""
        sql = f"SELECT {_AG} FROM agents WHERE tenant_id = ?"
        args: list[Any] = [self._tenant]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        rows = await self._db.fetch(f"{sql} ORDER BY name LIMIT ? OFFSET ?", *args, limit, offset)
        return [_agent(r) for r in rows]

    async def update(
        self,
        name: str,
        *,
        expected_revision: int | None = None,
        template_ref: str | None = None,
        template_digest: str | None = None,
        params: dict[str, Any] | None = None,
        replicas: int | None = None,
        routes: builtins.list[Any] | None = None,
        state: str | None = None,
    ) -> Agent:
        """Change the given fields and bump `revision`; a stale `expected_revision` is Conflict."""
        sets = ["revision = revision + 1", "updated_at = ?"]
        args: list[Any] = [self._clock()]
        for col, val in (
            ("template_ref", template_ref),
            ("template_digest", template_digest),
            ("params", None if params is None else dumps(params)),
            ("replicas", replicas),
            ("routes", None if routes is None else dumps(routes)),
            ("state", state),
        ):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        sql = f"UPDATE agents SET {', '.join(sets)} WHERE tenant_id = ? AND name = ?"
        args.extend([self._tenant, name])
        if expected_revision is not None:
            sql += " AND revision = ?"
            args.append(expected_revision)
        async with self._db.transaction() as tx:
            n = await tx.execute(sql, *args)
            if n:
                await bump_counter(tx, "agents_version")
        if n == 0:
            current = await self.get(name)  # NotFound if it does not exist at all
            raise Conflict(
                f"agent {name} is at revision {current.revision}, not {expected_revision}"
            )
        return await self.get(name)

    async def delete(self, name: str) -> None:
        """Delete an agent; NotFound if absent."""
        async with self._db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM agents WHERE tenant_id = ? AND name = ?", self._tenant, name
            )
            if n:
                await bump_counter(tx, "agents_version")
        if n == 0:
            raise NotFound(f"agent {name} not found")

    async def usage(self) -> tuple[int, int]:
        """(number of agents, total replicas) of the tenant, for quota policies."""
        row = await self._db.fetchrow(
            "SELECT COUNT(*) AS n, COALESCE(SUM(replicas), 0) AS r FROM agents WHERE tenant_id = ?",
            self._tenant,
        )
        r = need(row, "usage")
        return int(r["n"]), int(r["r"])


class PolicyRepo(ScopedRepo):
    """Named Rego policies with immutable versions 1, 2, …; at most one active version per name."""

    async def add(
        self, name: str, rego: str, *, created_by: str | None = None, activate: bool = True
    ) -> Policy:
        """Store the next version of `name`, optionally making it the active one."""
        async with self._db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT COALESCE(MAX(version), 0) AS v FROM policies "
                "WHERE tenant_id = ? AND name = ?",
                self._tenant,
                name,
            )
            version = int(need(row, "policy")["v"]) + 1
            if activate:
                await tx.execute(
                    "UPDATE policies SET active = 0 WHERE tenant_id = ? AND name = ?",
                    self._tenant,
                    name,
                )
            await tx.execute(
                f"INSERT INTO policies ({_PO}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self._tenant,
                name,
                version,
                rego,
                int(activate),
                self._clock(),
                created_by,
            )
        return await self.get(name, version)

    async def get(self, name: str, version: int | None = None) -> Policy:
        """A version, or (version None) the active one; NotFound otherwise."""
        if version is None:
            row = await self._db.fetchrow(
                f"SELECT {_PO} FROM policies WHERE tenant_id = ? AND name = ? AND active = 1",
                self._tenant,
                name,
            )
        else:
            row = await self._db.fetchrow(
                f"SELECT {_PO} FROM policies WHERE tenant_id = ? AND name = ? AND version = ?",
                self._tenant,
                name,
                version,
            )
        return _policy(need(row, f"policy {name}"))

    async def list(self, *, active_only: bool = False) -> builtins.list[Policy]:
        """Policies by name and version (only active versions if asked)."""
        act = " AND active = 1" if active_only else ""
        rows = await self._db.fetch(
            f"SELECT {_PO} FROM policies WHERE tenant_id = ?{act} ORDER BY name, version",
            self._tenant,
        )
        return [_policy(r) for r in rows]

    async def versions(self, name: str) -> builtins.list[Policy]:
        """All versions of one policy, oldest first."""
        rows = await self._db.fetch(
            f"SELECT {_PO} FROM policies WHERE tenant_id = ? AND name = ? ORDER BY version",
            self._tenant,
            name,
        )
        return [_policy(r) for r in rows]

    async def activate(self, name: str, version: int) -> Policy:
        """Make `version` the active one (e.g. roll back)."""
        async with self._db.transaction() as tx:
            hit = await tx.fetchrow(
                "SELECT 1 AS ok FROM policies WHERE tenant_id = ? AND name = ? AND version = ?",
                self._tenant,
                name,
                version,
            )
            need(hit, f"policy {name} v{version}")
            await tx.execute(
                "UPDATE policies SET active = CASE WHEN version = ? THEN 1 ELSE 0 END "
                "WHERE tenant_id = ? AND name = ?",
                version,
                self._tenant,
                name,
            )
        return await self.get(name, version)

    async def deactivate(self, name: str) -> None:
        """No active version any more; NotFound if the policy does not exist."""
        n = await self._db.execute(
            "UPDATE policies SET active = 0 WHERE tenant_id = ? AND name = ?", self._tenant, name
        )
        if n == 0:
            raise NotFound(f"policy {name} not found")

    async def delete(self, name: str) -> None:
        """Delete all versions; NotFound if absent."""
        n = await self._db.execute(
            "DELETE FROM policies WHERE tenant_id = ? AND name = ?", self._tenant, name
        )
        if n == 0:
            raise NotFound(f"policy {name} not found")


@dataclass(frozen=True, slots=True)
class RoutableAgent:
    """An agent the gateway should know, with its tenant's name and its template's body.

    `endpoints` are the ready replicas of a `process` agent (`unix:/…`; pass them to
    `gateway_parts(..., endpoints=...)`); empty for `http` agents."""

    agent: Agent
    tenant_name: str
    template_body: dict[str, Any]
    endpoints: tuple[str, ...] = ()


class SystemAgentRepo:
    """Cross-tenant agent reads for the gateway's store sync and the factory's drain."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def versions(self) -> tuple[int, int]:
        """(`keys_version`, `agents_version`) in one read: what a gateway worker polls."""
        rows = await self._db.fetch(
            "SELECT name, value FROM counters WHERE name IN ('keys_version', 'agents_version')"
        )
        got = {r["name"]: int(r["value"]) for r in rows}
        return got.get("keys_version", 0), got.get("agents_version", 0)

    async def routable(self) -> builtins.list[RoutableAgent]:
        """Agents of enabled tenants in state `active` or `draining`, by tenant and name."""
        cols = ", ".join(f"a.{c.strip()}" for c in _AG.split(","))
        rows = await self._db.fetch(
            f"SELECT {cols}, t.name AS tenant_name, p.body AS template_body FROM agents a "
            "JOIN tenants t ON t.id = a.tenant_id "
            "JOIN templates p ON p.tenant_id = a.tenant_id AND p.digest = a.template_digest "
            "WHERE t.disabled = 0 AND a.state IN ('active', 'draining') "
            "ORDER BY t.name, a.name"
        )
        ready: dict[str, list[str]] = {}
        for e in await self._db.fetch(
            "SELECT agent_id, endpoint FROM agent_replicas WHERE state = 'ready' "
            "ORDER BY agent_id, endpoint"
        ):
            ready.setdefault(e["agent_id"], []).append(e["endpoint"])
        return [
            RoutableAgent(
                _agent(r),
                r["tenant_name"],
                loads(r["template_body"]),
                tuple(ready.get(r["id"], ())),
            )
            for r in rows
        ]

    async def report_inflight(self, gateway: str, counts: dict[str, int], now: float) -> None:
        """Upsert this gateway worker's in-flight count for each (draining) agent id."""
        if not counts:
            return
        async with self._db.transaction() as tx:
            for agent_id, n in counts.items():
                await tx.execute(
                    "INSERT INTO agent_inflight (agent_id, gateway, in_flight, reported_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, gateway) DO UPDATE SET "
                    "in_flight = excluded.in_flight, reported_at = excluded.reported_at",
                    agent_id,
                    gateway,
                    n,
                    now,
                )

    async def inflight(self, agent_id: str, since: float) -> builtins.list[int]:
        """In-flight counts reported for an agent at or after `since` (one per gateway)."""
        rows = await self._db.fetch(
            "SELECT in_flight FROM agent_inflight WHERE agent_id = ? AND reported_at >= ?",
            agent_id,
            since,
        )
        return [int(r["in_flight"]) for r in rows]

    async def clear_inflight(self, agent_id: str) -> None:
        """Forget the reports of an agent (after its row is gone)."""
        await self._db.execute("DELETE FROM agent_inflight WHERE agent_id = ?", agent_id)

    async def draining(self) -> builtins.list[Agent]:
        """Every agent in state `draining`, oldest drain first."""
        rows = await self._db.fetch(
            f"SELECT {_AG} FROM agents WHERE state = 'draining' ORDER BY updated_at"
        )
        return [_agent(r) for r in rows]
