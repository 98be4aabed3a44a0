"""The security services of one process, opened lazily on first use: KEK, secrets, privacy,
backups. The API and the scheduled jobs share one instance."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentgate.errors import AgentgateError
from agentgate.security.audit import seal as audit_seal
from agentgate.security.backup import BackupManager
from agentgate.security.keyring import kek_state, open_kek
from agentgate.security.keys import ENV_MASTER_KEY, Kek, KekError
from agentgate.security.privacy import PrivacyService
from agentgate.security.retention import RetentionJob
from agentgate.security.secrets import DEFAULT_CLASSES, SecretClass, SecretService
from agentgate.store import Seal, Store

__all__ = ["BackupNotConfigured", "NotConfigured", "Security", "classes_of"]


class NotConfigured(AgentgateError):
    """A security service is not configured in this process (e.g. no master key)."""

    status = 503
    title = "Service unavailable"


def classes_of(cfg: Any) -> dict[str, SecretClass]:
    """The built-in secret classes with the config's `secrets.classes` merged over them."""
    out = dict(DEFAULT_CLASSES)
    if cfg is not None:
        for name, c in cfg.secrets.classes.items():
            out[name] = SecretClass(c.rotate_every, c.overlap, c.generate)
    return out


class BackupNotConfigured(AgentgateError):
    """The config has no `backup` section."""

    status = 409
    title = "Not configured"


class Security:
    """Lazily opened security services on one store."""

    def __init__(
        self,
        store: Store,
        *,
        env: Mapping[str, str] | None = None,
        classes: Mapping[str, SecretClass] | None = None,
        seal: Seal = audit_seal,
        config: Any = None,
    ) -> None:
        self.store = store
        self.env = dict(os.environ if env is None else env)
        self.classes = dict(DEFAULT_CLASSES if classes is None else classes)
        self.seal = seal
        self.config = config
        self._kek: Kek | None = None
        self._secrets: SecretService | None = None
        self._privacy: PrivacyService | None = None
        self._backups: BackupManager | None = None
        self._retention: RetentionJob | None = None

    @classmethod
    def from_env(
        cls, store: Store, env: Mapping[str, str] | None = None, *, seal: Seal = audit_seal
    ) -> Security:
        """Services configured by the environment and the config file `AGENTGATE_CONFIG`."""
        from agentgate.config import load_config

        e = dict(os.environ if env is None else env)
        path = e.get("AGENTGATE_CONFIG")
        cfg = load_config(path) if path else None
        return cls(store, env=e, seal=seal, config=cfg, classes=classes_of(cfg))

    async def kek(self) -> Kek:
        """The key ring (NotConfigured without a master key or KMS)."""
        if self._kek is None:
            try:
                self._kek = await open_kek(self.store, self.env)
            except KekError as e:
                raise NotConfigured(f"the key ring cannot be opened: {e}") from None
            if self._kek is None:
                raise NotConfigured(
                    f"no master key: set {ENV_MASTER_KEY} (or AGENTGATE_MASTER_KEY_FILE, "
                    "or AGENTGATE_KMS=vault)"
                )
        return self._kek

    async def secrets(self) -> SecretService:
        """The secret service."""
        if self._secrets is None:
            self._secrets = SecretService(self.store, await self.kek(), self.classes)
        return self._secrets

    async def privacy(self) -> PrivacyService:
        """The GDPR service (needs the key ring for pseudonyms and subject keys)."""
        if self._privacy is None:
            deadline = 30 * 86400.0 if self.config is None else self.config.privacy.deadline
            self._privacy = PrivacyService(
                self.store, await self.kek(), deadline=deadline, seal=self.seal
            )
        return self._privacy

    async def backups(self) -> BackupManager:
        """The backup manager of the configured destinations (BackupNotConfigured without)."""
        if self._backups is None:
            cfg = None if self.config is None else self.config.backup
            if cfg is None:
                raise BackupNotConfigured("no backup section in the config (backup.destinations)")
            kek = await self.kek()
            salt = None if kek.provider == "vault" else (await kek_state(self.store)).salt
            url = self.env.get("AGENTGATE_DATABASE_URL") or self.config.database_url
            data_dir = Path(self.env.get("AGENTGATE_DATA_DIR") or self.config.data_dir)
            self._backups = BackupManager(
                cfg, kek, database_url=url, data_dir=data_dir, salt=salt, env=self.env
            )
        return self._backups

    def retention(self) -> RetentionJob:
        """The retention job with the configured periods (one per process: other modules
        `register` their purge functions on it)."""
        if self._retention is not None:
            return self._retention
        periods = None
        if self.config is not None:
            r = self.config.privacy.retention
            periods = {
                "audit": r.audit,
                "events": r.events,
                "metrics": r.metrics,
                "logs": r.logs,
                "privacy_requests": r.privacy_requests,
            }
        self._retention = RetentionJob(self.store, periods, seal=self.seal)
        return self._retention

    async def close(self) -> None:
        """Release clients (Vault's HTTP session)."""
        close = getattr(self._kek, "close", None)
        if close is not None:
            await close()
