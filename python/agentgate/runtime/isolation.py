"""Isolation applied inside a replica's process, after fork and before exec or serving.

Order matters and is fixed here (`apply`):
1. session and parent-death signal (a replica never outlives its supervisor or fork server);
2. join the replica's cgroups (limits hold from the first allocation on);
3. rlimits: address space for data, open files, processes, no core dumps;
4. network namespace (`none`: no interface at all; `loopback`: only `lo`, up; `egress`: host's);
5. mount namespace: everything read-only, the replica's run directory writable, a private tmpfs
   scratch, directories the unprivileged uid could not traverse masked by a tmpfs that shows only
   what the replica needs (e.g. the interpreter under `/root/.pyenv`);
6. Landlock: writes only below the run directory and scratch (where the kernel has it);
7. unprivileged uid/gid (when running as root);
8. seccomp-bpf last (the default deny list plus the template's, compiled by the core).

Namespaces and mounts go through libc by ctypes: Python 3.11 has no `os.unshare`, and the calls
are single syscalls with no state to manage.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import resource
import signal
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IsolationError", "Plan", "apply", "blocked_dirs", "libc_call"]

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
# Landlock (uapi/linux/landlock.h)
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
# every filesystem write right of ABI 1..3 (make_*, remove_*, write_file, truncate, refer)
_LL_WRITE = (
    (1 << 1)  # write_file
    | (1 << 4)  # remove_dir
    | (1 << 5)  # remove_file
    | (1 << 6)  # make_char
    | (1 << 7)  # make_dir
    | (1 << 8)  # make_reg
    | (1 << 9)  # make_sock
    | (1 << 10)  # make_fifo
    | (1 << 11)  # make_block
    | (1 << 12)  # make_sym
)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class IsolationError(OSError):
    """A mechanism the plan requires could not be applied (names it and the kernel's error)."""


def libc_call(name: str, *args: object) -> int:
    """Call a libc function; OSError with errno when it returns -1."""
    fn = getattr(_libc, name)
    rc = int(fn(*args))
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{name}: {os.strerror(e)}")
    return rc


@dataclass(frozen=True, slots=True)
class Plan:
    """What to apply in one replica (built by the supervisor from the template and the host's
    capabilities; `required` names mechanisms whose failure must stop the replica)."""

    run_dir: str
    network: str = "none"
    cgroup_procs: tuple[str, ...] = ()
    memory: int | None = None
    open_files: int = 4096
    processes: int = 256
    netns: bool = True
    mountns: bool = True
    landlock: bool = False
    scratch: str | None = None
    scratch_size: int = 64 * 2**20
    expose: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None
    seccomp: bool = True
    seccomp_deny: tuple[str, ...] = ()
    seccomp_action: str = "errno"
    required: frozenset[str] = field(default_factory=frozenset)


def _need(plan: Plan, mechanism: str, e: BaseException) -> None:
    if mechanism in plan.required:
        raise IsolationError(getattr(e, "errno", 0) or 0, f"{mechanism}: {e}") from e


def _rlimits(plan: Plan) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (plan.open_files, plan.open_files))
    resource.setrlimit(resource.RLIMIT_NPROC, (plan.processes, plan.processes))
    if plan.memory is not None:
        # a backstop at twice the limit: the cgroup (exact) OOM-kills first where there is one
        resource.setrlimit(resource.RLIMIT_DATA, (plan.memory * 2, plan.memory * 2))


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    libc_call(
        "mount",
        None if src is None else src.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None if data is None else data.encode(),
    )


def _mountinfo() -> list[tuple[str, set[str]]]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")[0].split()
        out.append((fields[4].replace("\\040", " "), set(fields[5].split(","))))
    return out


def blocked_dirs(paths: Iterable[str], uid: int, gid: int) -> dict[str, set[str]]:
    """Directories on the way to `paths` that uid/gid could not traverse → children to keep."""
    out: dict[str, set[str]] = {}
    for p in paths:
        parts = Path(p).resolve().parts
        for i in range(1, len(parts) - 1):
            d = Path(*parts[: i + 1])
            try:
                st = d.stat()
            except OSError:
                break
            if st.st_uid == uid:
                ok = bool(st.st_mode & 0o100)
            elif st.st_gid == gid:
                ok = bool(st.st_mode & 0o010)
            else:
                ok = bool(st.st_mode & 0o001)
            if not ok:
                out.setdefault(str(d), set()).add(parts[i + 1])
                break
    return out


