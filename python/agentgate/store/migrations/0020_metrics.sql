-- Metrics history (agentgate.observe): rollups per time bucket, one row per series, tier
-- (step, seconds) and bucket start (epoch seconds). Latency is a DDSketch (agentgate._core.Sketch
-- encoding), so quantiles over any range and any set of agents are merges of these blobs.
-- Aggregate rows: route '*' is the whole agent, agent '*' route '*' the whole fleet.

CREATE TABLE metric_traffic (
    agent TEXT NOT NULL,
    route TEXT NOT NULL,
    step INTEGER NOT NULL,
    bucket BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    c_other BIGINT NOT NULL DEFAULT 0,
    c_1xx BIGINT NOT NULL DEFAULT 0,
    c_2xx BIGINT NOT NULL DEFAULT 0,
    c_3xx BIGINT NOT NULL DEFAULT 0,
    c_4xx BIGINT NOT NULL DEFAULT 0,
    c_5xx BIGINT NOT NULL DEFAULT 0,
    latency BYTEA,
    upstream BYTEA,
    in_flight_max BIGINT NOT NULL DEFAULT 0,
    queue_max BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, route, step, bucket)
);
-- fleet-wide scans of one tier and time range (per-agent tables, retention)
CREATE INDEX metric_traffic_time ON metric_traffic (step, bucket, route);

-- Custom and business metrics: counters, gauges and histograms with labels, per tenant.
CREATE TABLE metric_series (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    agent TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL,
    labels_key TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (tenant_id, name, agent, labels_key)
);
CREATE INDEX metric_series_name ON metric_series (tenant_id, name);

CREATE TABLE metric_points (
    series_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    bucket BIGINT NOT NULL,
    count BIGINT NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    first DOUBLE PRECISION NOT NULL,
    last DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    sketch BYTEA,
    PRIMARY KEY (series_id, step, bucket)
);
CREATE INDEX metric_points_time ON metric_points (step, bucket);
