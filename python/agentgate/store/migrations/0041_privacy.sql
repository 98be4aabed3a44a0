-- Version 41 (security): GDPR data subjects, requests, consent, retention anchor.
-- A subject is stored only as its pseudonym (`subject_ref`: keyed HMAC of tenant + subject id).
-- Personal values elsewhere (audit details …) are encrypted under the subject's own data key;
-- erasure deletes that key (crypto-shredding), so hash-chained entries stay verifiable.

-- Installation keys wrapped by the KEK (the pseudonymisation key).
CREATE TABLE security_keys (
    name TEXT PRIMARY KEY,
    wrapped_key TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE subject_keys (
    tenant_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    wrapped_key TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, subject_ref)
);

-- Records of other modules that belong to a subject (kind: api_key, agent, …).
CREATE TABLE subject_links (
    tenant_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, subject_ref, kind, ref)
);

CREATE TABLE privacy_requests (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    subject_sealed TEXT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    deadline_at DOUBLE PRECISION NOT NULL,
    completed_at DOUBLE PRECISION,
    result TEXT
);
CREATE INDEX privacy_requests_tenant ON privacy_requests (tenant_id, created_at);
CREATE INDEX privacy_requests_open ON privacy_requests (status, deadline_at);

CREATE TABLE consents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted INTEGER NOT NULL,
    source TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX consents_subject ON consents (tenant_id, subject_ref, time);

-- Where the audit chain starts after retention removed its oldest entries: the seq and hash
-- of the last removed entry (verification continues from there instead of the genesis hash).
CREATE TABLE audit_anchor (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
