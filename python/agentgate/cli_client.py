"""How the control-plane CLI reaches the REST API: which URL, which key, one HTTP request.

The URL comes from, first match wins: `--config FILE` (its `admin_listen`), `AGENTGATE_URL`,
`url` in the profile file, `AGENTGATE_CONFIG` (its `admin_listen`), else
`http://127.0.0.1:8001` (the default admin listener). The key comes from `AGENTGATE_API_KEY`
or `api_key` in the profile file. A failed connection names the URL it tried and where that URL
came from.

Requests go through the standard library's `urllib` on purpose: the CLI sends one request per
command, so a pooled or async client buys nothing, and the installed package then needs no HTTP
client beyond its own dependencies. Redirects are not followed, so the key is never re-sent to
another address.
"""

from __future__ import annotations

import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agentgate.config import ConfigError, load_config
from agentgate.settings import Settings

__all__ = ["DEFAULT_URL", "PROFILE", "Api", "CliError", "admin_url", "api_for", "resolve_url"]

DEFAULT_URL = "http://127.0.0.1:8001"
PROFILE = Path("~/.config/agentgate/profile.toml")
TIMEOUT = 30.0


class CliError(Exception):
    """A failure to report on stderr with exit code 1."""


def profile_path() -> Path:
    """The profile file (`AGENTGATE_PROFILE_FILE` overrides the default location)."""
    return Settings.from_env().profile_file or PROFILE.expanduser()


def load_profile(name: str | None) -> dict[str, Any]:
    """The profile's top level, or its `[name]` table."""
    path = profile_path()
    if not path.exists():
        if name:
            raise CliError(f"profile {name!r} not found: {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CliError(f"cannot read the profile file {path}: {e}") from None
    if name:
        section = data.get(name)
        if not isinstance(section, dict):
            raise CliError(f"profile {name!r} not found in {path}")
        return section
    return data


def admin_url(admin_listen: str) -> str:
    """The URL a client on this host uses for an `admin_listen` HOST:PORT."""
    host, _, port = admin_listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"  # a wildcard bind is reachable on loopback
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _from_config(path: str, how: str) -> tuple[str, str]:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise CliError(f"cannot take the API URL from {how}: {e}") from None
    return admin_url(cfg.admin_listen), f"admin_listen of {path} ({how})"


def resolve_url(config: str | None, profile: Mapping[str, Any]) -> tuple[str, str]:
    """The API base URL and where it came from (see the module docstring for the order)."""
    if config:
        return _from_config(config, "--config")
    env = Settings.from_env()
    env_url = env.url
    if env_url:
        return env_url.rstrip("/"), "AGENTGATE_URL"
    if profile.get("url"):
        return str(profile["url"]).rstrip("/"), f"url in {profile_path()}"
    env_config = env.config_path
    if env_config:
        return _from_config(env_config, "AGENTGATE_CONFIG")
    return DEFAULT_URL, "the default (no --config, AGENTGATE_URL, profile url or AGENTGATE_CONFIG)"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError: the key stays with this URL


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True, slots=True)
class Api:
    """The REST API as the CLI sees it: base URL (and its source) plus the API key."""

    url: str
    source: str
    key: str

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        """Send one request; the decoded JSON (or text) body, else CliError naming the problem."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        data = None
        if json is not None:
            data = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as r:
                return _decode(r.headers.get("content-type", ""), r.read())
        except urllib.error.HTTPError as e:
            raise CliError(_problem(e)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise CliError(
                f"cannot reach the agentgate API at {self.url} ({reason}).\n"
                f"That URL is {self.source}. Point the CLI at the admin listener with "
                f'AGENTGATE_URL=http://HOST:PORT, `url = "…"` in {profile_path()} '
                f"(a [NAME] table with --profile NAME), or --config FILE (its admin_listen)."
            ) from None


def _decode(ctype: str, raw: bytes) -> Any:
    if ctype.startswith("application/json"):
        return orjson.loads(raw)
    return raw.decode("utf-8", "replace")


def _problem(e: urllib.error.HTTPError) -> str:
    raw = e.read()
    if 300 <= e.code < 400:
        return f"HTTP {e.code} redirect to {e.headers.get('location')!r}: not followed"
    try:
        p = orjson.loads(raw)
    except orjson.JSONDecodeError:
        p = None
    if not isinstance(p, dict):
        return f"HTTP {e.code}: {raw[:200].decode('utf-8', 'replace')}"
    msg = f"{p.get('status')} {p.get('title')}: {p.get('detail')}"
    if p.get("path"):
        msg += f" (at {p['path']})"
    return msg


def api_for(config: str | None, profile_name: str | None) -> Api:
    """The API to talk to for a command's `--config` / `--profile` options."""
    prof = load_profile(profile_name)
    url, source = resolve_url(config, prof)
    key = Settings.from_env().api_key or prof.get("api_key")
    if not key:
        raise CliError(
            f"no API key: set AGENTGATE_API_KEY or api_key in {profile_path()} "
            "(`agentgate admin bootstrap` prints the first one)"
        )
    return Api(url, source, str(key))
