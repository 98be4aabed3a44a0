"""Request and response bodies as pydantic models: one source for validation, serialisation
and the OpenAPI schemas (so the document cannot drift from what the handlers do).

Times are UTC epoch seconds (float), ids uuid4 hex text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "publisher", "operator", "viewer"]
Json = dict[str, Any]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- requests -------------------------------------------------------------------------------


class TenantCreate(_In):
    """Create a tenant (system principals only)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    display_name: str = Field(default="", max_length=200)
    quotas: dict[str, float] | None = None


class TenantUpdate(_In):
    """Change a tenant (system principals only)."""

    display_name: str | None = Field(default=None, max_length=200)
    quotas: dict[str, float] | None = None
    disabled: bool | None = None


class KeyCreate(_In):
    """Create an API key: in the caller's tenant, or in the path's tenant (system admin)."""

    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    expires_in: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class KeyRotate(_In):
    """Rotate a key: the old one stays valid for `overlap` seconds."""

    overlap: float = Field(default=86400.0, ge=0, allow_inf_nan=False)
    expires_in: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class TemplatePublish(_In):
    """Publish a template version with its DSSE envelope."""

    template: Json
    envelope: Json | None = None


class TagSet(_In):
    """Point a tag at a version (exact version or `sha256:` digest)."""

    target: str = Field(min_length=1, max_length=200)


class TagRollback(_In):
    """Move a tag back (to its previous digest, or to `to`)."""

    to: str | None = Field(default=None, min_length=1, max_length=200)


class Yank(_In):
    """Yank (or restore) a version."""

    yanked: bool = True


class Deprecate(_In):
    """Deprecate a version (null clears)."""

    message: str | None = Field(default=None, max_length=1000)


class PublisherKeyCreate(_In):
    """Register a publisher's Ed25519 public key (base64 of 32 bytes, or PEM)."""

    public_key: str = Field(min_length=1, max_length=4096)
    valid_from: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    valid_until: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class TrustRootCreate(_In):
    """Add the next trust-root version: its body and the signatures of a key threshold."""

    body: Json
    signatures: list[Json] = Field(default_factory=list)


class PolicyCreate(_In):
    """Add the next version of a named Rego policy."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rego: str = Field(min_length=1, max_length=262144)
    activate: bool = True


class PolicyActivate(_In):
    """Make one version the active one."""

    version: int = Field(ge=1)


class PolicyDryRun(_In):
    """Evaluate the tenant's policies on an input without side effects; `name` + `rego` try a
    candidate module in place of (or next to) the active ones."""

    stage: Literal["publish", "create", "deploy"] = "create"
    input: Json = Field(default_factory=dict)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    rego: str | None = Field(default=None, min_length=1, max_length=262144)


class AgentCreate(_In):
    """Create an agent from a template reference such as `name@^1.2`."""

    template: str = Field(min_length=1, max_length=300)
    params: Json = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=0, le=10000)
    routes: list[Json] | None = None
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class AgentUpdate(_In):
    """Change an agent."""

    template: str | None = Field(default=None, min_length=1, max_length=300)
    params: Json | None = None
    replicas: int | None = Field(default=None, ge=0, le=10000)
    routes: list[Json] | None = None
    expected_revision: int | None = Field(default=None, ge=1)


# --- responses ------------------------------------------------------------------------------


class TenantOut(_Out):
    """A tenant."""

    id: str
    name: str
    display_name: str
    quotas: Json
    disabled: bool
    created_at: float
    updated_at: float


class KeyOut(_Out):
    """An API key (never the secret)."""

    id: str
    tenant_id: str
    name: str
    prefix: str
    roles: list[str]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rotated_from: str | None
    overlap_until: float | None


class KeyCreated(BaseModel):
    """A new key and its secret (shown only in this response)."""

    key: KeyOut
    secret: str


class KeyRotated(BaseModel):
    """The rotated-away key, its successor and the successor's secret."""

    old: KeyOut
    key: KeyOut
    secret: str


