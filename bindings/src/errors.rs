//! The exceptions of `agentgate._core`: one base, `CoreError`, and a subclass per error type of
//! the core, each also a subclass of the builtin exception callers already catch (`ValueError`,
//! `OSError`, `RuntimeError`). Every exception carries the core's message as its only argument
//! and the core error's parts (kind enums, fields) as attributes, so no caller reads the text.
//!
//! Classes with two bases cannot be declared with `create_exception!` (one base only); they are
//! made once per interpreter with `type(name, bases, namespace)`.

use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use agentgate_core::config::ConfigError;
use agentgate_core::setting::SettingError as CoreSettingError;

pyo3::create_exception!(
    agentgate._core,
    CoreError,
    PyException,
    "Base of every error the Rust core raises."
);

type Bases = for<'py> fn(Python<'py>) -> PyResult<Vec<Bound<'py, PyType>>>;

/// An exception class of the module, created on first use.
pub struct ErrorClass {
    name: &'static str,
    doc: &'static str,
    bases: Bases,
    cell: PyOnceLock<Py<PyType>>,
}

impl ErrorClass {
    const fn new(name: &'static str, doc: &'static str, bases: Bases) -> Self {
        ErrorClass {
            name,
            doc,
            bases,
            cell: PyOnceLock::new(),
        }
    }

    /// The class object.
    pub fn type_object<'py>(&'static self, py: Python<'py>) -> PyResult<Bound<'py, PyType>> {
        let t = self.cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
            let bases = PyTuple::new(py, (self.bases)(py)?)?;
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "agentgate._core")?;
            namespace.set_item("__doc__", self.doc)?;
            let made = py
                .get_type::<PyType>()
                .call1((self.name, bases, namespace))?;
            Ok(made.cast_into::<PyType>()?.unbind())
        })?;
        Ok(t.bind(py).clone())
    }

    /// An exception of this class with `message` as its argument; `attrs` sets the rest.
    pub fn err(
        &'static self,
        message: impl Into<String>,
        attrs: impl for<'py> FnOnce(&Bound<'py, PyAny>) -> PyResult<()>,
    ) -> PyErr {
        let message = message.into();
        Python::attach(|py| {
            let made = self.type_object(py).and_then(|t| {
                let exc = t.call1((message,))?;
                attrs(&exc)?;
                Ok(exc)
            });
            match made {
                Ok(exc) => PyErr::from_value(exc),
                Err(e) => e,
            }
        })
    }
}

