"""A real `agentgate serve` process for tests: start, wait for its ports, stop; and what tests
use to talk to it: raw requests over a socket, polling a condition, reading its admin listener.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

T = TypeVar("T")

API_KEY = "test-key-1"
API_KEY_HASH = "sha256:" + hashlib.sha256(API_KEY.encode()).hexdigest()


@dataclass
class Gateway:
    """A running gateway process."""

    url: str
    admin: str
    config: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """What the gateway printed so far."""
        return self.log.read_text(errors="replace")


async def bootstrap_admin(data_dir: Path) -> str:
    """Bootstrap the store in `data_dir` (before a gateway opens it); the system admin key."""
    from agentgate.cli_control import bootstrap
    from agentgate.store import open_store

    store = await open_store(None, data_dir)
    try:
        _, _, secret = await bootstrap(store)
    finally:
        await store.close()
    return secret


def start_gateway(config_text: str, tmp: Path, workers: int = 1, timeout: float = 30) -> Gateway:
    """Write the config and run `python -m agentgate serve` on free ports until it serves."""
    cfg = tmp / "agentgate.yaml"
    cfg.write_text(config_text)
    log = tmp / "gateway.log"
    ports = tmp / "ports.json"
    ports.unlink(missing_ok=True)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgate",
            "serve",
            "--config",
            str(cfg),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ports-file",
            str(ports),
            "--workers",
            str(workers),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,  # the default data dir (.agentgate) is relative: one store per test gateway
    )
    end = time.monotonic() + timeout
    # the file appears (atomically) once both listeners serve
    while not ports.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError(log.read_text())
        time.sleep(0.02)
    bound = json.loads(ports.read_text())
    return Gateway(f"http://{bound['listen']}", f"http://{bound['admin']}", cfg, proc, log)


def stop_gateway(gw: Gateway) -> int:
    """SIGTERM and wait; returns the exit code."""
    if gw.proc.poll() is None:
        gw.proc.send_signal(signal.SIGTERM)
    try:
        return gw.proc.wait(40)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        return -9


@contextmanager
def running_gateway(config_text: str, tmp: Path, workers: int = 1) -> Iterator[Gateway]:
    """A gateway for the duration of a `with` block (module fixtures use it)."""
    gw = start_gateway(config_text, tmp, workers=workers)
    try:
        yield gw
    finally:
        stop_gateway(gw)


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0) -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    end = time.monotonic() + within
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {within}s (last: {got!r})")
        await asyncio.sleep(0.02)


async def reconfigure(gw: Gateway, config_text: str, applied: Callable[[Any], bool]) -> None:
    """Rewrite the gateway's config file, SIGHUP it, and wait until `/api/config` (the config
    in force) satisfies `applied`."""
    gw.config.write_text(config_text)
    gw.proc.send_signal(signal.SIGHUP)

    async def in_force() -> bool:
        return applied((await raw_request(gw.admin, get("/api/config"))).json())

    await eventually(in_force)


HTTP_DEFAULTS = {
    "max_header_bytes": 32 * 1024,
    "max_headers": 96,
    "merge_slashes": True,
    "encoded_slash": "decode",
}
"""The config's `http:` section when the file has none."""


@asynccontextmanager
async def http_settings(
    gw: Gateway, config_with: Callable[[str], str], **settings: object
) -> AsyncIterator[Gateway]:
    """The gateway reloaded with these `http:` settings for the block, then without them.

    `config_with(section)` is the module's config with `section` (YAML) added at the top."""
    inline = ", ".join(f"{k}: {str(v).lower()}" for k, v in settings.items())
    await reconfigure(
        gw,
        config_with(f"http: {{{inline}}}"),
        lambda cfg: all(cfg["http"][k] == v for k, v in settings.items()),
    )
    try:
        yield gw
    finally:
        await reconfigure(gw, config_with(""), lambda cfg: cfg["http"] == HTTP_DEFAULTS)


def _host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


@dataclass
class RawResponse:
    """A response read off a socket, as the bytes came."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return orjson.loads(self.body)


async def raw_request(url: str, head: bytes) -> RawResponse:
    """Send `head` (a whole request, `Connection: close` added) to the server of `url` over a
    plain socket, so no client library rewrites the target; read the response to EOF."""
    reader, writer = await asyncio.open_connection(*_host_port(url))
    try:
        first, rest = head.split(b"\r\n", 1)
        writer.write(first + b"\r\nConnection: close\r\n" + rest)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert "chunked" not in headers.get("transfer-encoding", ""), "use a sized response"
    return RawResponse(int(lines[0].split()[1]), headers, body)


def get(path: str, *headers: str) -> bytes:
    """A GET request head for `path` exactly as given, with extra `Name: value` lines."""
    lines = [f"GET {path} HTTP/1.1", "Host: gateway", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")