def _mask(blocked: dict[str, set[str]]) -> None:
    # keep each needed child by an O_PATH fd, cover the directory with a tmpfs, bind it back
    for d, keep in sorted(blocked.items()):
        fds = {k: os.open(os.path.join(d, k), os.O_PATH) for k in keep}
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for k, fd in fds.items():
            target = os.path.join(d, k)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target, 0o755)
            else:
                Path(target).touch(0o644)
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None)
            os.close(fd)


def _mount_ns(plan: Plan) -> None:
    libc_call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    # the run directory becomes a mount of its own so the read-only pass can skip it
    _mount(plan.run_dir, plan.run_dir, None, MS_BIND, None)
    if plan.scratch is not None:
        os.makedirs(plan.scratch, exist_ok=True)
        tmpfs = f"mode=0700,size={plan.scratch_size}"
        if plan.uid is not None:
            tmpfs += f",uid={plan.uid},gid={plan.gid if plan.gid is not None else plan.uid}"
        _mount("tmpfs", plan.scratch, "tmpfs", MS_NOSUID | MS_NODEV, tmpfs)
    if plan.uid is not None:
        _mask(blocked_dirs(plan.expose, plan.uid, plan.gid if plan.gid is not None else plan.uid))
    keep_rw = {plan.run_dir, *([plan.scratch] if plan.scratch else [])}
    for point, opts in _mountinfo():
        if point in keep_rw or point.startswith(("/proc", "/dev")) or "ro" in opts:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for name, bit in _MOUNT_FLAGS.items():
            if name in opts:
                flags |= bit
        with contextlib.suppress(OSError):  # a mount gone meanwhile, or one we may not touch
            _mount(None, point, None, flags, None)


def _landlock(writable: Sequence[str]) -> None:
    abi = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        raise OSError(ctypes.get_errno(), "landlock unavailable")
    rights = _LL_WRITE
    if abi >= 2:
        rights |= 1 << 13  # refer (link/rename across directories)
    if abi >= 3:
        rights |= 1 << 14  # truncate
    attr = struct.pack("QQ", rights, 0)  # handled_access_fs, handled_access_net
    buf = ctypes.create_string_buffer(attr)
    size = 8 if abi < 4 else 16
    fd = int(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, buf, size, 0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        for path in writable:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, pfd))
                if _libc.syscall(SYS_LANDLOCK_ADD_RULE, fd, LANDLOCK_RULE_PATH_BENEATH, rule, 0):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(pfd)
        libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, fd, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(fd)


def apply(plan: Plan) -> list[str]:
    """Apply the plan to the calling (single-threaded, freshly forked) process; returns the
    mechanisms in force. Raises IsolationError when a required one fails."""
    applied = ["rlimits"]
    core: Any = None
    if plan.seccomp:
        try:  # imported while every path is still readable
            import agentgate._core

            core = agentgate._core
        except ImportError as e:
            _need(plan, "seccomp", e)
    with contextlib.suppress(OSError):
        libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    pid = str(os.getpid())
    if plan.cgroup_procs:
        try:
            for procs in plan.cgroup_procs:
                with open(procs, "w") as f:
                    f.write(pid)
            applied.append("cgroups")
        except OSError as e:
            _need(plan, "cgroups", e)
    _rlimits(plan)
    if plan.network != "egress" and plan.netns:
        try:
            libc_call("unshare", CLONE_NEWNET)
            if plan.network == "loopback":
                _loopback_up()
            applied.append("netns")
        except OSError as e:
            _need(plan, "netns", e)
    if plan.mountns:
        try:
            _mount_ns(plan)
            applied.append("mountns")
        except OSError as e:
            _need(plan, "mountns", e)
    if plan.landlock:
        try:
            _landlock([plan.run_dir, *([plan.scratch] if plan.scratch else [])])
            applied.append("landlock")
        except OSError as e:
            _need(plan, "landlock", e)
    if plan.uid is not None:
        gid = plan.gid if plan.gid is not None else plan.uid
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(plan.uid, plan.uid, plan.uid)
            # a credential change clears the parent-death signal: set it again as the new uid
            libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() == 1:
                os._exit(1)  # the parent died in between
            applied.append("unprivileged_uid")
        except OSError as e:
            _need(plan, "unprivileged_uid", e)
    if core is not None:
        try:
            core.seccomp_install(list(plan.seccomp_deny), core.DenyAction(plan.seccomp_action))
            applied.append("seccomp")
        except OSError as e:
            _need(plan, "seccomp", e)
    return applied
