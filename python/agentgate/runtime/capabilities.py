"""What this host allows a replica: probed by trying each mechanism in a throwaway child.

    caps = probe()            # {"netns": Capability(True, ...), ...}
    missing(caps, ["seccomp", "netns"])

Each probe forks, tries the real call (unshare, mount, landlock_create_ruleset, a seccomp
filter, a cgroup directory) and reports what the kernel said, so `agentgate doctor`, the API
and a refused create all quote the kernel's own refusal. `python -m agentgate.runtime.capabilities`
prints the probe as JSON (the supervisor runs it once, out of its threaded process).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from agentgate.runtime import cgroups
from agentgate.runtime.isolation import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    LANDLOCK_CREATE_RULESET_VERSION,
    MS_PRIVATE,
    MS_REC,
    SYS_LANDLOCK_CREATE_RULESET,
    _libc,
    _loopback_up,
    _mount,
    libc_call,
)

__all__ = ["Capability", "from_json", "missing", "probe", "probe_subprocess"]


@dataclass(frozen=True, slots=True)
class Capability:
    """Whether a mechanism works here, and the detail (version, or the kernel's refusal)."""

    available: bool
    detail: str


def _in_child(fn: Callable[[], str]) -> Capability:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            out = "ok:" + fn()
        except BaseException as e:  # report whatever the kernel said
            out = f"no:{e}"
        os.write(w, out.encode()[:4000])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    ok, _, detail = text.partition(":")
    if not ok:
        return Capability(False, "the probe child died (killed by a signal)")
    return Capability(ok == "ok", detail)


def _netns() -> str:
    libc_call("unshare", CLONE_NEWNET)
    _loopback_up()
    return "unshare(CLONE_NEWNET) permitted"


def _mountns() -> str:
    libc_call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", "/mnt", "tmpfs", 0, "size=4k")
    return "unshare(CLONE_NEWNS) and mount permitted"


def _landlock() -> str:
    abi = int(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    return f"ABI {abi}"


def _seccomp() -> str:
    from agentgate import _core

    _core.seccomp_install([], _core.DenyAction.Errno)
    try:
        libc_call("unshare", CLONE_NEWNET)
    except OSError as e:
        return f"filter installed; unshare now fails with {e.strerror or e}"
    raise OSError("filter installed but did not deny unshare")


def _cgroups() -> Capability:
    cg = cgroups.detect()
    if cg is None:
        v1, v2 = cgroups.mounts()
        return Capability(
            False,
            f"no writable cgroup hierarchy with {', '.join(cgroups.NEEDED)} "
            f"(v1 controllers: {sorted(v1) or 'none'}; v2 at {v2 or 'none'})",
        )
    name = f"probe-{uuid.uuid4().hex[:8]}"
    try:
        cg.create(name, cgroups.CgroupLimits(cpu=0.5, memory=64 * 2**20, pids=16))
    except OSError as e:
        return Capability(False, f"cgroup v{cg.version}: {e}")
    finally:
        with contextlib.suppress(OSError):
            cg.remove(name)
    return Capability(True, f"v{cg.version}")


def probe() -> dict[str, Capability]:
    """Try every mechanism now (forks; call from a single-threaded process)."""
    root = os.geteuid() == 0
    return {
        "rlimits": Capability(True, "setrlimit"),
        "cgroups": _cgroups(),
        "seccomp": _in_child(_seccomp),
        "netns": _in_child(_netns),
        "mountns": _in_child(_mountns),
        "landlock": _in_child(_landlock),
        "unprivileged_uid": Capability(
            root, "running as root: replicas get uids of their own" if root else "not root"
        ),
    }


def from_json(text: str) -> dict[str, Capability]:
    """Parse the JSON that `python -m agentgate.runtime.capabilities` prints."""
    data = json.loads(text)
    return {k: Capability(bool(v["available"]), str(v["detail"])) for k, v in data.items()}


def probe_subprocess(timeout: float = 30.0) -> dict[str, Capability]:
    """`probe()` in a fresh interpreter (safe from a threaded server process)."""
    out = subprocess.run(
        [sys.executable, "-m", "agentgate.runtime.capabilities"],
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    return from_json(out.stdout.decode())


def missing(caps: Mapping[str, Capability], required: Iterable[str]) -> dict[str, str]:
    """Required mechanisms the host lacks → why."""
    out = {}
    for m in required:
        c = caps.get(m)
        if c is None or not c.available:
            out[m] = c.detail if c is not None else "unknown mechanism"
    return out


def main() -> None:
    """Print the probe as JSON."""
    print(json.dumps({k: asdict(v) for k, v in probe().items()}))


if __name__ == "__main__":
    main()
