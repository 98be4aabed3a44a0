"""The security operations of the OpenAPI document (secrets, privacy, backups)."""

# ruff: noqa: E501  (the operation table reads best one route per line)

from __future__ import annotations

from typing import Any

from agentgate.api.routes import _security_models as s

__all__ = ["OPS"]

OPS: list[tuple[str, str, str, str, Any, int, Any, list[tuple[str, str]]]] = [
    ("get", "/api/secrets", "listSecrets", "Secrets of the tenant (metadata only)", None, 200, [s.SecretOut], []),
    ("post", "/api/secrets", "createSecret", "Store a secret (the value is write-only)", s.SecretCreate, 201, s.SecretOut, []),
    ("get", "/api/secrets/-/rotation", "dueRotations", "Secrets and publisher keys due for rotation", None, 200, [s.ReminderOut], []),
    ("get", "/api/secrets/-/kek", "getKek", "The key ring's versions (system)", None, 200, s.KekOut, []),
    ("post", "/api/secrets/-/kek/rotate", "rotateKek", "Add a KEK version and rewrap every data key (system)", None, 200, s.KekRotated, []),
    ("post", "/api/secrets/-/kek/retire", "retireKek", "Refuse KEK versions below one (system)", s.KekRetire, 200, s.KekOut, []),
    ("get", "/api/secrets/{name}", "getSecret", "One secret's metadata", None, 200, s.SecretOut, []),
    ("delete", "/api/secrets/{name}", "deleteSecret", "Delete a secret and its versions", None, 204, None, []),
    ("post", "/api/secrets/{name}/rotate", "rotateSecret", "Next version (generated when omitted and the class generates)", s.SecretRotate, 200, s.SecretOut, []),
    ("get", "/api/privacy/requests", "listPrivacyRequests", "Data subject requests (overdue=true: past the deadline)", None, 200, [s.PrivacyRequestOut], [("status", "string"), ("overdue", "string")]),
    ("post", "/api/privacy/requests", "createPrivacyRequest", "A data subject request (30-day deadline)", s.PrivacyRequestCreate, 201, s.PrivacyRequestOut, []),
    ("get", "/api/privacy/requests/{request_id}", "getPrivacyRequest", "One request", None, 200, s.PrivacyRequestOut, []),
    ("post", "/api/privacy/requests/{request_id}/process", "processPrivacyRequest", "Carry out a request now", None, 200, s.PrivacyRequestOut, []),
    ("get", "/api/privacy/requests/{request_id}/export", "exportPrivacyRequest", "The JSON bundle of an access request", None, 200, s.SubjectExportOut, []),
    ("get", "/api/privacy/consents", "listConsents", "Consent records", None, 200, [s.ConsentOut], [("subject", "string"), ("purpose", "string")]),
    ("post", "/api/privacy/consents", "recordConsent", "Record consent given or withdrawn", s.ConsentCreate, 201, s.ConsentOut, []),
    ("get", "/api/privacy/retention", "getRetention", "Retention periods per data class", None, 200, s.RetentionOut, []),
    ("post", "/api/privacy/retention/run", "runRetention", "Delete what is past retention now (system)", None, 200, s.RetentionOut, []),
    ("get", "/api/backup", "listBackups", "Backups and their destinations (system)", None, 200, [s.BackupOut], []),
    ("post", "/api/backup", "createBackup", "Take a backup now (system)", s.BackupCreate, 201, s.BackupOut, []),
    ("get", "/api/backup/-/status", "backupStatus", "3-2-1 check and free space against the next backup (system)", None, 200, s.BackupStatusOut, []),
    ("post", "/api/backup/-/prune", "pruneBackups", "Forget by the keep policy, delete unused chunks (system)", None, 200, s.BackupPruneOut, []),
    ("get", "/api/backup/{backup_id}", "getBackup", "One backup (system)", None, 200, s.BackupOut, []),
    ("post", "/api/backup/{backup_id}/verify", "verifyBackup", "Checksums, scratch restore, audit verify (system)", None, 200, s.BackupVerifyOut, []),
]  # fmt: skip
