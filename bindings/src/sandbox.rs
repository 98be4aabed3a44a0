//! Bindings of `agentgate_core::sandbox`: seccomp profiles for agent replicas.

use agentgate_core::sandbox::{self, DenyAction as CoreAction, SandboxError};
use pyo3::prelude::*;

use crate::errors::{unknown_name, SANDBOX_INSTALL_ERROR, SANDBOX_PROFILE_ERROR};

/// What a denied syscall does; `str()` is its config name ("errno", "kill").
#[pyclass(module = "agentgate._core", eq, eq_int, frozen, hash, from_py_object)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyAction {
    /// The call fails with EPERM.
    Errno,
    /// The kernel kills the whole process.
    Kill,
}

impl From<DenyAction> for CoreAction {
    fn from(a: DenyAction) -> Self {
        match a {
            DenyAction::Errno => CoreAction::Errno,
            DenyAction::Kill => CoreAction::Kill,
        }
    }
}

impl From<CoreAction> for DenyAction {
    fn from(a: CoreAction) -> Self {
        match a {
            CoreAction::Errno => DenyAction::Errno,
            CoreAction::Kill => DenyAction::Kill,
        }
    }
}

#[pymethods]
impl DenyAction {
    /// The action named `name` ("errno", "kill"); ValueError otherwise.
    #[new]
    fn new(name: &str) -> PyResult<Self> {
        name.parse::<CoreAction>()
            .map(Into::into)
            .map_err(unknown_name)
    }
    fn __str__(&self) -> &'static str {
        CoreAction::from(*self).as_str()
    }
}

/// Why a seccomp profile cannot be built or installed.
#[pyclass(module = "agentgate._core", eq, eq_int, frozen, hash, from_py_object)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SandboxErrorKind {
    /// A syscall name this architecture does not have.
    UnknownSyscall,
    /// seccomp is not supported on this architecture.
    UnsupportedArch,
    /// The compiler refused the profile.
    Compile,
    /// The kernel refused the filter.
    Install,
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
