"""Security: the hash-chained audit trail (`audit`), envelope encryption under a key ring of
KEKs (`envelope`, `keys`, `keyring`, `vault`), write-only secrets and rotation (`secrets`,
`rotation`), GDPR subject requests, pseudonyms and retention (`privacy`, `subjects`,
`retention`), 3-2-1 backups (`backup/`), the per-process bundle of these services (`services`)
and their timer jobs (`scheduler`)."""
