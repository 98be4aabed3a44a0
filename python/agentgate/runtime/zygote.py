"""Fork server (zygote) of `app` agents: one per template version, imports the app once.

    python -m agentgate.runtime.zygote FD   # FD: a socketpair end to the supervisor

The first line from the supervisor is `{"app": "mod:attr", "python_path": [...], "env": {...}}`.
The zygote imports uvicorn and the app, calls `gc.freeze()` (so the imported objects' pages stay
shared with every child instead of being dirtied by the collector) and answers `{"op": "ready"}`
or `{"op": "error", "error": …}`. Then, per request line
`{"op": "fork", "id", "plan", "env", "socket", "stdout", "stderr", "grace"}`, it forks a child
that applies the isolation plan and serves the app with uvicorn on the Unix socket, and answers
`{"op": "forked", "id", "pid"}`. Children's exits come back as `{"op": "exit", "pid", "status"}`
(status as `Popen.returncode`: negative for a signal).

The zygote stays single-threaded (fork is only safe then); an app that starts threads at import
is refused.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from agentgate.runtime.isolation import PR_SET_PDEATHSIG, IsolationError, apply, libc_call
from agentgate.runtime.launch import plan_from_json

__all__ = ["main"]


def _send(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(json.dumps(msg).encode() + b"\n")


def _load(spec: dict[str, Any]) -> Any:
    for p in reversed(spec.get("python_path") or []):
        sys.path.insert(0, p)
    os.environ.update(spec.get("env") or {})
    module_name, _, attr = str(spec["app"]).partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _serve(app: Any, job: dict[str, Any], control: socket.socket) -> None:
    """In the child: isolate, then serve until SIGTERM (never returns)."""
    try:
        control.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        out = os.open(job["stdout"], flags, 0o640)
        err = os.open(job["stderr"], flags, 0o640)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        apply(plan_from_json(job["plan"]))
        os.environ.clear()
        os.environ.update(job["env"])
        import uvicorn

        config = uvicorn.Config(
            app,
            uds=job["socket"],
            lifespan="auto",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=int(job.get("grace", 10)),
        )
        uvicorn.Server(config).run()
    except IsolationError as e:
        print(f"agentgate: isolation failed: {e}", file=sys.stderr, flush=True)
        os._exit(126)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def main() -> None:
    """Serve fork requests on the control socket until the supervisor closes it."""
    parent = os.getppid()
    # die with the supervisor even if it cannot close us (killed, or its worker was)
    libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    control = socket.socket(fileno=int(sys.argv[1]))
    reader = control.makefile("rb")
    spec = json.loads(reader.readline())
    try:
        # imported once here and shared by every child; children cannot read most files later
        import uvicorn
        import uvicorn.lifespan.on
        import uvicorn.loops.asyncio
        import uvicorn.protocols.http.h11_impl
        import uvicorn.server  # noqa: F401

        app = _load(spec)
        if threading.active_count() > 1:
            raise RuntimeError(
                "the app started threads at import; the fork server needs a single-threaded "
                "import (start threads in the ASGI lifespan instead)"
            )
    except BaseException:
        _send(control, {"op": "error", "error": traceback.format_exc()[-4000:]})
        os._exit(1)
    gc.collect()
    gc.freeze()
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the supervisor ends us by closing fd 3
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(rfd, selectors.EVENT_READ, "signal")
    _send(control, {"op": "ready", "pid": os.getpid()})
    buf = b""
    while True:
        for key, _ in sel.select():
            if key.data == "signal":
                with contextlib.suppress(BlockingIOError):
                    os.read(rfd, 4096)
                while True:
                    try:
                        pid, raw = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    _send(control, {"op": "exit", "pid": pid, "status": _status(raw)})
                continue
            chunk = control.recv(65536)
            if not chunk:
                os._exit(0)  # supervisor gone: children die with us (parent-death signal)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                job = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as e:
                    _send(control, {"op": "error", "id": job.get("id"), "error": str(e)})
                    continue
                if pid == 0:
                    sel.close()
                    os.close(rfd)
                    os.close(wfd)
                    _serve(app, job, control)
                _send(control, {"op": "forked", "id": job.get("id"), "pid": pid})


if __name__ == "__main__":
    main()
