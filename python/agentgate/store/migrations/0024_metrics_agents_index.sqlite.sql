-- Per-agent tables over a tier's time range (agentgate.observe.history: agents_table) read only
-- the agents' own rows (route '*', agent not '*'): a partial index holding every column they
-- read answers them from the index alone, in (step, bucket) order, without a lookup per row into
-- a table whose rows sit in write order. It replaces 0023's index, which only that query used.
-- SQLite has no INCLUDE: the columns are trailing key columns.
DROP INDEX IF EXISTS metric_traffic_route_time;
CREATE INDEX metric_traffic_agents ON metric_traffic (
    step, bucket, agent, c_other, c_1xx, c_2xx, c_3xx, c_4xx, c_5xx, in_flight_max, queue_max,
    latency, route
) WHERE route = '*' AND agent <> '*';
