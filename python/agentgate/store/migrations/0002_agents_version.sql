-- Version 2: what the gateway's store sync polls and the factory's drain reads.
-- agents_version is bumped in the same transaction as every agents write, so a gateway worker
-- polls one indexed row per tick and rebuilds its route table only when something changed.
INSERT INTO counters (name, value) VALUES ('agents_version', 0);

-- In-flight requests per draining agent as last reported by each gateway worker
-- (agent id, gateway worker id); the factory deletes a draining agent once every report
-- newer than the drain start says zero. No FK: rows go with the agent's final delete.
CREATE TABLE agent_inflight (
    agent_id TEXT NOT NULL,
    gateway TEXT NOT NULL,
    in_flight INTEGER NOT NULL,
    reported_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (agent_id, gateway)
);
CREATE INDEX agents_state ON agents (state);
