"""Request routing: pick the route for (method, host, path, headers) in the Rust core.

Routes are mappings, checked by the core when the table is built; a bad one raises `RouterError`
(a ValueError) with the route's `index` and `id` and the `field` at fault:

    {"id": "echo", "path_prefix": "/agents/echo"}            # or "path" (exact), "path_template"
    {"id": "user", "path_template": "/users/{id}", "methods": ["GET"],
     "host": "*.example.com", "headers": {"x-canary": "1"}}

Prefixes match on segment boundaries (`/agents/echo` matches `/agents/echo/x`, not
`/agents/echoes`). Templates capture whole segments `{name}` and a trailing `{*rest}`; captured
values are raw, not percent-decoded. The most specific route wins: host (exact, then wildcard,
then any), then path (exact, then template with more static parts, then longer prefix), then
method- and header-restricted routes, then the earlier route. `lookup` takes the path without its
query string. `Router.replace` swaps the table atomically: lookups never wait.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from agentgate._core import RouteMatch, Router, RouterError

__all__ = ["RouteConfig", "RouteMatch", "Router", "RouterError"]


class RouteConfig(TypedDict):
    """The shape of one route mapping (exactly one of path, path_prefix, path_template)."""

    id: str
    path: NotRequired[str]
    path_prefix: NotRequired[str]
    path_template: NotRequired[str]
    methods: NotRequired[list[str]]
    host: NotRequired[str]
    headers: NotRequired[dict[str, str]]
