-- Version 30 (state): the append-only event log of aggregates (agents, replica checkpoints),
-- its snapshots and projection positions. SQLite assigns positions with AUTOINCREMENT: one
-- writer at a time, so positions become visible in order and never repeat.
CREATE TABLE event_streams (
    stream TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    pruned_to DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX event_streams_name ON event_streams (tenant_id, kind, name);

CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    stream TEXT NOT NULL REFERENCES event_streams (stream) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    type TEXT NOT NULL,
    class TEXT NOT NULL,
    data TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    at DOUBLE PRECISION NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX events_stream_at ON events (stream, at);
CREATE INDEX events_class_at ON events (class, at);

CREATE TABLE event_snapshots (
    stream TEXT NOT NULL REFERENCES event_streams (stream) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (stream, version)
);
CREATE INDEX event_snapshots_at ON event_snapshots (stream, at);

CREATE TABLE projection_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- The current state of every agent, rebuilt from the log by agentgate.state.projection.
CREATE TABLE agent_state_view (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
