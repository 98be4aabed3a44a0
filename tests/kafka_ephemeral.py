"""A throwaway single-node Apache Kafka (KRaft) for tests, from the Maven Central jars.

`scripts/kafka.sh` resolves `org.apache.kafka:kafka_2.13` with its runtime dependencies and an
SLF4J binding (slf4j-simple, so the broker logs to stderr, which goes to `kafka.log` here and
into the failing test's report) into `~/.cache/agentgate/kafka-<version>/libs`. This module
formats a log dir (`kafka.tools.StorageTool format`), then runs `kafka.Kafka` with
`process.roles=broker,controller`, a one-voter quorum and every replication factor and min
ISR at 1. Kafka cannot report a port it picked itself, so free ports are picked right before
the start, and the start is retried with new ones when the broker says the address is in use.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from service_check import terminate

__all__ = ["KAFKA_VERSION", "KafkaBroker", "KafkaUnavailable", "ephemeral_kafka", "kafka_libs"]

KAFKA_VERSION = os.environ.get("AGENTGATE_KAFKA_VERSION", "4.1.1")


class KafkaUnavailable(RuntimeError):
    """Java or the Kafka jars are missing, or the broker did not start."""


def kafka_libs() -> Path:
    """Where scripts/kafka.sh puts the jars."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentgate" / f"kafka-{KAFKA_VERSION}" / "libs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KafkaBroker:
    """One broker+controller process in `dir`."""

    def __init__(self, java: str, libs: Path, dir: Path) -> None:
        self.java = java
        self.libs = libs
        self.dir = dir
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def bootstrap(self) -> str:
        """host:port of the PLAINTEXT listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def logfile(self) -> Path:
        """The broker's log (stdout + stderr)."""
        return self.dir / "kafka.log"

    def log(self, tail: int = 200_000) -> str:
        """The end of the broker's log."""
        try:
            data = self.logfile.read_bytes()
        except OSError:
            return ""
        return data[-tail:].decode(errors="replace")

    def _properties(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # tests kill consumers and want the group to notice within a second or two
            "group.min.session.timeout.ms": "500",
            "auto.create.topics.enable": "false",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _cp(self) -> list[str]:
        return ["-cp", str(self.libs / "*")]

    def _format(self, props: Path) -> None:
        shutil.rmtree(self.dir / "data", ignore_errors=True)
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        r = subprocess.run(
            [
                self.java,
                "-XX:TieredStopAtLevel=1",
                "-Xshare:auto",
                *self._cp(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster,
                "-c",
                str(props),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if r.returncode != 0:
            raise KafkaUnavailable(
                "kafka storage format failed: " + (r.stdout + r.stderr).decode(errors="replace")
            )

    def start(self, timeout: float = 90.0, *, fresh: bool = True, attempts: int = 5) -> None:
        """Start the broker (formatting a fresh log dir unless `fresh=False`)."""
        for attempt in range(attempts):
            if fresh or not self.port:
                self.port, self.controller_port = _free_port(), _free_port()
            props = self._properties()
            if fresh:
                self._format(props)
            if self._run(props, timeout):
                return
            if attempt == attempts - 1 or "Address already in use" not in self.log(20_000):
                break
            fresh = True  # new ports, new log dir
        raise KafkaUnavailable("kafka did not start:\n" + self.log(20_000))

    def _run(self, props: Path, timeout: float) -> bool:
        log = open(self.logfile, "ab")  # noqa: SIM115 - lives as long as the broker
        self._log_offset = self.logfile.stat().st_size
        self.proc = subprocess.Popen(
            [
                self.java,
                "-Xmx512m",
                "-Xms128m",
                "-XX:+UseSerialGC",
                "-Djava.awt.headless=true",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                *self._cp(),
                "kafka.Kafka",
                str(props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._new_log()
            if "Kafka Server started" in text:
                return True
            if self.proc.poll() is not None:
                self.proc = None
                return False
            time.sleep(0.05)
        self.stop()
        return False

    def _new_log(self) -> str:
        try:
            with open(self.logfile, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop it (SIGTERM: a controlled shutdown; SIGKILL after 30 s)."""
        terminate(self.proc, 30)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same ports and data."""
        self.stop()
        self.start(fresh=False)


@contextlib.contextmanager
def ephemeral_kafka() -> Iterator[KafkaBroker]:
    """A started broker in a temp dir, removed afterwards."""
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailable("java is not installed (apt-get install -y default-jre-headless)")
    libs = kafka_libs()
    if not libs.is_dir() or not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(f"kafka jars missing in {libs} (run scripts/kafka.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="agentgate-kafka-"))
    broker = KafkaBroker(java, libs, tmp)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
