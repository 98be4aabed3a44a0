-- agentgate control-plane schema, version 1.
-- Written in the SQL subset SQLite and PostgreSQL both accept: TEXT ids (uuid4 hex),
-- DOUBLE PRECISION timestamps (UTC epoch seconds), TEXT JSON documents, INTEGER 0/1 flags,
-- no autoincrement (sequence numbers are assigned inside the writing transaction).
-- Every tenant-owned table leads with tenant_id so each index is tenant-scoped too.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    quotas TEXT NOT NULL DEFAULT '{}',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Monotonic counters (keys_version …) bumped in the same transaction as the change they count.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('keys_version', 0);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    rotated_from TEXT,
    overlap_until DOUBLE PRECISION
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE templates (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    patch BIGINT NOT NULL,
    prerelease TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    capabilities TEXT NOT NULL DEFAULT '[]',
    yanked INTEGER NOT NULL DEFAULT 0,
    deprecated TEXT,
    parent_digest TEXT,
    publisher TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, name, version),
    UNIQUE (tenant_id, digest)
);
-- Range resolution: candidates of one name between two (major, minor, patch) bounds.
CREATE INDEX templates_order ON templates (tenant_id, name, major, minor, patch);
CREATE INDEX templates_created ON templates (tenant_id, created_at);

-- One row per (template version, capability): capability filters are index lookups.
CREATE TABLE template_capabilities (
    tenant_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    capability TEXT NOT NULL,
    PRIMARY KEY (tenant_id, digest, capability),
    FOREIGN KEY (tenant_id, digest) REFERENCES templates (tenant_id, digest) ON DELETE CASCADE
);
CREATE INDEX template_capabilities_cap ON template_capabilities (tenant_id, capability);

CREATE TABLE template_tags (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    seq BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (tenant_id, name, tag),
    FOREIGN KEY (tenant_id, digest) REFERENCES templates (tenant_id, digest)
);

-- Every move of a tag, oldest first (seq 1, 2, …): rollback reads the previous digest here.
CREATE TABLE template_tag_history (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tag TEXT NOT NULL,
    seq BIGINT NOT NULL,
    digest TEXT NOT NULL,
    previous_digest TEXT,
    moved_at DOUBLE PRECISION NOT NULL,
    moved_by TEXT,
    PRIMARY KEY (tenant_id, name, tag, seq),
    FOREIGN KEY (tenant_id, digest) REFERENCES templates (tenant_id, digest)
);

CREATE TABLE template_signatures (
    tenant_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    keyid TEXT NOT NULL,
    envelope TEXT NOT NULL,
    verified_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, digest, keyid),
    FOREIGN KEY (tenant_id, digest) REFERENCES templates (tenant_id, digest) ON DELETE CASCADE
);

CREATE TABLE publisher_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    keyid TEXT NOT NULL,
    public_key TEXT NOT NULL,
    algorithm TEXT NOT NULL DEFAULT 'ed25519',
    valid_from DOUBLE PRECISION NOT NULL,
    valid_until DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, keyid)
);

CREATE TABLE trust_roots (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    signatures TEXT NOT NULL DEFAULT '[]',
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE policies (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    rego TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE INDEX policies_active ON policies (tenant_id, active, name);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    template_ref TEXT NOT NULL,
    template_digest TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    replicas INTEGER NOT NULL DEFAULT 1,
    routes TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (tenant_id, name),
    FOREIGN KEY (tenant_id, template_digest) REFERENCES templates (tenant_id, digest)
);
CREATE INDEX agents_template ON agents (tenant_id, template_digest);

-- Append-only, hash-chained audit trail. No FK to tenants: the trail outlives tenants.
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    time DOUBLE PRECISION NOT NULL,
    tenant_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    decision TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_tenant_time ON audit (tenant_id, time);
CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_actor ON audit (actor, time);
CREATE INDEX audit_target ON audit (target, time);

-- The single head row appends lock (FOR UPDATE on PostgreSQL) so the chain has one order.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
