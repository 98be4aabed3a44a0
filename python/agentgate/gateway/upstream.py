"""Upstream HTTP client: one aiohttp session (keep-alive connector) per agent pool.

Kept behind this module so a Rust client in the core can replace it without touching the handler.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from agentgate.config import Agent, GatewayConfig

__all__ = ["UpstreamClient", "make_url"]


def make_url(base: str, path_and_query: str) -> URL:
    """Join an endpoint base URL and a request target without re-quoting what the client sent."""
    return URL(base + path_and_query, encoded=True)


class UpstreamClient:
    """Pooled, streaming HTTP/1.1 client sessions keyed by agent name; create inside the loop."""

    def __init__(self, config: GatewayConfig) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        for name, agent in config.agents.items():
            self._sessions[name] = self._new_session(agent)
        self.in_flight = 0

    @staticmethod
    def _new_session(agent: Agent) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=agent.max_concurrency * max(1, len(agent.endpoints)),
            limit_per_host=agent.max_concurrency,
            keepalive_timeout=30,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        t = agent.timeouts
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect or None),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    def session(self, agent: str) -> aiohttp.ClientSession:
        """The session for an agent pool."""
        return self._sessions[agent]

    async def close(self) -> None:
        """Close every session and its pooled connections."""
        for s in self._sessions.values():
            await s.close()
