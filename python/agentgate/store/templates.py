"""Template versions (immutable), their capabilities, and tags with history (tenant-scoped)."""

from __future__ import annotations

import builtins
from typing import Any

from agentgate.errors import Invalid, NotFound
from agentgate.store._base import ScopedRepo, dumps, loads, need
from agentgate.store.db import Row
from agentgate.store.models import NewTemplate, TagMove, Template, TemplateTag

__all__ = ["TemplateRepo"]

_COLS = (
    "tenant_id, name, version, major, minor, patch, prerelease, digest, body, description, "
    "capabilities, yanked, deprecated, parent_digest, publisher, created_at"
)
# Same columns without the body: listings of thousands of versions skip the big JSON.
_ORDER = "ORDER BY major, minor, patch, prerelease, version"


def _tpl(r: Row) -> Template:
    return Template(
        tenant_id=r["tenant_id"],
        name=r["name"],
        version=r["version"],
        major=int(r["major"]),
        minor=int(r["minor"]),
        patch=int(r["patch"]),
        prerelease=r["prerelease"],
        digest=r["digest"],
        body=loads(r["body"]),
        description=r["description"],
        capabilities=tuple(loads(r["capabilities"])),
        yanked=bool(r["yanked"]),
        deprecated=r["deprecated"],
        parent_digest=r["parent_digest"],
        publisher=r["publisher"],
        created_at=float(r["created_at"]),
    )


def _tag(r: Row) -> TemplateTag:
    return TemplateTag(
        tenant_id=r["tenant_id"],
        name=r["name"],
        tag=r["tag"],
        digest=r["digest"],
        seq=int(r["seq"]),
        updated_at=float(r["updated_at"]),
        updated_by=r["updated_by"],
    )


def _move(r: Row) -> TagMove:
    return TagMove(
        tenant_id=r["tenant_id"],
        name=r["name"],
        tag=r["tag"],
        seq=int(r["seq"]),
        digest=r["digest"],
        previous_digest=r["previous_digest"],
        moved_at=float(r["moved_at"]),
        moved_by=r["moved_by"],
    )


def _check_parts(t: NewTemplate) -> None:
    for field in ("major", "minor", "patch"):
        v = getattr(t, field)
        if not isinstance(v, int) or v < 0 or v > 2**62:
            raise Invalid(f"{field} must be a non-negative integer, got {v!r}", f"$.{field}")


