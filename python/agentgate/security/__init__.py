"""Security: secrets, encryption, the audit chain, GDPR, backups."""
