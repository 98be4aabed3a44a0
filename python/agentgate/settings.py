"""Process settings from the environment, read in one place.

Every environment variable agentgate reads is named here; modules take a `Settings` (or its
fields) instead of reading `os.environ` themselves, so tests and embedders pass them in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ENV_API_KEY",
    "ENV_CONFIG",
    "ENV_DATABASE_URL",
    "ENV_DATA_DIR",
    "ENV_PROFILE_FILE",
    "ENV_URL",
    "Settings",
]

ENV_CONFIG = "AGENTGATE_CONFIG"
"""The gateway config file."""
ENV_DATABASE_URL = "AGENTGATE_DATABASE_URL"
"""PostgreSQL (`postgresql://…`) or SQLite (`sqlite:///path`) store; overrides the config."""
ENV_DATA_DIR = "AGENTGATE_DATA_DIR"
"""Directory of the embedded SQLite store; overrides the config's `data_dir`."""
ENV_URL = "AGENTGATE_URL"
"""Admin API base URL for the CLI."""
ENV_API_KEY = "AGENTGATE_API_KEY"
"""API key for the CLI."""
ENV_PROFILE_FILE = "AGENTGATE_PROFILE_FILE"
"""The CLI's profile file (default `~/.config/agentgate/profile.toml`)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the environment says; `None` where it says nothing."""

    config_path: str | None = None
    database_url: str | None = None
    data_dir: Path | None = None
    url: str | None = None
    api_key: str | None = None
    profile_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables above (empty counts as unset)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        data_dir = get(ENV_DATA_DIR)
        profile = get(ENV_PROFILE_FILE)
        return cls(
            config_path=get(ENV_CONFIG),
            database_url=get(ENV_DATABASE_URL),
            data_dir=Path(data_dir) if data_dir else None,
            url=get(ENV_URL),
            api_key=get(ENV_API_KEY),
            profile_file=Path(profile).expanduser() if profile else None,
        )