class TemplateRepo(ScopedRepo):
    """Immutable template versions of one tenant, their tags and tag history."""

    async def insert(self, t: NewTemplate) -> Template:
        """Insert a version; an existing (name, version) or digest is Conflict."""
        _check_parts(t)
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO templates ({_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?)",
                self._tenant,
                t.name,
                t.version,
                t.major,
                t.minor,
                t.patch,
                t.prerelease,
                t.digest,
                dumps(t.body),
                t.description,
                dumps(list(t.capabilities)),
                t.parent_digest,
                t.publisher,
                self._clock(),
            )
            for cap in sorted(set(t.capabilities)):
                await tx.execute(
                    "INSERT INTO template_capabilities (tenant_id, digest, capability) "
                    "VALUES (?, ?, ?)",
                    self._tenant,
                    t.digest,
                    cap,
                )
        return await self.get_by_digest(t.digest)

    async def get(self, name: str, version: str) -> Template:
        """One version by exact version text, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM templates WHERE tenant_id = ? AND name = ? AND version = ?",
            self._tenant,
            name,
            version,
        )
        return _tpl(need(row, f"template {name}@{version}"))

    async def get_by_digest(self, digest: str) -> Template:
        """One version by content digest, or NotFound."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM templates WHERE tenant_id = ? AND digest = ?",
            self._tenant,
            digest,
        )
        return _tpl(need(row, f"template {digest}"))

    async def versions(self, name: str, *, include_yanked: bool = True) -> builtins.list[Template]:
        """All versions of a name ordered by (major, minor, patch); prerelease order is semver's
        job (the registry sorts ties)."""
        yank = "" if include_yanked else " AND yanked = 0"
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM templates WHERE tenant_id = ? AND name = ?{yank} {_ORDER}",
            self._tenant,
            name,
        )
        return [_tpl(r) for r in rows]

    async def candidates(
        self,
        name: str,
        *,
        lower: tuple[int, int, int] | None = None,
        upper: tuple[int, int, int] | None = None,
        include_yanked: bool = False,
    ) -> builtins.list[Template]:
        """Versions with lower <= (major, minor, patch) < upper: an index range scan that
        narrows a semver range before exact matching."""
        sql = f"SELECT {_COLS} FROM templates WHERE tenant_id = ? AND name = ?"
        args: list[Any] = [self._tenant, name]
        if lower is not None:
            sql += " AND (major, minor, patch) >= (?, ?, ?)"
            args.extend(lower)
        if upper is not None:
            sql += " AND (major, minor, patch) < (?, ?, ?)"
            args.extend(upper)
        if not include_yanked:
            sql += " AND yanked = 0"
        rows = await self._db.fetch(f"{sql} {_ORDER}", *args)
        return [_tpl(r) for r in rows]

    async def list(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        include_yanked: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[Template]:
        """Versions filtered by name and/or capability, ordered by name then version parts."""
        sql = f"SELECT {_COLS} FROM templates WHERE tenant_id = ?"
        args: list[Any] = [self._tenant]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        if capability is not None:
            sql += (
                " AND digest IN (SELECT digest FROM template_capabilities "
                "WHERE tenant_id = ? AND capability = ?)"
            )
            args.extend([self._tenant, capability])
        if not include_yanked:
            sql += " AND yanked = 0"
        sql += " ORDER BY name, major, minor, patch, prerelease, version LIMIT ? OFFSET ?"
        rows = await self._db.fetch(sql, *args, limit, offset)
        return [_tpl(r) for r in rows]

    async def names(self) -> builtins.list[str]:
        """Distinct template names of this tenant."""
        rows = await self._db.fetch(
            "SELECT DISTINCT name FROM templates WHERE tenant_id = ? ORDER BY name", self._tenant
        )
        return [r["name"] for r in rows]

    async def yank(self, name: str, version: str, *, yanked: bool = True) -> Template:
        """Mark (or unmark) a version yanked: still fetchable by digest, skipped by ranges."""
        n = await self._db.execute(
            "UPDATE templates SET yanked = ? WHERE tenant_id = ? AND name = ? AND version = ?",
            int(yanked),
            self._tenant,
            name,
            version,
        )
        if n == 0:
            raise NotFound(f"template {name}@{version} not found")
        return await self.get(name, version)

    async def deprecate(self, name: str, version: str, message: str | None) -> Template:
        """Set (or clear with None) the deprecation message of a version."""
        n = await self._db.execute(
            "UPDATE templates SET deprecated = ? WHERE tenant_id = ? AND name = ? AND version = ?",
            message,
            self._tenant,
            name,
            version,
        )
        if n == 0:
            raise NotFound(f"template {name}@{version} not found")
        return await self.get(name, version)

    # --- tags -----------------------------------------------------------------------------

    async def set_tag(
        self, name: str, tag: str, digest: str, *, by: str | None = None
    ) -> TemplateTag:
        """Point `name:tag` at a version of that name (by digest), appending to its history."""
        now = self._clock()
        async with self._db.transaction() as tx:
            own = await tx.fetchrow(
                "SELECT 1 AS ok FROM templates WHERE tenant_id = ? AND name = ? AND digest = ?",
                self._tenant,
                name,
                digest,
            )
            need(own, f"template {name} with digest {digest}")
            cur = await tx.fetchrow(
                "SELECT digest, seq FROM template_tags "
                "WHERE tenant_id = ? AND name = ? AND tag = ?",
                self._tenant,
                name,
                tag,
            )
            seq = 1 if cur is None else int(cur["seq"]) + 1
            prev = None if cur is None else cur["digest"]
            if cur is None:
                await tx.execute(
                    "INSERT INTO template_tags "
                    "(tenant_id, name, tag, digest, seq, updated_at, updated_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    self._tenant,
                    name,
                    tag,
                    digest,
                    seq,
                    now,
                    by,
                )
            else:
                await tx.execute(
                    "UPDATE template_tags SET digest = ?, seq = ?, updated_at = ?, updated_by = ? "
                    "WHERE tenant_id = ? AND name = ? AND tag = ?",
                    digest,
                    seq,
                    now,
                    by,
                    self._tenant,
                    name,
                    tag,
                )
            await tx.execute(
                "INSERT INTO template_tag_history "
                "(tenant_id, name, tag, seq, digest, previous_digest, moved_at, moved_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                self._tenant,
                name,
                tag,
                seq,
                digest,
                prev,
                now,
                by,
            )
        return await self.get_tag(name, tag)

    async def get_tag(self, name: str, tag: str) -> TemplateTag:
        """The current target of a tag, or NotFound."""
        row = await self._db.fetchrow(
            "SELECT tenant_id, name, tag, digest, seq, updated_at, updated_by FROM template_tags "
            "WHERE tenant_id = ? AND name = ? AND tag = ?",
            self._tenant,
            name,
            tag,
        )
        return _tag(need(row, f"tag {name}:{tag}"))

    async def tags(self, name: str) -> builtins.list[TemplateTag]:
        """All tags of a template name."""
        rows = await self._db.fetch(
            "SELECT tenant_id, name, tag, digest, seq, updated_at, updated_by FROM template_tags "
            "WHERE tenant_id = ? AND name = ? ORDER BY tag",
            self._tenant,
            name,
        )
        return [_tag(r) for r in rows]

    async def tag_history(self, name: str, tag: str) -> builtins.list[TagMove]:
        """Every move of a tag, oldest first."""
        rows = await self._db.fetch(
            "SELECT tenant_id, name, tag, seq, digest, previous_digest, moved_at, moved_by "
            "FROM template_tag_history WHERE tenant_id = ? AND name = ? AND tag = ? ORDER BY seq",
            self._tenant,
            name,
            tag,
        )
        return [_move(r) for r in rows]

    async def delete_tag(self, name: str, tag: str) -> None:
        """Remove a tag (its history stays); NotFound if absent."""
        n = await self._db.execute(
            "DELETE FROM template_tags WHERE tenant_id = ? AND name = ? AND tag = ?",
            self._tenant,
            name,
            tag,
        )
        if n == 0:
            raise NotFound(f"tag {name}:{tag} not found")
