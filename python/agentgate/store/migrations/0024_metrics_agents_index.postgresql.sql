-- Per-agent tables over a tier's time range (agentgate.observe.history: agents_table) read only
-- the agents' own rows (route '*', agent not '*'): a partial index holding every column they
-- read answers them with an index-only scan, in (step, bucket) order, without a heap fetch per
-- row. It replaces 0023's index, which only that query used.
DROP INDEX IF EXISTS metric_traffic_route_time;
CREATE INDEX metric_traffic_agents ON metric_traffic (step, bucket, agent)
    INCLUDE (c_other, c_1xx, c_2xx, c_3xx, c_4xx, c_5xx, in_flight_max, queue_max, latency)
    WHERE route = '*' AND agent <> '*';
