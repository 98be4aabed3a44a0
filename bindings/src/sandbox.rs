//! Bindings of `agentgate_core::sandbox`: seccomp profiles for agent replicas.

use agentgate_core::sandbox::{self, DenyAction as CoreAction, SandboxError};
use pyo3::prelude::*;

use crate::enums::{named_enum, py_enum};
use crate::errors::{SANDBOX_INSTALL_ERROR, SANDBOX_PROFILE_ERROR};

py_enum! {
    /// What a denied syscall does; `str()` is its config name ("errno", "kill").
    DenyAction mirrors CoreAction {
        /// The call fails with EPERM.
        Errno,
        /// The kernel kills the whole process.
        Kill,
    }
}

named_enum!(DenyAction, CoreAction);

py_enum! {
    /// Why a seccomp profile cannot be built or installed.
    SandboxErrorKind {
        /// A syscall name this architecture does not have.
        UnknownSyscall,
        /// seccomp is not supported on this architecture.
        UnsupportedArch,
        /// The compiler refused the profile.
        Compile,
        /// The kernel refused the filter.
        Install,
    }
}

fn to_py(e: SandboxError) -> PyErr {
    let message = e.to_string();
    let (class, kind) = match e {
        SandboxError::UnknownSyscall(_) => {
            (&SANDBOX_PROFILE_ERROR, SandboxErrorKind::UnknownSyscall)
        }
        SandboxError::UnsupportedArch => {
            (&SANDBOX_PROFILE_ERROR, SandboxErrorKind::UnsupportedArch)
        }
        SandboxError::Compile(_) => (&SANDBOX_PROFILE_ERROR, SandboxErrorKind::Compile),
        SandboxError::Install(_) => (&SANDBOX_INSTALL_ERROR, SandboxErrorKind::Install),
    };
    class.err(message, move |exc| exc.setattr("kind", kind))
}

/// The default deny list plus `extra`, sorted.
#[pyfunction]
#[pyo3(signature = (extra=Vec::new()))]
fn seccomp_deny_list(extra: Vec<String>) -> Vec<String> {
    sandbox::deny_list(&extra)
}

/// Compiles the profile without installing it (SandboxProfileError names an unknown syscall).
#[pyfunction]
#[pyo3(signature = (extra=Vec::new(), on_deny=DenyAction::Errno))]
fn seccomp_check(extra: Vec<String>, on_deny: DenyAction) -> PyResult<usize> {
    let p = sandbox::compile(&extra, on_deny.into()).map_err(to_py)?;
    Ok(p.len())
}

/// Compiles and installs the profile on the calling thread (irreversible; SandboxInstallError,
/// an OSError, if the kernel refuses).
#[pyfunction]
#[pyo3(signature = (extra=Vec::new(), on_deny=DenyAction::Errno))]
fn seccomp_install(extra: Vec<String>, on_deny: DenyAction) -> PyResult<()> {
    let p = sandbox::compile(&extra, on_deny.into()).map_err(to_py)?;
    p.install().map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DenyAction>()?;
    m.add_class::<SandboxErrorKind>()?;
    m.add_function(wrap_pyfunction!(seccomp_deny_list, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_check, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_install, m)?)?;
    Ok(())
}