class TemplateOut(_Out):
    """A stored template version."""

    tenant_id: str
    name: str
    version: str
    digest: str
    body: Json
    description: str
    capabilities: list[str]
    yanked: bool
    deprecated: str | None
    parent_digest: str | None
    publisher: str | None
    created_at: float


class Verified(BaseModel):
    """What the signature said."""

    keyids: list[str]
    publisher: str | None
    signed_at: float
    parent: str | None


class TemplatePublished(BaseModel):
    """A published version and its verified signature."""

    template: TemplateOut
    verified: Verified | None


class TemplateResolved(BaseModel):
    """A resolved reference."""

    template: TemplateOut
    warning: str | None


class SearchHit(BaseModel):
    """A search result (`key` is `name@version`)."""

    key: str
    score: float


class TagOut(_Out):
    """A tag pointer."""

    name: str
    tag: str
    digest: str
    seq: int
    updated_at: float
    updated_by: str | None


class TagMoveOut(_Out):
    """One move in a tag's history."""

    name: str
    tag: str
    seq: int
    digest: str
    previous_digest: str | None
    moved_at: float
    moved_by: str | None


class PublisherKeyOut(_Out):
    """A registered publisher key."""

    keyid: str
    public_key: str
    algorithm: str
    valid_from: float
    valid_until: float | None
    revoked_at: float | None
    created_at: float


class TrustRootOut(_Out):
    """One trust-root version."""

    version: int
    body: Json
    signatures: list[Any]
    created_at: float


class PolicyOut(_Out):
    """One version of a policy."""

    name: str
    version: int
    rego: str
    active: bool
    created_at: float
    created_by: str | None


class ReasonOut(BaseModel):
    """One deny reason and its rule."""

    rule: str
    message: str


class CoverageOut(BaseModel):
    """Lines of one module the evaluation ran."""

    module: str
    covered: list[int]
    not_covered: list[int]


class DryRunOut(BaseModel):
    """A policy decision, the rules that produced it, the raw result and line coverage."""

    stage: str
    allow: bool
    rules: list[str]
    reasons: list[ReasonOut]
    result: Any
    modules: list[str]
    coverage: list[CoverageOut]


class AuditVerifyOut(BaseModel):
    """Result of walking the whole audit chain."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None
    head_seq: int
    head_hash: str


class AgentTemplateOut(BaseModel):
    """The template an agent runs."""

    ref: str
    name: str
    version: str
    digest: str


class AgentOut(BaseModel):
    """An agent and where the gateway serves it (`mount`)."""

    id: str
    tenant: str
    name: str
    template: AgentTemplateOut
    params: Json
    replicas: int
    routes: list[Any]
    state: str
    revision: int
    gateway_agent: str
    mount: str
    created_at: float
    updated_at: float
    decision: Json | None
    warning: str | None
    runtime: Json | None = None  # process agents: {"status": failure + stderr, or null}


class AuditOut(_Out):
    """One audit entry."""

    seq: int
    time: float
    tenant_id: str | None
    actor: str
    action: str
    target: str
    outcome: str
    decision: Json | None
    details: Json
    prev_hash: str
    hash: str


class Problem(BaseModel):
    """An RFC 9457 problem document (extra members: `path` for 422, `decision` for policy)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    path: str | None = None
    decision: Json | None = None


REQUESTS: tuple[type[BaseModel], ...] = (
    TenantCreate,
    TenantUpdate,
    KeyCreate,
    KeyRotate,
    TemplatePublish,
    TagSet,
    TagRollback,
    Yank,
    Deprecate,
    PublisherKeyCreate,
    TrustRootCreate,
    PolicyCreate,
    PolicyActivate,
    PolicyDryRun,
    AgentCreate,
    AgentUpdate,
)
RESPONSES: tuple[type[BaseModel], ...] = (
    TenantOut,
    KeyOut,
    KeyCreated,
    KeyRotated,
    TemplateOut,
    TemplatePublished,
    TemplateResolved,
    SearchHit,
    TagOut,
    TagMoveOut,
    PublisherKeyOut,
    TrustRootOut,
    PolicyOut,
    DryRunOut,
    AgentOut,
    AuditOut,
    AuditVerifyOut,
    Problem,
)
