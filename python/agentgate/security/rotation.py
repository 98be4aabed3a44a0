"""Rotation: KEK versions (rotate, rewrap online, retire), secret schedules, publisher-key
reminders. Every rotation and every reminder is written to the audit chain.

KEK rotation adds a version and then rewraps every stored data key under it, a page at a time,
while the service keeps serving: a row is swapped only if it still holds the token that was
read (compare-and-set), and old versions stay readable until nothing uses them. Only then may
`retire` raise `min_decryption_version`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentgate.errors import Conflict, Invalid
from agentgate.security.audit import seal as audit_seal
from agentgate.security.envelope import aad
from agentgate.security.keyring import save_state
from agentgate.security.keys import KekStatus
from agentgate.security.secrets import SecretService
from agentgate.store import Seal
from agentgate.store.secrets import SystemSecretRepo

__all__ = ["Reminder", "RotationJob", "RotationReport", "retire_kek", "rewrap_all", "rotate_kek"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Reminder:
    """Something due for rotation that a person must do (or that was done automatically)."""

    tenant_id: str
    kind: str  # "secret" | "publisher_key"
    name: str
    due_at: float
    action: str  # "rotated" | "reminder"


@dataclass(slots=True)
class RotationReport:
    """What one run of the rotation job did."""

    rotated: list[Reminder] = field(default_factory=list)
    reminders: list[Reminder] = field(default_factory=list)


async def rewrap_all(svc: SecretService, *, page: int = 500) -> int:
    """Rewrap every data key not under the latest KEK version; returns how many moved."""
    repo = SystemSecretRepo(svc.store.db)
    latest = (await svc.kek.status()).latest_version
    moved = 0
    after: tuple[str, str, int] | None = None
    while True:
        rows = await repo.versions_page(after, page)
        for r in rows:
            if svc.kek.version_of(r.wrapped_key) >= latest:
                continue
            ad = aad("secret", r.tenant_id, r.name, str(r.version))
            token = await svc.kek.rewrap(r.wrapped_key, ad)
            if await repo.replace_key(r, token, svc.kek.version_of(token)):
                moved += 1
        if len(rows) < page:
            return moved
        last = rows[-1]
        after = (last.tenant_id, last.name, last.version)


async def rotate_kek(
    svc: SecretService, *, actor: str, seal: Seal = audit_seal
) -> tuple[KekStatus, int]:
    """Add a KEK version, rewrap everything under it; audited. Returns (status, rewrapped)."""
    status = await svc.kek.rotate()
    await save_state(svc.store, svc.kek)
    moved = await rewrap_all(svc)
    await svc.store.system.audit.append(
        actor=actor,
        action="kek.rotate",
        target=f"kek:{status.provider}",
        outcome="ok",
        seal=seal,
        details={"latest_version": status.latest_version, "rewrapped": moved},
    )
    return status, moved


async def retire_kek(
    svc: SecretService, version: int, *, actor: str, seal: Seal = audit_seal
) -> KekStatus:
    """Raise `min_decryption_version`; Conflict while data keys still use older versions."""
    latest = (await svc.kek.status()).latest_version
    if not 1 <= version <= latest:
        raise Invalid(f"min_decryption_version must be in 1..{latest}", "$.min_decryption_version")
    left = await SystemSecretRepo(svc.store.db).count_below(version)
    if left:
        raise Conflict(f"{left} data keys still use KEK versions below {version}: rotate first")
    status = await svc.kek.set_min_decryption_version(version)
    await save_state(svc.store, svc.kek)
    await svc.store.system.audit.append(
        actor=actor,
        action="kek.retire",
        target=f"kek:{status.provider}",
        outcome="ok",
        seal=seal,
        details={"min_decryption_version": version},
    )
    return status


class RotationJob:
    """The scheduled pass: rotate generated secrets that are due, remind about the rest and
    about publisher keys past `publisher_key_max_age` or expiring within `warn_before`."""

    def __init__(
        self,
        svc: SecretService,
        *,
        seal: Seal = audit_seal,
        publisher_key_max_age: float = 365 * DAY,
        warn_before: float = 30 * DAY,
    ) -> None:
        self.svc = svc
        self.seal = seal
        self.publisher_key_max_age = publisher_key_max_age
        self.warn_before = warn_before

    async def due(self, now: float | None = None) -> list[Reminder]:
        """Everything due now, without acting."""
        now = self.svc.store.clock() if now is None else now
        out = [
            Reminder(
                s.tenant_id,
                "secret",
                s.name,
                float(s.next_rotation_at or now),
                "rotated" if self.svc.secret_class(s.cls).generate else "reminder",
            )
            for s in await SystemSecretRepo(self.svc.store.db).due(now)
        ]
        rows = await self.svc.store.db.fetch(
            "SELECT tenant_id, keyid, created_at, valid_until FROM publisher_keys "
            "WHERE revoked_at IS NULL ORDER BY tenant_id, keyid"
        )
        for r in rows:
            due_at = float(r["created_at"]) + self.publisher_key_max_age
            if r["valid_until"] is not None:
                due_at = min(due_at, float(r["valid_until"]))
            if due_at - self.warn_before <= now:
                out.append(
                    Reminder(r["tenant_id"], "publisher_key", r["keyid"], due_at, "reminder")
                )
        return out

    async def run_once(self, now: float | None = None) -> RotationReport:
        """Act on what is due; each rotation and reminder becomes an audit entry."""
        report = RotationReport()
        for d in await self.due(now):
            if d.action == "rotated":
                try:
                    await self.svc.rotate(d.tenant_id, d.name)
                    outcome = "ok"
                except Conflict:
                    outcome = "error:409"  # rotated by somebody else meanwhile
                report.rotated.append(d)
                action = "secret.rotate"
            else:
                report.reminders.append(d)
                outcome = "due"
                action = f"{d.kind}.rotation_due"
            await self.svc.store.system.audit.append(
                actor="system:rotation",
                action=action,
                target=f"{d.kind}:{d.name}",
                outcome=outcome,
                seal=self.seal,
                tenant_id=d.tenant_id,
                details={"due_at": d.due_at},
            )
        return report
