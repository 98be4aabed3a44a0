"""The security sections of the config file: `secrets`, `privacy` (retention), `backup`.

Neutral module (plain pydantic models, no control-plane imports): `agentgate.config` embeds
these in `GatewayConfig`; `agentgate.security` reads them. Durations accept the units of the
gateway config plus `d` (days) and `y` (365 days).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "BackupConfig",
    "BackupDestination",
    "BackupKeep",
    "PrivacyConfig",
    "RetentionConfig",
    "SecretClassConfig",
    "SecretsConfig",
    "parse_long_duration",
]

_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|y)?\s*$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "y": 365 * 86400.0}
DAY = 86400.0


def parse_long_duration(value: object) -> float:
    """Parse "30d", "7y", "12h", "90s" or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30d', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return float(value)
    m = _RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a duration like '30d', '7y' or '12h', got {value!r}")
    if m.group(2) is None and float(m.group(1)) != 0:
        raise ValueError(f"duration {value!r} needs a unit (s, m, h, d, y)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


LongDuration = Annotated[float, BeforeValidator(parse_long_duration)]


def _size(value: object) -> int:
    from agentgate.config import parse_size  # late: agentgate.config imports this module

    return parse_size(value)


Size = Annotated[int, BeforeValidator(_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretClassConfig(_Model):
    """A rotation schedule for one class of secrets."""

    rotate_every: LongDuration | None = None
    overlap: LongDuration = 0.0
    generate: bool = False


class SecretsConfig(_Model):
    """Secret classes (merged over the built-in generic / api_key / token) and reminders."""

    classes: dict[str, SecretClassConfig] = {}
    publisher_key_max_age: LongDuration = 365 * DAY
    remind_before: LongDuration = 30 * DAY
    check_every: LongDuration = 3600.0


class RetentionConfig(_Model):
    """How long each data class is kept (the scheduled job deletes what is older)."""

    audit: LongDuration = 7 * 365 * DAY
    events: LongDuration = 365 * DAY
    metrics: LongDuration = 90 * DAY
    logs: LongDuration = 30 * DAY
    privacy_requests: LongDuration = 3 * 365 * DAY
    run_every: LongDuration = DAY


class PrivacyConfig(_Model):
    """GDPR handling: the answer deadline of subject requests and retention per data class."""

    deadline: LongDuration = 30 * DAY
    retention: RetentionConfig = RetentionConfig()


class BackupDestination(_Model):
    """Where backups go: a local directory, an S3-compatible bucket, or offline archives."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: Literal["local", "s3", "offline"]
    path: str | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # names of environment variables holding the credentials (never the credentials
    # themselves); unset means boto3's usual chain (AWS_ACCESS_KEY_ID, profiles, roles)
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    medium: str | None = None
    offsite: bool | None = None

    @model_validator(mode="after")
    def _needs(self) -> BackupDestination:
        if self.type in ("local", "offline") and not self.path:
            raise ValueError(f"a {self.type} destination needs path")
        if self.type == "s3" and not self.bucket:
            raise ValueError("an s3 destination needs bucket")
        return self


class BackupKeep(_Model):
    """Retention of backups: the newest per day, week and month, then prune."""

    daily: int = Field(default=7, ge=0)
    weekly: int = Field(default=4, ge=0)
    monthly: int = Field(default=12, ge=0)


class BackupConfig(_Model):
    """Backups: destinations (several at once), schedule, compression, chunking, retention."""

    destinations: tuple[BackupDestination, ...] = Field(min_length=1)
    schedule: LongDuration | None = None
    compression_level: int = Field(default=3, ge=1, le=22)
    chunk_size: Size = Field(default=64 * 1024, ge=16 * 1024, le=8 * 1024 * 1024)
    keep: BackupKeep = BackupKeep()
    scratch_dir: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> BackupConfig:
        names = [d.name for d in self.destinations]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate destination name(s) {sorted(dup)}")
        return self
