-- Version 40 (security): encrypted secrets and the local key ring's state.
-- Values are never stored in the clear: each version holds an AES-256-GCM ciphertext under its
-- own data key, and that key wrapped by the key-encryption key (KEK) as a text token.

-- The one row of key-ring state: PBKDF2 salt (for passphrase master keys), latest and
-- minimum decryptable KEK versions. Vault keeps its own ring; the row then only records the salt.
CREATE TABLE kek_state (
    id INTEGER PRIMARY KEY,
    salt TEXT NOT NULL,
    latest_version INTEGER NOT NULL,
    min_decryption_version INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE secrets (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    class TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL,
    rotate_every DOUBLE PRECISION,
    overlap DOUBLE PRECISION NOT NULL DEFAULT 0,
    next_rotation_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    rotated_at DOUBLE PRECISION,
    PRIMARY KEY (tenant_id, name)
);
CREATE INDEX secrets_due ON secrets (next_rotation_at);

-- Every version of a value; the current one has valid_until NULL, a rotated one stays valid
-- (for verifiers) until the end of its overlap window.
CREATE TABLE secret_versions (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    wrapped_key TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    nonce TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    valid_until DOUBLE PRECISION,
    PRIMARY KEY (tenant_id, name, version),
    FOREIGN KEY (tenant_id, name) REFERENCES secrets (tenant_id, name) ON DELETE CASCADE
);
CREATE INDEX secret_versions_kek ON secret_versions (kek_version);
