"""Request and response bodies of the security routes (secrets, privacy, backups)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentgate.secret_refs import NAME_PATTERN


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


_Seconds = Field(default=None, gt=0, le=10 * 365 * 86400, allow_inf_nan=False)


class SecretCreate(_In):
    """A new secret: the value is write-only (never returned)."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    value: str = Field(min_length=1, max_length=65536)
    cls: str = Field(default="generic", alias="class", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    description: str = Field(default="", max_length=500)
    rotate_every: float | None = _Seconds
    overlap: float | None = Field(default=None, ge=0, le=365 * 86400, allow_inf_nan=False)


class SecretRotate(_In):
    """The next value (omit it for classes agentgate generates)."""

    value: str | None = Field(default=None, min_length=1, max_length=65536)


class SecretOut(_Out):
    """A secret's metadata."""

    tenant_id: str
    name: str
    cls: str = Field(serialization_alias="class")
    description: str
    version: int
    rotate_every: float | None
    overlap: float
    next_rotation_at: float | None
    created_at: float
    updated_at: float
    rotated_at: float | None


class KekOut(_Out):
    """The key ring's public state."""

    provider: str
    latest_version: int
    min_decryption_version: int


class KekRotated(BaseModel):
    """After a KEK rotation: the new state and how many data keys were rewrapped."""

    kek: KekOut
    rewrapped: int


class KekRetire(_In):
    """Retire KEK versions below this one."""

    min_decryption_version: int = Field(ge=1, le=1_000_000)


class ReminderOut(_Out):
    """Something due for rotation."""

    tenant_id: str
    kind: str
    name: str
    due_at: float
    action: str


# --- privacy ----------------------------------------------------------------------------------

Subject = Field(min_length=1, max_length=320)


class PrivacyRequestCreate(_In):
    """A data subject request: access (export), erasure or anonymisation."""

    subject: str = Subject
    kind: Literal["access", "erasure", "anonymisation"]
    note: str = Field(default="", max_length=1000)


class PrivacyRequestOut(_Out):
    """A data subject request and its state."""

    id: str
    tenant_id: str
    subject_ref: str
    kind: str
    status: str
    note: str
    created_at: float
    deadline_at: float
    completed_at: float | None
    overdue: bool
    result: dict[str, Any] | None


class SubjectExportOut(BaseModel):
    """Everything held about a subject: `data` has one list (or document) per source."""

    subject: str
    subject_ref: str
    tenant_id: str
    generated_at: float
    sources: list[str]
    data: dict[str, Any]


class ConsentCreate(_In):
    """A consent record."""

    subject: str = Subject
    purpose: str = Field(min_length=1, max_length=200)
    granted: bool
    source: str = Field(min_length=1, max_length=200)
    time: float | None = Field(default=None, ge=0, le=1e11, allow_inf_nan=False)


class ConsentOut(_Out):
    """A consent record (the subject as its pseudonym)."""

    id: str
    tenant_id: str
    subject_ref: str
    purpose: str
    granted: bool
    source: str
    time: float
    recorded_at: float


class RetentionOut(BaseModel):
    """Retention periods per data class (seconds) and, after a run, what was deleted."""

    periods: dict[str, float]
    deleted: dict[str, int] | None = None


# --- backups ----------------------------------------------------------------------------------


class BackupCreate(_In):
    """Take a backup now."""

    full: bool = False


class BackupOut(BaseModel):
    """One backup as recorded by its manifest."""

    id: str
    created_at: float
    kind: str
    dialect: str
    size: int
    stored_new: int
    chunks: int
    destinations: list[str]


class BackupVerifyOut(BaseModel):
    """Verification of one backup on each destination."""

    id: str
    ok: bool
    results: dict[str, dict[str, Any]]


class BackupStatusOut(BaseModel):
    """3-2-1 state, free space and the last backups."""

    copies: int
    media: list[str]
    offsite: bool
    warnings: list[str]
    disk: dict[str, Any]
    last: BackupOut | None


class BackupPruneOut(BaseModel):
    """What a prune removed per destination."""

    removed: dict[str, dict[str, int]]


REQUESTS: tuple[type[BaseModel], ...] = (
    SecretCreate,
    SecretRotate,
    KekRetire,
    PrivacyRequestCreate,
    ConsentCreate,
    BackupCreate,
)
RESPONSES: tuple[type[BaseModel], ...] = (
    SecretOut,
    KekOut,
    KekRotated,
    ReminderOut,
    PrivacyRequestOut,
    SubjectExportOut,
    ConsentOut,
    RetentionOut,
    BackupOut,
    BackupVerifyOut,
    BackupStatusOut,
    BackupPruneOut,
)
