"""A replica that tries to break out of its sandbox on request (tests only).

Serves HTTP on $AGENTGATE_SOCKET (stdlib only). `GET /try/<what>[?arg=…]` attempts one escape
and answers {"ok": true} if it worked or {"ok": false, "error": "..."} with the kernel's refusal.
`GET /info` shows uid, cgroups, interfaces, rlimits, env.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

libc = ctypes.CDLL(None, use_errno=True)


def _c(rc: int) -> None:
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def t_connect(arg: str) -> None:
    host, _, port = arg.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.recv(10)


def t_loopback(_: str) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname(), timeout=2):
            pass


def t_write(arg: str) -> None:
    with open(arg, "w") as f:
        f.write("x")
    os.unlink(arg)


def t_unshare(_: str) -> None:
    _c(libc.unshare(0x40000000))


def t_mount(_: str) -> None:
    _c(libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None))


def t_ptrace(_: str) -> None:
    _c(libc.ptrace(16, os.getppid(), None, None))  # PTRACE_ATTACH


def t_chmod(arg: str) -> None:
    os.chmod(arg, 0o644)


def t_setuid(_: str) -> None:
    os.setuid(0)


def t_files(arg: str) -> None:
    fds = []
    try:
        for _ in range(int(arg)):
            fds.append(os.open(os.devnull, os.O_RDONLY))
    finally:
        for fd in fds:
            os.close(fd)


def t_alloc(arg: str) -> None:
    blocks = []
    for _ in range(int(arg)):
        b = bytearray(1 << 20)
        b[::4096] = b"x" * len(b[::4096])  # touch every page
        blocks.append(b)


def t_fork(arg: str) -> None:
    pids = []
    try:
        for _ in range(int(arg)):
            pid = os.fork()
            if pid == 0:
                import time

                time.sleep(5)
                os._exit(0)
            pids.append(pid)
    finally:
        for p in pids:
            os.kill(p, 9)
            os.waitpid(p, 0)


def t_listdir(arg: str) -> None:
    os.listdir(arg)


def t_read(arg: str) -> None:
    with open(arg, "rb") as f:
        f.read(1)


def t_exit(arg: str) -> None:
    os._exit(int(arg or 3))


def t_spam(arg: str) -> None:
    line = "x" * 99 + "\n"
    for _ in range(int(arg) // 100):
        sys.stderr.write(line)
    sys.stderr.flush()


def t_sleep(arg: str) -> None:
    import time

    time.sleep(float(arg))


TRIES = {k[2:]: v for k, v in globals().items() if k.startswith("t_")}


def info() -> dict[str, Any]:
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cgroup": open("/proc/self/cgroup").read(),
        "interfaces": [n for _, n in socket.if_nameindex()],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
        "data": resource.getrlimit(resource.RLIMIT_DATA)[0],
        "seccomp": next(
            (ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("Seccomp:")), ""
        ),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AGENTGATE_", "TMPDIR"))},
        "python": sys.executable,
    }


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, {"ok": True})
            return
        if url.path == "/info":
            self._send(200, info())
            return
        if url.path.startswith("/try/"):
            fn = TRIES.get(url.path[5:])
            if fn is None:
                self._send(404, {"error": "unknown try"})
                return
            arg = parse_qs(url.query).get("arg", [""])[0]
            try:
                fn(arg)
            except BaseException as e:  # the refusal is the answer
                self._send(200, {"ok": False, "error": f"{type(e).__name__}: {e}"})
                return
            self._send(200, {"ok": True})
            return
        self._send(404, {"error": "not found"})

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    print("probe agent starting", file=sys.stderr, flush=True)
    if os.environ.get("CRASH_AFTER"):
        import threading
        import time

        def crash() -> None:
            time.sleep(float(os.environ["CRASH_AFTER"]))
            print("probe agent crashing on purpose", file=sys.stderr, flush=True)
            os._exit(3)

        threading.Thread(target=crash, daemon=True).start()
    with Server(os.environ["AGENTGATE_SOCKET"], Handler) as srv:
        srv.serve_forever()
