"""Backups 3-2-1: content-defined chunks, zstd, SHA-256, encryption under the KEK, manifests
written last, several destinations (local directory, S3, offline archives)."""

from agentgate.security.backup.manager import BackupError, BackupManager, BackupStatus, VerifyReport
from agentgate.security.backup.manifest import Manifest

__all__ = ["BackupError", "BackupManager", "BackupStatus", "Manifest", "VerifyReport"]
