-- SLOs and cost (agentgate.observe.slo, agentgate.observe.cost).

CREATE TABLE slos (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Token usage and its price, rolled up per hour and per day (step) and bucket start.
CREATE TABLE cost_usage (
    tenant TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT NOT NULL,
    step INTEGER NOT NULL,
    bucket BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, agent, model, step, bucket)
);
CREATE INDEX cost_usage_time ON cost_usage (step, bucket);

-- Budgets set over the API (the config file's `cost.budgets` apply where none is set here).
CREATE TABLE cost_budgets (
    tenant TEXT PRIMARY KEY,
    amount DOUBLE PRECISION NOT NULL,
    period TEXT NOT NULL,
    action TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
