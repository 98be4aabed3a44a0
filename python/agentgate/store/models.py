"""Records the repositories return: frozen dataclasses, JSON columns already decoded.

Conventions: ids are uuid4 hex text; times are UTC epoch seconds (float); JSON documents are
dicts/lists; flags are bools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Agent",
    "ApiKey",
    "AuditEntry",
    "NewTemplate",
    "Policy",
    "PublisherKey",
    "Signature",
    "TagMove",
    "Template",
    "TemplateTag",
    "Tenant",
    "TrustRoot",
]


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: the unit of isolation for every other object."""

    id: str
    name: str
    display_name: str
    quotas: dict[str, Any]
    disabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: the secret is never kept, only its SHA-256 hex digest."""

    id: str
    tenant_id: str
    name: str
    sha256: str
    prefix: str
    roles: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rotated_from: str | None
    overlap_until: float | None

    def valid_at(self, now: float) -> bool:
        """Not revoked, not expired, and (if rotated away) still inside its overlap window."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.overlap_until is None or now < self.overlap_until


@dataclass(frozen=True, slots=True)
class NewTemplate:
    """An immutable template version to insert; semver parts are given by the registry."""

    name: str
    version: str
    major: int
    minor: int
    patch: int
    digest: str
    body: dict[str, Any]
    prerelease: str = ""
    description: str = ""
    capabilities: tuple[str, ...] = ()
    parent_digest: str | None = None
    publisher: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A stored template version."""

    tenant_id: str
    name: str
    version: str
    major: int
    minor: int
    patch: int
    prerelease: str
    digest: str
    body: dict[str, Any]
    description: str
    capabilities: tuple[str, ...]
    yanked: bool
    deprecated: str | None
    parent_digest: str | None
    publisher: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class TemplateTag:
    """A mutable pointer (`stable`, `canary` …) from a template name to one version's digest."""

    tenant_id: str
    name: str
    tag: str
    digest: str
    seq: int
    updated_at: float
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class TagMove:
    """One entry of a tag's history (seq 1 = first assignment)."""

    tenant_id: str
    name: str
    tag: str
    seq: int
    digest: str
    previous_digest: str | None
    moved_at: float
    moved_by: str | None


@dataclass(frozen=True, slots=True)
class Signature:
    """A DSSE envelope signing a template digest with one publisher key."""

    tenant_id: str
    digest: str
    keyid: str
    envelope: dict[str, Any]
    verified_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class PublisherKey:
    """A publisher's public key with its validity window."""

    tenant_id: str
    keyid: str
    public_key: str
    algorithm: str
    valid_from: float
    valid_until: float | None
    revoked_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """One version of a tenant's trust root (body + the signatures of a key threshold)."""

    tenant_id: str
    version: int
    body: dict[str, Any]
    signatures: list[Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Policy:
    """One version of a named Rego policy."""

    tenant_id: str
    name: str
    version: int
    rego: str
    active: bool
    created_at: float
    created_by: str | None


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent created from a template; `revision` increases on every update."""

    id: str
    tenant_id: str
    name: str
    template_ref: str
    template_digest: str
    params: dict[str, Any]
    replicas: int
    routes: list[Any]
    state: str
    revision: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit chain entry; `hash` covers this entry and `prev_hash` links to the one before."""

    seq: int
    time: float
    tenant_id: str | None
    actor: str
    action: str
    target: str
    outcome: str
    decision: dict[str, Any] | None
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
