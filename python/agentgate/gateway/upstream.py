"""Upstream pools: one keep-alive `Http1Pool` per endpoint of every agent pool.

Kept behind this module so the handler looks an endpoint up with two dict lookups and never
parses a URL per request.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from agentgate.config import Agent, GatewayConfig
from agentgate.gateway.http1 import Http1Pool

__all__ = ["Endpoint", "UpstreamClient"]

_MAX_IDLE_CAP = 1024


class Endpoint:
    """One endpoint: its connection pool and the base path its URL carries ('' for none)."""

    __slots__ = ("pool", "prefix", "url")

    def __init__(self, url: str, agent: Agent, tls: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        t = agent.timeouts
        self.url = url
        self.prefix = parts.path.rstrip("/")
        self.pool = Http1Pool(
            host,
            parts.port or (443 if https else 80),
            max_idle=min(max(agent.max_concurrency, 1), _MAX_IDLE_CAP),
            connect_timeout=t.connect or None,
            first_byte_timeout=t.first_byte or None,
            idle_timeout=t.idle or None,
            ssl=tls if https else None,
            server_hostname=host if https else None,
        )

    def target(self, path_and_query: str) -> str:
        """The request target on this endpoint for a gateway-side path and query."""
        prefix = self.prefix
        return prefix + path_and_query if prefix else path_and_query


class UpstreamClient:
    """Endpoints keyed by agent name, then endpoint URL; create inside the worker's loop."""

    def __init__(self, config: GatewayConfig) -> None:
        tls: ssl.SSLContext | None = None
        self.endpoints: dict[str, dict[str, Endpoint]] = {}
        for name, agent in config.agents.items():
            eps: dict[str, Endpoint] = {}
            for ep in agent.endpoints:
                if tls is None and ep.url.startswith("https:"):
                    tls = ssl.create_default_context()
                eps[ep.url] = Endpoint(ep.url, agent, tls)
            self.endpoints[name] = eps
        self.in_flight = 0

    def endpoint(self, agent: str, url: str) -> Endpoint:
        """The endpoint of an agent pool by URL (KeyError if the config has no such one)."""
        return self.endpoints[agent][url]

    async def close(self) -> None:
        """Close idle connections; busy ones close when their response ends."""
        for eps in self.endpoints.values():
            for ep in eps.values():
                ep.pool.close()
