"""Retention per data class, enforced by a scheduled job.

Defaults (the required figures, configurable under `privacy.retention`): audit 7 years,
events 1 year, metrics 3 months, logs 30 days, finished subject requests 3 years. The audit
trail loses only a prefix: the oldest entries go and the chain's anchor moves to the last one
removed, so `audit verify` keeps passing over what is left. Classes owned by other modules
(events, metrics, logs) are purged by the function each module registers; a class nobody
registered is reported as such, never silently counted as done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from agentgate.security.audit import seal as audit_seal
from agentgate.store import Seal, Store
from agentgate.store.privacy import PrivacyRepo

__all__ = ["DEFAULT_PERIODS", "Purge", "RetentionJob", "RetentionReport"]

DAY = 86400.0
DEFAULT_PERIODS: dict[str, float] = {
    "audit": 7 * 365 * DAY,
    "events": 365 * DAY,
    "metrics": 90 * DAY,
    "logs": 30 * DAY,
    "privacy_requests": 3 * 365 * DAY,
}

Purge = Callable[[float], Awaitable[int]]
"""Deletes a data class's records older than the cutoff (epoch seconds); returns the count."""


@dataclass(slots=True)
class RetentionReport:
    """Deleted records per class, and the classes no module purges yet."""

    deleted: dict[str, int] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)


class RetentionJob:
    """Deletes what is older than each class's period; the run itself is audited."""

    def __init__(
        self,
        store: Store,
        periods: Mapping[str, float] | None = None,
        *,
        seal: Seal = audit_seal,
    ) -> None:
        self.store = store
        self.periods = dict(DEFAULT_PERIODS if periods is None else periods)
        self.seal = seal
        repo = PrivacyRepo(store.db, store.clock)
        self.purges: dict[str, Purge] = {
            "audit": repo.drop_audit_before,
            "privacy_requests": repo.delete_requests_before,
        }

    def register(self, data_class: str, purge: Purge) -> None:
        """Let another module purge its class (events, metrics, logs …)."""
        self.purges[data_class] = purge

    async def run_once(self, now: float | None = None) -> RetentionReport:
        """One pass over every class."""
        now = self.store.clock() if now is None else now
        report = RetentionReport()
        for cls, period in sorted(self.periods.items()):
            purge = self.purges.get(cls)
            if purge is None:
                report.unregistered.append(cls)
                continue
            report.deleted[cls] = await purge(now - period)
        await self.store.system.audit.append(
            actor="system:retention",
            action="retention.run",
            target="retention",
            outcome="ok",
            seal=self.seal,
            details={"deleted": report.deleted, "unregistered": report.unregistered},
        )
        return report
