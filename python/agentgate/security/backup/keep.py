"""Which backups to keep: the newest of each of the last N days, weeks and months (restic's
`forget --keep-daily/--keep-weekly/--keep-monthly`), plus always the newest one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from agentgate.config_security import BackupKeep
from agentgate.security.backup.manifest import Manifest

__all__ = ["select_keep"]


def _day(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


def _week(t: float) -> str:
    y, w, _ = dt.datetime.fromtimestamp(t, dt.UTC).isocalendar()
    return f"{y}-W{w:02d}"


def _month(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m")


def select_keep(manifests: Sequence[Manifest], keep: BackupKeep) -> set[str]:
    """Ids of the backups the policy keeps."""
    newest_first = sorted(manifests, key=lambda m: (m.created_at, m.id), reverse=True)
    kept: set[str] = {newest_first[0].id} if newest_first else set()
    rules: list[tuple[int, Callable[[float], str]]] = [
        (keep.daily, _day),
        (keep.weekly, _week),
        (keep.monthly, _month),
    ]
    for n, bucket in rules:
        seen: list[str] = []
        for m in newest_first:
            b = bucket(m.created_at)
            if b in seen:
                continue
            if len(seen) >= n:
                break
            seen.append(b)
            kept.add(m.id)
    return kept
