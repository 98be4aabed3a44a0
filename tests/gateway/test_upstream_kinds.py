"""Upstream kinds end to end (issue 9.2): `unix:` socket endpoints, `https://` endpoints
trusted through `tls.ca_file` (a CA made here), WebSocket passthrough, SSE, and request and
response bodies far larger than memory would like, streamed both ways with no size cap."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_process import Gateway, eventually, running_gateway
from upstreams import Upstream

MIB = 1024 * 1024
BIG = 50 * MIB
# far below BIG: what streaming costs (buffers, allocator slack), not what buffering would
RSS_MARGIN = 20 * MIB


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file returned) and a server context for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("agentgate test CA"))
        .issuer_name(_name("agentgate test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ca_file, ctx


class Upstreams:
    """The module's upstreams: on a Unix socket, over TLS, and plain."""

    def __init__(self, directory: Path) -> None:
        self.ca_file, ctx = make_pki(directory)
        self.unix = Upstream("unix", unix=str(directory / "agent.sock")).start()
        self.tls = Upstream("tls", tls=ctx).start()

    def stop(self) -> None:
        self.unix.stop()
        self.tls.stop()


def config(ups: Upstreams, plain: Upstream) -> str:
    """One agent per kind of endpoint."""
    no_retry = "retries: {attempts: 0}"
    return f"""
agents:
  unix: {{endpoints: [{{url: "{ups.unix.url}"}}], {no_retry}}}
  tls: {{endpoints: [{{url: "{ups.tls.url}"}}], tls: {{ca_file: "{ups.ca_file}"}}, {no_retry}}}
  untrusted: {{endpoints: [{{url: "{ups.tls.url}"}}], {no_retry}}}
  plain: {{endpoints: [{{url: "{plain.url}"}}], {no_retry}}}
routes:
  - {{id: unix, match: {{path_prefix: /unix}}, agent: unix, strip_prefix: true}}
  - {{id: tls, match: {{path_prefix: /tls}}, agent: tls, strip_prefix: true}}
  - {{id: untrusted, match: {{path_prefix: /untrusted}}, agent: untrusted, strip_prefix: true}}
  - {{id: plain, match: {{path_prefix: /plain}}, agent: plain, strip_prefix: true}}
"""


@pytest.fixture(scope="module")
def ups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    u = Upstreams(tmp_path_factory.mktemp("kinds-up"))
    yield u
    u.stop()


@pytest.fixture(scope="module")
def gw(
    ups: Upstreams, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(config(ups, upstream), tmp_path_factory.mktemp("kinds")) as g:
        yield g


@pytest.mark.parametrize("kind", ["unix", "tls"])
async def test_request_and_sse_through_each_kind(
    gw: Gateway, ups: Upstreams, http: aiohttp.ClientSession, kind: str
) -> None:
    up = ups.unix if kind == "unix" else ups.tls
    async with http.post(f"{gw.url}/{kind}/echo/a?x=1", data=b"hello") as r:
        assert r.status == 200
        assert r.headers["X-Upstream"] == kind
        echo = await r.json()
    assert (echo["path"], echo["query"], echo["body_len"]) == ("/echo/a", "x=1", 5)
    # SSE: the first event arrives while the upstream still holds the next one back
    gate = f"sse-{kind}"
    async with http.get(f"{gw.url}/{kind}/sse?key={gate}&events=3&wait={gate}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert first == b"id: 0\ndata: event 0\n\n"
        assert gate not in up.finished
        up.event(up.first_chunk, gate).set()
        rest = await asyncio.wait_for(r.content.read(), 5)
    assert rest.count(b"data: event") == 2


async def test_tls_without_the_ca_is_a_502(gw: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gw.url}/untrusted/echo") as r:
        assert r.status == 502
        assert r.headers["content-type"] == "application/problem+json"
        body = await r.json(content_type=None)
    assert body["type"] == "urn:agentgate:problem:upstream_connect_failure"
    assert "TLS" in body["detail"] and "certificate" in body["detail"]


@pytest.mark.parametrize("kind", ["plain", "unix", "tls"])
async def test_websocket_passthrough(
    gw: Gateway, ups: Upstreams, upstream: Upstream, http: aiohttp.ClientSession, kind: str
) -> None:
    up = {"plain": upstream, "unix": ups.unix, "tls": ups.tls}[kind]
    before = up.ws_sessions
    async with http.ws_connect(f"{gw.url}/{kind}/ws") as ws:
        for i in range(3):
            await ws.send_str(f"hello {i}")
            assert await asyncio.wait_for(ws.receive_str(), 5) == f"{up.name}: hello {i}"
        await ws.send_bytes(b"\x00\x01\x02")
        assert await asyncio.wait_for(ws.receive_bytes(), 5) == b"\x02\x01\x00"
    assert up.ws_sessions == before + 1

    async def released() -> bool:
        # the tunnel held the agent's slot until the socket closed
        async with http.get(f"{gw.admin}/api/health/agents") as r:
            return bool((await r.json())[kind]["in_flight"] == 0)

    await eventually(released)


class PeakRss:
    """Samples a process's RSS on a thread until stopped; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> int:
        """Stop sampling; returns how far the peak rose above the start."""
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak - self.base


async def test_large_bodies_stream_both_ways(
    gw: Gateway, upstream: Upstream, http: aiohttp.ClientSession
) -> None:
    # warm up the paths (connections, buffers) so the measure is the transfer's alone
    async with http.post(f"{gw.url}/plain/upload?key=warm", data=os.urandom(MIB)) as r:
        assert r.status == 200
    async with http.get(f"{gw.url}/plain/size/{MIB}") as r:
        assert len(await r.read()) == MIB
    chunk = os.urandom(MIB)
    digest = hashlib.sha256(chunk * (BIG // MIB)).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(BIG // MIB):
            yield chunk

    rss = PeakRss(gw.proc.pid)
    async with http.post(f"{gw.url}/plain/upload?key=big-up", data=body()) as r:
        assert r.status == 200
        got = await r.json()
    grew = rss.stop()
    assert got == {"len": BIG, "sha256": digest}
    assert grew < RSS_MARGIN, f"gateway RSS grew {grew / MIB:.1f} MiB for a 50 MiB upload"

    rss = PeakRss(gw.proc.pid)
    n = 0
    async with http.get(f"{gw.url}/plain/size/{BIG}") as r:
        assert r.status == 200
        async for data in r.content.iter_any():
            n += len(data)
    grew = rss.stop()
    assert n == BIG
    assert grew < RSS_MARGIN, f"gateway RSS grew {grew / MIB:.1f} MiB for a 50 MiB download"
