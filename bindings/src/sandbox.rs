//! Bindings of `agentgate_core::sandbox`: seccomp profiles for agent replicas.

use agentgate_core::sandbox::{self, DenyAction, SandboxError};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

fn action(name: &str) -> PyResult<DenyAction> {
    match name {
        "errno" => Ok(DenyAction::Errno),
        "kill" => Ok(DenyAction::Kill),
        other => Err(PyValueError::new_err(format!(
            "seccomp action must be 'errno' or 'kill', got {other:?}"
        ))),
    }
}

fn to_py(e: SandboxError) -> PyErr {
    match e {
        SandboxError::Install(_) => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The default deny list plus `extra`, sorted.
#[pyfunction]
#[pyo3(signature = (extra=Vec::new()))]
fn seccomp_deny_list(extra: Vec<String>) -> Vec<String> {
    sandbox::deny_list(&extra)
}

/// Compile the profile without installing it (ValueError names an unknown syscall).
#[pyfunction]
#[pyo3(signature = (extra=Vec::new(), on_deny="errno"))]
fn seccomp_check(extra: Vec<String>, on_deny: &str) -> PyResult<usize> {
    let p = sandbox::compile(&extra, action(on_deny)?).map_err(to_py)?;
    Ok(p.len())
}

/// Compile and install the profile on the calling thread (irreversible; OSError if refused).
#[pyfunction]
#[pyo3(signature = (extra=Vec::new(), on_deny="errno"))]
fn seccomp_install(extra: Vec<String>, on_deny: &str) -> PyResult<()> {
    let p = sandbox::compile(&extra, action(on_deny)?).map_err(to_py)?;
    p.install().map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(seccomp_deny_list, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_check, m)?)?;
    m.add_function(wrap_pyfunction!(seccomp_install, m)?)?;
    Ok(())
}
