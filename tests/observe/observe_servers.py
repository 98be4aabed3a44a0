"""Real servers for the alert tests: an HTTP receiver (Slack / webhook payloads), an aiosmtpd SMTP
server with STARTTLS and AUTH, and Debian's Prometheus Alertmanager. Each binds port 0 and
reports the port it got."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web


class _LoopThread:
    """An asyncio loop on its own thread (servers outlive the tests' loops)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Received:
    """One request the receiver took."""

    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """Records every POST; `fail_next` makes the next N answer 500."""

    def __init__(self) -> None:
        self.items: list[Received] = []
        self.fail_next = 0
        self.cond = threading.Condition()
        self._lt = _LoopThread()
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self.cond:
            if self.fail_next > 0:
                self.fail_next -= 1
                return web.Response(status=500, text="try later")
            self.items.append(
                Received(request.path, dict(request.headers), orjson.loads(raw) if raw else None)
            )
            self.cond.notify_all()
        return web.Response(text="ok")

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def start(self) -> Receiver:
        self.port = self._lt.run(self._start())
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        with self.cond:
            return [r for r in self.items if r.path == path]

    def wait(self, path: str, n: int, timeout: float = 20) -> list[Received]:
        with self.cond:
            self.cond.wait_for(lambda: len([r for r in self.items if r.path == path]) >= n, timeout)
            return [r for r in self.items if r.path == path]

    def stop(self) -> None:
        self._lt.run(self._runner.cleanup())
        self._lt.stop()


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentgate-test-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    sender: str
    rcpts: list[str]
    data: bytes
    login: str | None
    tls: bool


@dataclass
class SmtpServer:
    """aiosmtpd requiring STARTTLS and AUTH (user `alerts`, password `s3cret`)."""

    mails: list[Mail] = field(default_factory=list)
    port: int = 0
    user: str = "alerts"
    password: str = "s3cret"

    def start(self, tmp: Path) -> SmtpServer:
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        self.cond = threading.Condition()
        self._lt = _LoopThread()
        ctx = self_signed(tmp)
        server = self

        class Handler:
            async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
                with server.cond:
                    server.mails.append(
                        Mail(
                            envelope.mail_from,
                            list(envelope.rcpt_tos),
                            envelope.content,
                            session.auth_data.login.decode() if session.authenticated else None,
                            session.ssl is not None,
                        )
                    )
                    server.cond.notify_all()
                return "250 OK"

        def authenticator(
            srv: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode() == server.user and data.password.decode() == server.password
            )
            return AuthResult(success=ok, auth_data=data if ok else None)

        async def go() -> int:
            loop = asyncio.get_running_loop()
            self._srv = await loop.create_server(
                lambda: SMTP(
                    Handler(),
                    hostname="127.0.0.1",
                    tls_context=ctx,
                    require_starttls=True,
                    auth_required=True,
                    authenticator=authenticator,
                ),
                "127.0.0.1",
                0,
            )
            return int(self._srv.sockets[0].getsockname()[1])

        self.port = self._lt.run(go())
        return self

    def wait(self, n: int, timeout: float = 20) -> list[Mail]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.mails) >= n, timeout)
            return list(self.mails)

    def stop(self) -> None:
        self._srv.close()
        self._lt.stop()


class Alertmanager:
    """Debian's prometheus-alertmanager on a port it picked itself (found from its sockets)."""

    BIN = "/usr/bin/prometheus-alertmanager"

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="agentgate-am-"))

    def start(self) -> Alertmanager:
        import psutil

        cfg = self.dir / "alertmanager.yml"
        cfg.write_text("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n")
        self.log = open(self.dir / "log.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.BIN,
                f"--config.file={cfg}",
                f"--storage.path={self.dir / 'data'}",
                "--web.listen-address=127.0.0.1:0",
                "--cluster.listen-address=",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        p = psutil.Process(self.proc.pid)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {(self.dir / 'log.txt').read_text()}")
            ports = [
                c.laddr.port
                for c in p.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            ]
            if ports:
                self.port = ports[0]
                return self
            time.sleep(0.05)
        raise RuntimeError("alertmanager did not listen within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def required(what: str, ok: bool, how: str) -> None:
    """Skip with the reason, or fail under CI=true, when a real server is missing."""
    import pytest

    if ok:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} required in CI: {how}", pytrace=False)
    pytest.skip(f"{what} unavailable: {how}")


Poll = Callable[[], bool]
