-- Alert manager (agentgate.observe.alerts): rules, alert instances with their history,
-- silences, notification channels, notification groups and the delivery outbox.
-- Every table leads with tenant_id; the outbox is written in the same transaction as the alert
-- state change it reports, so a restart loses no notification.

CREATE TABLE alert_rules (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    builtin INTEGER NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    last_notified_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    value DOUBLE PRECISION,
    active INTEGER NOT NULL,
    pending_since DOUBLE PRECISION NOT NULL,
    fired_at DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION,
    acked_at DOUBLE PRECISION,
    acked_by TEXT,
    escalation_level INTEGER NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX alerts_active ON alerts (tenant_id, active, fingerprint);
CREATE INDEX alerts_time ON alerts (tenant_id, pending_since);

CREATE TABLE alert_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_events_time ON alert_events (tenant_id, at);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

CREATE TABLE alert_silences (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    matchers TEXT NOT NULL,
    starts_at DOUBLE PRECISION NOT NULL,
    ends_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX alert_silences_end ON alert_silences (tenant_id, ends_at);

CREATE TABLE alert_channels (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Alertmanager-style aggregation groups, one per (tenant, channel, group labels).
CREATE TABLE alert_groups (
    tenant_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_sent_at DOUBLE PRECISION,
    last_digest TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, group_key, channel)
);

-- What each channel was last told about each alert (firing / resolved).
CREATE TABLE alert_notices (
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (alert_id, channel)
);

CREATE TABLE alert_outbox (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, next_at);
