-- Version 10: the agent runtime (issue 10).
-- Replicas the local supervisor (or the Ray backend) runs, one row each. A row in state 'ready'
-- with an agent_id is an endpoint of that agent: the gateway's snapshot reads them
-- (`SystemAgentRepo.routable`). Writes that change the ready set bump agents_version in the
-- same transaction, as agent writes do.
CREATE TABLE agent_replicas (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    host TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX agent_replicas_agent ON agent_replicas (agent_id, state);

-- Why an agent is not running: 'failed' (bad command/module, readiness) or 'crash_loop', with the
-- last lines of the replica's stderr. No FK: the row goes with the agent's final delete.
CREATE TABLE agent_runtime_status (
    agent_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    stderr TEXT NOT NULL DEFAULT '',
    updated_at DOUBLE PRECISION NOT NULL
);

-- Checkpoints of the replicas' state API (AGENTGATE_STATE_URL): one versioned JSON document per
-- agent, written with optimistic concurrency (compare version, then bump).
CREATE TABLE agent_checkpoints (
    tenant_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
