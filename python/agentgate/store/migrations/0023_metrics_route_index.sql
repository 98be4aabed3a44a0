-- Per-agent tables read one route ('*') over a tier's time range: equality before the range.
CREATE INDEX metric_traffic_route_time ON metric_traffic (route, step, bucket);