fn core_error(py: Python<'_>) -> Bound<'_, PyType> {
    py.get_type::<CoreError>()
}

fn with_value_error(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyType>>> {
    Ok(vec![core_error(py), py.get_type::<PyValueError>()])
}

/// `SettingError(CoreError, ValueError)`: core `setting::SettingError`.
pub static SETTING_ERROR: ErrorClass = ErrorClass::new(
    "SettingError",
    "A setting or argument out of range; `field` names it, `problem` says what is wrong.",
    with_value_error,
);

/// `ConfigRejected(CoreError, ValueError)`: core `config::ConfigError`.
pub static CONFIG_REJECTED: ErrorClass = ErrorClass::new(
    "ConfigRejected",
    "The core refused a config: the message names the field.",
    with_value_error,
);

/// `Ed25519KeyError(CoreError, ValueError)`: core `signature::KeyError`.
pub static KEY_ERROR: ErrorClass = ErrorClass::new(
    "Ed25519KeyError",
    "A key input that cannot be parsed: `kind` (public/private), `format`, `problem`.",
    with_value_error,
);

/// `HttpSignatureError(CoreError, ValueError)`: core `httpsig::HttpSigError`.
pub static HTTP_SIGNATURE_ERROR: ErrorClass = ErrorClass::new(
    "HttpSignatureError",
    "A signed request was rejected or cannot be signed; `kind` says why, `code` is its \
     stable problem-type code.",
    with_value_error,
);

/// `LimiterError(CoreError, ValueError)`: core `limiter::LimiterError`.
pub static LIMITER_ERROR: ErrorClass = ErrorClass::new(
    "LimiterError",
    "An invalid rate-limiter setting; `kind` names it (rate, burst, max_keys).",
    with_value_error,
);

/// `RouterError(CoreError, ValueError)`: core `router::RouterError`.
pub static ROUTER_ERROR: ErrorClass = ErrorClass::new(
    "RouterError",
    "A route that cannot be compiled: `index` and `id` name the route, `field` the key.",
    with_value_error,
);

/// `PolicyError(CoreError, ValueError)`: core `policy::PolicyError`.
pub static POLICY_ERROR: ErrorClass = ErrorClass::new(
    "PolicyError",
    "A policy bundle failed to build or evaluate; `kind` says at which step.",
    with_value_error,
);

/// `PolicyCompileError(PolicyError)`: core `PolicyError::Compile`.
pub static POLICY_COMPILE_ERROR: ErrorClass = ErrorClass::new(
    "PolicyCompileError",
    "A Rego module failed to compile: `module`, `line`, `col` (1-based, 0 if unknown), \
     `message`.",
    |py| Ok(vec![POLICY_ERROR.type_object(py)?]),
);

/// `SketchError(CoreError, ValueError)`: core `sketch::SketchError`.
pub static SKETCH_ERROR: ErrorClass = ErrorClass::new(
    "SketchError",
    "Bytes that are not a sketch of this accuracy, or a quantile outside [0, 1]; see `kind`.",
    with_value_error,
);

/// `SandboxError(CoreError)`: core `sandbox::SandboxError`.
pub static SANDBOX_ERROR: ErrorClass = ErrorClass::new(
    "SandboxError",
    "A seccomp profile cannot be built or installed; `kind` says which.",
    |py| Ok(vec![core_error(py)]),
);

/// `SandboxProfileError(SandboxError, ValueError)`: the profile cannot be built.
pub static SANDBOX_PROFILE_ERROR: ErrorClass = ErrorClass::new(
    "SandboxProfileError",
    "The seccomp profile cannot be built (unknown syscall, unsupported architecture).",
    |py| {
        Ok(vec![
            SANDBOX_ERROR.type_object(py)?,
            py.get_type::<PyValueError>(),
        ])
    },
);

/// `SandboxInstallError(SandboxError, OSError)`: the kernel refused the filter.
pub static SANDBOX_INSTALL_ERROR: ErrorClass = ErrorClass::new(
    "SandboxInstallError",
    "The kernel refused the seccomp filter.",
    |py| {
        Ok(vec![
            SANDBOX_ERROR.type_object(py)?,
            py.get_type::<PyOSError>(),
        ])
    },
);

/// `NoEndpointAvailable(CoreError, RuntimeError)`: core `balancer::Unavailable`.
pub static NO_ENDPOINT_AVAILABLE: ErrorClass = ErrorClass::new(
    "NoEndpointAvailable",
    "No endpoint can take a request; `reason` says why.",
    |py| Ok(vec![core_error(py), py.get_type::<PyRuntimeError>()]),
);

/// `UnknownEndpoint(CoreError, ValueError)`: core `balancer::UnknownEndpoint`.
pub static UNKNOWN_ENDPOINT: ErrorClass = ErrorClass::new(
    "UnknownEndpoint",
    "An endpoint index the balancer does not have; `index` is it.",
    with_value_error,
);

const ALL: [&ErrorClass; 14] = [
    &SETTING_ERROR,
    &CONFIG_REJECTED,
    &KEY_ERROR,
    &HTTP_SIGNATURE_ERROR,
    &LIMITER_ERROR,
    &ROUTER_ERROR,
    &POLICY_ERROR,
    &POLICY_COMPILE_ERROR,
    &SKETCH_ERROR,
    &SANDBOX_ERROR,
    &SANDBOX_PROFILE_ERROR,
    &SANDBOX_INSTALL_ERROR,
    &NO_ENDPOINT_AVAILABLE,
    &UNKNOWN_ENDPOINT,
];

/// Raises core `SettingError` as `SettingError` (`field`, `problem`).
pub fn setting_error(e: CoreSettingError) -> PyErr {
    let message = e.to_string();
    SETTING_ERROR.err(message, move |exc| {
        exc.setattr("field", e.field)?;
        exc.setattr("problem", e.problem)
    })
}

/// Raises core `ConfigError` as `ConfigRejected`.
pub fn config_rejected(e: ConfigError) -> PyErr {
    CONFIG_REJECTED.err(e.0, |_| Ok(()))
}

/// An enum name the core does not know: `ValueError`, as `enum.Enum` raises for a bad value.
pub fn unknown_name(message: String) -> PyErr {
    PyValueError::new_err(message)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CoreError", py.get_type::<CoreError>())?;
    for class in ALL {
        m.add(class.name, class.type_object(py)?)?;
    }
    Ok(())
}
