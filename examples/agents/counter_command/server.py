"""Example `command` agent: a stdlib HTTP server on the Unix socket in $AGENTGATE_SOCKET.

It counts work items and checkpoints its progress through the state API
($AGENTGATE_STATE_URL = unix:/…/state.sock), so a replica that crashed or moved resumes:

    POST /work?n=100   count up to n, one step every 10 ms, checkpointing every step
    GET  /progress     {"done": k, "target": n, "resumed_from": j}
    GET  /health       200

Right after start it loads the last checkpoint in the background (a warm replica's request
waits there until an agent claims it) and, if a task was unfinished, resumes it.
Template: ../counter-command.json.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATE = os.environ.get("AGENTGATE_STATE_URL", "").removeprefix("unix:")
STEP = float(os.environ.get("STEP_SECONDS", "0.01"))


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("state")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def load() -> tuple[int, dict[str, Any] | None]:
    """(version, data) of the agent's checkpoint; (0, None) before the first."""
    c = _UnixHTTP(STATE)
    c.request("GET", "/checkpoint")
    r = c.getresponse()
    doc = json.loads(r.read())
    return int(doc["version"]), doc.get("data")


def save(version: int, data: dict[str, Any]) -> int:
    """Save the next checkpoint if ours is still the latest; returns the new version."""
    c = _UnixHTTP(STATE)
    c.request("PUT", "/checkpoint", json.dumps(data), {"If-Match": str(version)})
    r = c.getresponse()
    doc = json.loads(r.read())
    if r.status != 200:
        raise RuntimeError(f"checkpoint refused: {doc}")
    return int(doc["version"])


class Work:
    """The task and its progress (one at a time)."""

    def __init__(self) -> None:
        self.version = 0
        self.done = self.target = 0
        self.resumed_from: int | None = None
        self.lock = threading.Lock()
        self.loaded = threading.Event()
        threading.Thread(target=self.resume, daemon=True).start()

    def resume(self) -> None:
        with self.lock:
            self.version, data = load() if STATE else (0, None)
            data = data or {}
            self.done = int(data.get("done", 0))
            self.target = int(data.get("target", 0))
            if self.done < self.target:
                self.resumed_from = self.done
        self.loaded.set()
        if self.resumed_from is not None:
            self.run()

    def start(self, n: int) -> None:
        self.loaded.wait()
        with self.lock:
            self.done, self.target = 0, n
            self.version = save(self.version, {"done": 0, "target": n})
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while True:
            with self.lock:
                if self.done >= self.target:
                    return
                self.done += 1
                self.version = save(self.version, {"done": self.done, "target": self.target})
            time.sleep(STEP)


WORK: Work


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"ok": True})
        elif self.path == "/progress":
            self._send(
                200,
                {"done": WORK.done, "target": WORK.target, "resumed_from": WORK.resumed_from},
            )
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/work":
            self._send(404, {"error": "not found"})
            return
        n = int(parse_qs(url.query).get("n", ["100"])[0])
        WORK.start(n)
        self._send(202, {"target": n})

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    """Serve on $AGENTGATE_SOCKET."""
    global WORK
    WORK = Work()
    path = os.environ["AGENTGATE_SOCKET"]
    with Server(path, Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
