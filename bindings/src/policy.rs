//! Python surface of the Rego policy engine: `PolicyEngine`, `Decision`, `PolicyCompileError`.

use agentgate_core::policy::{self as core, PolicyBundle, PolicyError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

pyo3::create_exception!(
    _core,
    PolicyCompileError,
    PyValueError,
    "A Rego module failed to compile; args are (message, module, line, col)."
);

fn to_py_err(e: PolicyError) -> PyErr {
    match e {
        PolicyError::Compile {
            ref module,
            line,
            col,
            ref message,
        } => {
            PolicyCompileError::new_err((e.to_string(), module.clone(), line, col, message.clone()))
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Borrows JSON text from `bytes` or `str` input.
fn json_text<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .map_err(|e| PyValueError::new_err(format!("input_json is not UTF-8: {e}")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str();
    }
    Err(PyValueError::new_err("input_json must be bytes or str"))
}

/// The outcome of one policy evaluation.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Decision {
    inner: core::Decision,
}

#[pymethods]
impl Decision {
    /// Whether the action may proceed.
    #[getter]
    fn allow(&self) -> bool {
        self.inner.allow
    }
    /// `(rule, message)` for every deny reason, in policy order.
    #[getter]
    fn reasons(&self) -> Vec<(String, String)> {
        self.inner
            .deny
            .iter()
            .map(|r| (r.rule.clone(), r.message.clone()))
            .collect()
    }
    fn __repr__(&self) -> String {
        format!(
            "Decision(allow={}, reasons={:?})",
            if self.inner.allow { "True" } else { "False" },
            self.inner
                .deny
                .iter()
                .map(|r| (r.rule.as_str(), r.message.as_str()))
                .collect::<Vec<_>>()
        )
    }
}

/// A compiled Rego bundle; `evaluate` is thread-safe and releases the GIL.
#[pyclass(module = "agentgate._core", frozen)]
pub struct PolicyEngine {
    inner: PolicyBundle,
}

#[pymethods]
impl PolicyEngine {
    #[new]
    #[pyo3(signature = (modules, data = None, query = core::DEFAULT_QUERY.to_string()))]
    fn new(
        py: Python<'_>,
        modules: &Bound<'_, PyDict>,
        data: Option<String>,
        query: String,
    ) -> PyResult<Self> {
        let modules = modules
            .iter()
            .map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<String>()?)))
            .collect::<PyResult<Vec<(String, String)>>>()
            .map_err(|_| {
                PyValueError::new_err("modules must be a dict of str name -> str source")
            })?;
        let inner = py
            .detach(|| PolicyBundle::new(&modules, data.as_deref(), &query))
            .map_err(to_py_err)?;
        Ok(Self { inner })
    }

    /// Evaluates the decision query against JSON `input_json` (bytes or str).
    fn evaluate(&self, py: Python<'_>, input_json: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let text = json_text(input_json)?;
        py.detach(|| self.inner.evaluate(text))
            .map(|inner| Decision { inner })
            .map_err(to_py_err)
    }

    /// Dry run: `(decision, result_json, [(module, covered_lines, not_covered_lines)])`.
    #[allow(clippy::type_complexity)]
    fn explain(
        &self,
        py: Python<'_>,
        input_json: &Bound<'_, PyAny>,
    ) -> PyResult<(Decision, String, Vec<(String, Vec<u32>, Vec<u32>)>)> {
        let text = json_text(input_json)?;
        let e = py.detach(|| self.inner.explain(text)).map_err(to_py_err)?;
        let coverage = e
            .coverage
            .into_iter()
            .map(|c| (c.module, c.covered, c.not_covered))
            .collect();
        Ok((Decision { inner: e.decision }, e.result_json, coverage))
    }

    /// Module names in the order given.
    #[getter]
    fn modules(&self) -> Vec<String> {
        self.inner.modules().to_vec()
    }

    /// The query every evaluation runs.
    #[getter]
    fn query(&self) -> &str {
        self.inner.query()
    }

    /// True when evaluation runs on regorus' bytecode VM (else the interpreter).
    #[getter]
    fn uses_vm(&self) -> bool {
        self.inner.uses_vm()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Decision>()?;
    m.add_class::<PolicyEngine>()?;
    m.add(
        "PolicyCompileError",
        m.py().get_type::<PolicyCompileError>(),
    )?;
    m.add("DEFAULT_POLICY_QUERY", core::DEFAULT_QUERY)?;
    Ok(())
}
