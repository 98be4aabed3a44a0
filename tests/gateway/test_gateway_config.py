"""Config loading: YAML quirks, units, and errors that name file, field path and reason."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from agentgate.config import (
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
    parse_rate,
    parse_size,
)
from agentgate.gateway.sources import ConfigFile

ROOT = Path(__file__).resolve().parents[2]
GOOD_HASH = "sha256:" + hashlib.sha256(b"k").hexdigest()

BASE = """
agents:
  echo:
    endpoints: [{url: "http://127.0.0.1:9001"}]
    timeouts: {connect: 1s, first_byte: 10s, idle: 60s, total: 0}
    retries:
      {attempts: 2, backoff: {base: 25ms, max: 1s}, on: [connect-failure, reset, 502], budget: 0.2}
routes:
  - match: {path_prefix: /agents/echo, methods: [get, POST]}
    agent: echo
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(text)
    return p


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "examples" / "agentgate.yaml")
    assert "echo" in cfg.agents
    assert cfg.routes[0].auth == "required"


def test_units_and_yaml_on_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    agent = cfg.agents["echo"]
    assert agent.timeouts.connect == 1.0
    assert agent.timeouts.total == 0.0
    assert agent.retries.backoff.base == pytest.approx(0.025)
    # `on:` must not turn into the boolean True, and 502 (an int in YAML) is accepted
    assert agent.retries.on == ("connect-failure", "reset", "502")
    assert cfg.routes[0].match.methods == ("GET", "POST")
    assert cfg.route_ids() == ["echo:/agents/echo"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("25ms", 0.025), ("1s", 1.0), ("0", 0.0), ("2m", 120.0), ("500us", 0.0005), (3, 3.0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5", "1 day", "-1s", "", True, None, -2])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_parse_rate_and_size() -> None:
    assert parse_rate("100/s") == 100.0
    assert parse_rate("6000/m") == 100.0
    assert parse_rate("10/5s") == 2.0
    assert parse_size("64KiB") == 65536
    assert parse_size(10) == 10
    for bad in ("100", "0/s", "x/s", 5):
        with pytest.raises(ValueError):
            parse_rate(bad)


@pytest.mark.parametrize(
    ("patch", "path", "reason"),
    [
        (("connect: 1s", "connect: soon"), "agents.echo.timeouts.connect", "duration"),
        (("connect: 1s", "connect: '-1s'"), "agents.echo.timeouts.connect", "duration"),
        (('"http://127.0.0.1:9001"', '"ftp://x"'), "agents.echo.endpoints[0].url", "http://"),
        (('"http://127.0.0.1:9001"', '"http://h:99999"'), "agents.echo.endpoints[0].url", "port"),
        (("agent: echo", "agent: nope"), "routes[0].agent", "unknown agent 'nope'"),
        (("path_prefix: /agents/echo", "path_prefix: agents"), "routes[0].match.path_prefix", "/"),
        (("budget: 0.2", "budget: 2"), "agents.echo.retries.budget", "less than or equal"),
        (("attempts: 2", "attemps: 2"), "agents.echo.retries.attemps", "unknown field"),
        (("on: [connect-failure", "on: [sometimes"), "agents.echo.retries.on[0]", "Input"),
        (("base: 25ms", "base: 5s"), "agents.echo.retries.backoff.base", "exceed"),
    ],
)
def test_bad_configs_name_file_field_reason(
    tmp_path: Path, patch: tuple[str, str], path: str, reason: str
) -> None:
    assert patch[0] in BASE
    p = write(tmp_path, BASE.replace(patch[0], patch[1]))
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    err = ei.value
    assert err.file == str(p)
    assert err.path == path
    assert reason in err.reason
    assert str(p) in str(err) and path in str(err)


def test_duplicate_route_ids(tmp_path: Path) -> None:
    text = BASE + "  - match: {path_prefix: /agents/echo}\n    agent: echo\n"
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text))
    assert ei.value.path == "routes[1].id"
    assert "duplicate" in ei.value.reason


def test_auth_hash_format_and_duplicates() -> None:
    base = {"agents": {}, "routes": []}
    with pytest.raises(ConfigError) as ei:
        parse_config(base | {"auth": {"api_keys": [{"id": "a", "hash": "md5:abc"}]}}, "f.yaml")
    assert ei.value.path == "auth.api_keys[0].hash"
    assert "sha256:" in ei.value.reason
    keys = [{"id": "a", "hash": GOOD_HASH}, {"id": "a", "hash": "sha256:" + "0" * 64}]
    with pytest.raises(ConfigError) as ei:
        parse_config(base | {"auth": {"api_keys": keys}}, "f.yaml")
    assert ei.value.path == "auth.api_keys[1].id"


def test_rate_limit_key_needs_auth(tmp_path: Path) -> None:
    text = BASE + "    rate_limit: {key: tenant, rate: 10/s}\n"
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text))
    assert ei.value.path == "routes[0].rate_limit.key"


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "agents: [\n"))
    assert "invalid YAML" in ei.value.reason
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in ei.value.reason


def test_redacted_hides_hashes() -> None:
    cfg = parse_config({"auth": {"api_keys": [{"id": "a", "hash": GOOD_HASH}]}})
    assert GOOD_HASH not in str(cfg.redacted())


def test_a_reload_keeps_restart_only_fields_and_says_which(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = write(tmp_path, BASE + 'redis: {url: "redis://10.0.0.1:6379/0"}\nlisten: 127.0.0.1:8000\n')
    f = ConfigFile(p)
    changed = BASE.replace("/agents/echo", "/v2/echo")
    p.write_text(changed + 'redis: {url: "redis://10.0.0.2:6379/0"}\nlisten: 127.0.0.1:9000\n')
    with caplog.at_level(logging.WARNING, logger="agentgate.gateway"):
        assert f.reload()
    # the routes apply now; Redis and the listener stay as the process started with them
    assert f.config.routes[0].match.path_prefix == "/v2/echo"
    assert f.config.redis is not None and f.config.redis.url == "redis://10.0.0.1:6379/0"
    assert f.config.listen == "127.0.0.1:8000"
    [rec] = [r for r in caplog.records if r.name == "agentgate.gateway"]
    msg = rec.getMessage()
    assert str(p) in msg and "listen, redis changed" in msg and "after a restart" in msg
    assert "10.0.0.2" not in msg  # names fields, never values (a URL may hold a password)
    caplog.clear()
    p.write_text(changed + 'redis: {url: "redis://10.0.0.1:6379/0"}\nlisten: 127.0.0.1:8000\n')
    with caplog.at_level(logging.WARNING, logger="agentgate.gateway"):
        assert f.reload()
    assert not caplog.records
