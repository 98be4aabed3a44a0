"""Security: the hash-chained audit trail (`audit`: sealing, chain verification, export)."""
