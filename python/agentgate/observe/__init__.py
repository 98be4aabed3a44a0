"""Observability: Prometheus metrics for the gateway (multi-process aware)."""
