//! seccomp-bpf profiles for agent replicas, compiled with `seccompiler` (rust-vmm).
//!
//! A profile is a deny list on top of "allow everything else": the default list
//! ([`DEFAULT_DENY`]) plus what a template adds. A denied call fails with `EPERM` or kills the
//! process, as the template says. `clone` with a namespace flag is denied as `unshare` is, and
//! `clone3` answers `ENOSYS` (its flags sit behind a pointer BPF cannot read), so libc falls back
//! to `clone`, where the flags are visible. The syscall names are resolved by seccompiler's own
//! table for the running architecture; an unknown name is an error that names it.

use std::collections::BTreeSet;

use seccompiler::{BpfProgram, TargetArch};
use serde_json::{json, Value};

/// Syscalls every replica is denied: tracing other processes, (un)mounting, new kernels and
/// modules, eBPF, the kernel keyring, new or foreign namespaces, clocks, swap, reboot, raw I/O
/// ports and handle-based opens (the container escapes of the past).
pub const DEFAULT_DENY: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "userfaultfd",
    "adjtimex",
];

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME.
const CLONE_NAMESPACES: u64 = 0x0002_0000
    | 0x0200_0000
    | 0x0400_0000
    | 0x0800_0000
    | 0x1000_0000
    | 0x2000_0000
    | 0x4000_0000
    | 0x80;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// What a denied syscall does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyAction {
    /// The call fails with `EPERM`.
    Errno,
    /// The kernel kills the whole process (SIGSYS, no handler).
    Kill,
}

impl DenyAction {
    /// Every action.
    pub const ALL: [DenyAction; 2] = [DenyAction::Errno, DenyAction::Kill];

    /// The config name: "errno" or "kill".
    pub fn as_str(self) -> &'static str {
        match self {
            DenyAction::Errno => "errno",
            DenyAction::Kill => "kill",
        }
    }
}

impl std::str::FromStr for DenyAction {
    type Err = String;

    /// Parses "errno" or "kill".
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&DenyAction::ALL, DenyAction::as_str, "seccomp action", s)
    }
}

/// Why a profile cannot be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A syscall name this architecture does not have.
    #[error("unknown syscall {0:?}")]
    UnknownSyscall(String),
    /// The architecture has no seccomp table in seccompiler.
    #[error("seccomp is not supported on this architecture")]
    UnsupportedArch,
    /// The compiler refused the profile.
    #[error("cannot compile the seccomp profile: {0}")]
    Compile(String),
    /// The kernel refused the filter (prctl or seccomp failed).
    #[error("the kernel refused the seccomp filter: {0}")]
    Install(String),
}

/// A compiled profile: the deny list program and the `clone3` → ENOSYS program.
pub struct Profile {
    deny: BpfProgram,
    clone3: BpfProgram,
}

fn arch() -> Result<TargetArch, SandboxError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|_| SandboxError::UnsupportedArch)
}

fn action_json(action: DenyAction) -> Value {
    match action {
        DenyAction::Errno => json!({ "errno": EPERM }),
        DenyAction::Kill => json!("kill_process"),
    }
}

fn compile_one(filter: Value, arch: TargetArch) -> Result<BpfProgram, SandboxError> {
    let doc = json!({ "f": filter }).to_string();
    let mut map = seccompiler::compile_from_json(doc.as_bytes(), arch).map_err(|e| {
        let text = e.to_string();
        match text.split('"').nth(1) {
            Some(name) if text.contains("ysc") => SandboxError::UnknownSyscall(name.to_string()),
            _ => SandboxError::Compile(text),
        }
    })?;
    map.remove("f")
        .ok_or_else(|| SandboxError::Compile("no program".into()))
}

/// The sorted, de-duplicated deny list: the default one plus `extra`.
pub fn deny_list(extra: &[String]) -> Vec<String> {
    let mut all: BTreeSet<String> = DEFAULT_DENY.iter().map(|s| s.to_string()).collect();
    all.extend(extra.iter().cloned());
    all.into_iter().collect()
}

/// Compile the default profile plus `extra` names; unknown names are refused by name.
pub fn compile(extra: &[String], action: DenyAction) -> Result<Profile, SandboxError> {
    let arch = arch()?;
    for name in extra {
        // checked one by one so the error names the first bad entry
        compile_one(
            json!({"mismatch_action": "allow", "match_action": {"errno": EPERM},
                   "filter": [{"syscall": name}]}),
            arch,
        )
        .map_err(|e| match e {
            SandboxError::Compile(_) => SandboxError::UnknownSyscall(name.clone()),
            other => other,
        })?;
    }
    let mut rules: Vec<Value> = deny_list(extra)
        .into_iter()
        .filter(|n| n != "clone" && n != "clone3")
        .map(|n| json!({ "syscall": n }))
        .collect();
    if extra.iter().any(|n| n == "clone") {
        rules.push(json!({ "syscall": "clone" }));
    } else {
        for bit in 0..64 {
            let flag = 1u64 << bit;
            if CLONE_NAMESPACES & flag != 0 {
                rules.push(json!({"syscall": "clone", "args": [
                    {"index": 0, "type": "qword", "op": {"masked_eq": flag}, "val": flag}
                ]}));
            }
        }
    }
    let deny = compile_one(
        json!({"mismatch_action": "allow", "match_action": action_json(action), "filter": rules}),
        arch,
    )?;
    let clone3_action = if extra.iter().any(|n| n == "clone3") {
        action_json(action)
    } else {
        json!({ "errno": ENOSYS })
    };
    let clone3 = compile_one(
        json!({"mismatch_action": "allow", "match_action": clone3_action,
               "filter": [{"syscall": "clone3"}]}),
        arch,
    )?;
    Ok(Profile { deny, clone3 })
}

impl Profile {
    /// Install on the calling thread (sets no_new_privs first). Call it in a single-threaded
    /// child just before `exec` or before serving: it cannot be undone.
    pub fn install(&self) -> Result<(), SandboxError> {
        for prog in [&self.clone3, &self.deny] {
            seccompiler::apply_filter(prog).map_err(|e| SandboxError::Install(e.to_string()))?;
        }
        Ok(())
    }

    /// Number of BPF instructions (both programs), for tests and diagnostics.
    pub fn len(&self) -> usize {
        self.deny.len() + self.clone3.len()
    }

    /// Whether the profile has no instructions (never, once compiled).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_their_names() {
        for a in DenyAction::ALL {
            assert_eq!(a.as_str().parse::<DenyAction>(), Ok(a));
        }
        assert!("log".parse::<DenyAction>().unwrap_err().contains("errno"));
    }

    #[test]
    fn default_profile_compiles() {
        let p = compile(&[], DenyAction::Errno).expect("compiles");
        assert!(p.len() > DEFAULT_DENY.len());
    }

    #[test]
    fn unknown_syscall_is_named() {
        let err = compile(&["no_such_call".into()], DenyAction::Kill)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no_such_call"), "{err}");
    }

    #[test]
    fn extras_join_the_list_once() {
        let l = deny_list(&["ptrace".into(), "socket".into()]);
        assert_eq!(l.iter().filter(|n| *n == "ptrace").count(), 1);
        assert!(l.contains(&"socket".to_string()));
    }
}
