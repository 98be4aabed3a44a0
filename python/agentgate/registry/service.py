"""The registry of one tenant on top of `store/`: publish, resolve, tag, rollback, yank, search.

    reg = RegistryService(store.scoped(tenant_id))
    pub = await reg.publish(document, envelope, publisher="alice", check=policy_check)
    hit = await reg.resolve("summarizer", "^1.2")       # or "stable", "1.2.3", "sha256:…"
    await reg.verify(hit.template)                      # again on every deploy

Versions are immutable (a second publish of name@version is `Conflict`). Tags are mutable
pointers with history; `rollback` moves a tag back. Yanked versions are skipped by ranges and
tags' moves but still resolve when pinned exactly (version or digest). Deprecated versions
resolve with a warning. Times are epoch seconds (float) from the store's clock.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentgate.errors import Conflict, Invalid, NotFound
from agentgate.registry.digest import parse_digest
from agentgate.registry.search import Hit, SearchDoc, SearchIndex
from agentgate.registry.semver import InvalidRange, Range, Version
from agentgate.registry.signing import (
    DEFAULT_MAX_SKEW,
    KeyResolver,
    StaticKeys,
    TrustedKey,
    UntrustedKey,
    VerifiedStatement,
    verify_template,
)
from agentgate.registry.template import Template as ParsedTemplate
from agentgate.registry.template import parse_template
from agentgate.registry.trust import SignedRoot, TrustHistory, TrustRoot
from agentgate.store import NewTemplate, TagMove, TemplateTag, TenantScope
from agentgate.store import Template as TemplateRecord

__all__ = ["PublishCheck", "Published", "RegistryService", "Resolved"]

_TAG = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")

PublishCheck = Callable[[ParsedTemplate, "VerifiedStatement | None"], Awaitable[None]]
"""Called by `publish` with the parsed template and its verified signature before storing."""


@dataclass(frozen=True, slots=True)
class Published:
    """A stored version and the verified statement of its signature (None if unsigned)."""

    template: TemplateRecord
    verified: VerifiedStatement | None


@dataclass(frozen=True, slots=True)
class Resolved:
    """The version a reference resolved to, and a deprecation warning if any."""

    template: TemplateRecord
    warning: str | None = None


class RegistryService:
    """Template registry operations of one tenant."""

    def __init__(
        self,
        scope: TenantScope,
        *,
        index: SearchIndex | None = None,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        self.scope = scope
        self.index = index
        self.max_skew = max_skew

    async def keys(self) -> KeyResolver:
        """The tenant's trust: its verified trust-root chain if it has roots, else its
        registered publisher keys (validity ends at `valid_until` or revocation, first)."""
        roots = await self.scope.trust_roots.list()
        if roots:
            pinned = TrustRoot.from_json(roots[0].body)
            chain = [SignedRoot(r.body, r.signatures) for r in roots[1:]]
            return TrustHistory.verify_chain(pinned, chain)
        out = []
        for k in await self.scope.publisher_keys.list():
            ends = [t for t in (k.valid_until, k.revoked_at) if t is not None]
            try:
                raw = _raw_key(k.public_key)
            except ValueError:
                continue  # a malformed stored key trusts nothing
            out.append(TrustedKey(k.keyid, raw, k.valid_from, min(ends) if ends else None))
        return StaticKeys(out)

    async def publish(
        self,
        document: object,
        envelope: object | None = None,
        *,
        publisher: str | None = None,
        require_signature: bool = True,
        check: PublishCheck | None = None,
    ) -> Published:
        """Validates, verifies the signature (unless allowed unsigned), runs `check` (the
        publish policy: it raises to refuse) and stores a version."""
        tpl = parse_template(document)
        now = self.scope.clock()
        verified: VerifiedStatement | None = None
        if envelope is not None:
            verified = verify_template(
                envelope,
                ref=tpl.ref,
                digest=tpl.digest,
                keys=await self.keys(),
                at=now,
                max_skew=self.max_skew,
            )
        elif require_signature:
            raise UntrustedKey(f"template {tpl.ref} is unsigned", "$.signature")
        if check is not None:
            await check(tpl, verified)  # before anything is stored: a refusal leaves no trace
        parent = verified.parent if verified is not None else None
        if parent is None:
            parent = await self._previous_digest(tpl)
        v = tpl.version
        record = await self.scope.templates.insert(
            NewTemplate(
                name=tpl.name,
                version=tpl.model.version,
                major=v.major,
                minor=v.minor,
                patch=v.patch,
                prerelease=".".join(str(p) for p in v.prerelease),
                digest=tpl.digest,
                body=dict(tpl.document),
                description=tpl.model.description,
                capabilities=tpl.model.capabilities,
                parent_digest=parent,
                publisher=publisher or (verified.publisher if verified else None),
            )
        )
        if verified is not None and isinstance(envelope, dict):
            for kid in verified.keyids:
                await self.scope.signatures.add(tpl.digest, kid, envelope, verified_at=now)
        self._index(record)
        return Published(record, verified)

    async def _previous_digest(self, tpl: ParsedTemplate) -> str | None:
        # Lineage default: the highest existing version below the new one.
        below = [
            r for r in await self.scope.templates.versions(tpl.name) if _version(r) < tpl.version
        ]
        return max(below, key=_version).digest if below else None

    def _index(self, r: TemplateRecord) -> None:
        if self.index is not None and not r.yanked:
            self.index.add(
                SearchDoc(
                    f"{r.name}@{r.version}",
                    r.tenant_id,
                    f"{r.name} {r.description}",
                    r.capabilities,
                )
            )

    async def get(self, name: str, version: str) -> TemplateRecord:
        """One version by exact version text."""
        return await self.scope.templates.get(name, version)

    async def get_by_digest(self, digest: str) -> TemplateRecord:
        """One version by digest."""
        parse_digest(digest)
        return await self.scope.templates.get_by_digest(digest)

    async def list(
        self, *, name: str | None = None, capability: str | None = None, limit: int = 100
    ) -> builtins.list[TemplateRecord]:
        """Versions filtered by name and capability."""
        return await self.scope.templates.list(name=name, capability=capability, limit=limit)

    async def resolve(self, name: str, ref: str = "*") -> Resolved:
        """Resolves `ref`: a digest, an exact version, a tag, or an npm-style range.

        A range picks the highest non-yanked version; an exact version or digest returns the
        version even if yanked. `NotFound` when nothing matches.
        """
        ref = ref.strip()
        if ref.startswith("sha256:"):
            r = await self.get_by_digest(ref)
            if r.name != name:
                raise NotFound(f"template {name} with digest {ref} not found")
            return _resolved(r)
        if _TAG.match(ref):
            try:
                tag = await self.scope.templates.get_tag(name, ref)
            except NotFound:
                pass
            else:
                return _resolved(await self.scope.templates.get_by_digest(tag.digest))
        try:
            rng = Range(ref)
        except InvalidRange as e:
            raise Invalid(f"{ref!r} is not a version, range, tag or digest: {e}", "$.ref") from None
        exact = rng.is_exact()
        if exact is not None:
            return _resolved(await self.scope.templates.get(name, str(exact)))
        candidates = await self.scope.templates.versions(name, include_yanked=False)
        best: TemplateRecord | None = None
        for r in candidates:
            v = _version(r)
            if rng.test(v) and (best is None or v > _version(best)):
                best = r
        if best is None:
            raise NotFound(f"no version of template {name} satisfies {ref!r}")
        return _resolved(best)

    async def verify(self, record: TemplateRecord) -> VerifiedStatement:
        """Re-verifies a stored version (on deploy): digest recomputed from the stored body,
        a stored signature by a key trusted when it was published."""
        tpl = parse_template(record.body)
        if tpl.digest != record.digest:
            raise Conflict(f"stored template {record.name}@{record.version} fails its digest")
        sigs = await self.scope.signatures.list(record.digest)
        if not sigs:
            raise UntrustedKey(f"template {tpl.ref} is unsigned", "$.signature")
        keys = await self.keys()
        last: Invalid = UntrustedKey(f"template {tpl.ref} has no valid signature")
        for s in sigs:
            try:
                return verify_template(
                    s.envelope,
                    ref=tpl.ref,
                    digest=tpl.digest,
                    keys=keys,
                    at=record.created_at,
                    max_skew=self.max_skew,
                )
            except Invalid as e:
                last = e
        raise last

    async def tag(self, name: str, tag: str, target: str, *, by: str | None = None) -> TemplateTag:
        """Points `name:tag` at a version (exact version or digest)."""
        if not _TAG.match(tag):
            raise Invalid(f"tag must match {_TAG.pattern}, got {tag!r}", "$.tag")
        if target.startswith("sha256:"):
            digest = (await self.get_by_digest(target)).digest
        else:
            digest = (await self.get(name, target)).digest
        return await self.scope.templates.set_tag(name, tag, digest, by=by)

    async def tag_history(self, name: str, tag: str) -> builtins.list[TagMove]:
        """Every move of a tag, oldest first."""
        return await self.scope.templates.tag_history(name, tag)

    async def rollback(
        self, name: str, tag: str, *, to: str | None = None, by: str | None = None
    ) -> TemplateTag:
        """Moves a tag back: to the digest it pointed at before, or to `to` (a digest or
        version it pointed at some time)."""
        current = await self.scope.templates.get_tag(name, tag)
        history = await self.scope.templates.tag_history(name, tag)
        if to is None:
            earlier = [m.digest for m in history if m.digest != current.digest]
            if not earlier:
                raise Conflict(f"tag {name}:{tag} has no earlier version to roll back to")
            target = earlier[-1]
        else:
            target = to if to.startswith("sha256:") else (await self.get(name, to)).digest
            if target not in {m.digest for m in history}:
                raise Conflict(f"tag {name}:{tag} never pointed at {to}")
        return await self.scope.templates.set_tag(name, tag, target, by=by)

    async def yank(self, name: str, version: str, *, yanked: bool = True) -> TemplateRecord:
        """Yanks (or restores) a version: ranges skip it, exact pins still resolve."""
        r = await self.scope.templates.yank(name, version, yanked=yanked)
        if self.index is not None:
            if yanked:
                self.index.remove(r.tenant_id, f"{r.name}@{r.version}")
            else:
                self._index(r)
        return r

    async def deprecate(self, name: str, version: str, message: str | None) -> TemplateRecord:
        """Deprecates a version (None clears it); it still resolves, with a warning."""
        return await self.scope.templates.deprecate(name, version, message)

    async def search(
        self, query: str = "", *, capabilities: tuple[str, ...] = (), limit: int = 20
    ) -> builtins.list[Hit]:
        """Similarity search over this tenant's versions (needs an index)."""
        if self.index is None:
            raise Invalid("search is not configured", "$.search")
        return self.index.search(
            self.scope.tenant_id, query, capabilities=capabilities, limit=limit
        )

    async def reindex(self) -> int:
        """Loads every non-yanked version of the tenant into the index; returns the count."""
        n = 0
        offset = 0
        while True:
            batch = await self.scope.templates.list(include_yanked=False, limit=500, offset=offset)
            for r in batch:
                self._index(r)
            n += len(batch)
            offset += len(batch)
            if len(batch) < 500:
                return n


def _raw_key(text: str) -> bytes:
    from agentgate import crypto

    return crypto.raw_public_key(text)


def _version(r: TemplateRecord) -> Version:
    return Version.parse(r.version)


def _resolved(r: TemplateRecord) -> Resolved:
    warning = f"{r.name}@{r.version} is deprecated: {r.deprecated}" if r.deprecated else None
    return Resolved(r, warning)
