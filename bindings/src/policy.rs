//! Python surface of the Rego policy engine: `PolicyEngine`, `Decision`, `Explanation` and the
//! policy errors.

use agentgate_core::policy::{self as core, PolicyBundle, PolicyError};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::enums::py_enum;
use crate::errors::{POLICY_COMPILE_ERROR, POLICY_ERROR};

py_enum! {
    /// At which step a policy failed.
    PolicyErrorKind {
        /// A module failed to parse or analyse (raised as PolicyCompileError).
        Compile,
        /// The data document is not valid JSON or conflicts with a policy.
        Data,
        /// The input document is not valid JSON.
        Input,
        /// Evaluation failed.
        Eval,
        /// The query produced something that is not a decision.
        Shape,
    }
}

fn to_py_err(e: PolicyError) -> PyErr {
    let message = e.to_string();
    match e {
        PolicyError::Compile {
            module,
            line,
            col,
            message: detail,
        } => POLICY_COMPILE_ERROR.err(message, move |exc| {
            exc.setattr("kind", PolicyErrorKind::Compile)?;
            exc.setattr("module", module)?;
            exc.setattr("line", line)?;
            exc.setattr("col", col)?;
            exc.setattr("message", detail)
        }),
        other => {
            let kind = match other {
                PolicyError::Compile { .. } => PolicyErrorKind::Compile,
                PolicyError::Data(_) => PolicyErrorKind::Data,
                PolicyError::Input(_) => PolicyErrorKind::Input,
                PolicyError::Eval(_) => PolicyErrorKind::Eval,
                PolicyError::Shape(_) => PolicyErrorKind::Shape,
            };
            POLICY_ERROR.err(message, move |exc| exc.setattr("kind", kind))
        }
    }
}

/// Borrows JSON text from `bytes` or `str` input; bytes that are not UTF-8 are a bad input.
fn json_text<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .map_err(|e| to_py_err(PolicyError::Input(format!("not UTF-8: {e}"))));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str();
    }
    Err(PyTypeError::new_err("input_json must be bytes or str"))
}

/// One reason a decision denies: the rule that produced it and its message.
#[pyclass(module = "agentgate._core", frozen, get_all)]
#[derive(Clone)]
pub struct DenyReason {
    /// Rule (or policy) name; empty when the policy gave a bare string.
    rule: String,
    /// Human-readable message.
    message: String,
}

#[pymethods]
impl DenyReason {
    fn __repr__(&self) -> String {
        format!(
            "DenyReason(rule={:?}, message={:?})",
            self.rule, self.message
        )
    }
}

/// The outcome of one policy evaluation.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct Decision {
    /// Whether the action may proceed.
    allow: bool,
    /// Every deny reason, in policy order.
    reasons: Vec<DenyReason>,
}

impl From<core::Decision> for Decision {
    fn from(d: core::Decision) -> Self {
        Decision {
            allow: d.allow,
            reasons: d
                .deny
                .into_iter()
                .map(|r| DenyReason {
                    rule: r.rule,
                    message: r.message,
                })
                .collect(),
        }
    }
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        let reasons: Vec<String> = self.reasons.iter().map(DenyReason::__repr__).collect();
        format!(
            "Decision(allow={}, reasons=[{}])",
            if self.allow { "True" } else { "False" },
            reasons.join(", ")
        )
    }
}

/// Lines of one module an evaluation touched.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct ModuleCoverage {
    /// Module name.
    module: String,
    /// 1-based lines evaluated.
    covered: Vec<u32>,
    /// 1-based lines that could have been evaluated but were not.
    not_covered: Vec<u32>,
}

/// A dry run: the decision, the raw query result and which module lines ran.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct Explanation {
    /// The decision itself.
    decision: Py<Decision>,
    /// JSON text of the full query result.
    result_json: String,
    /// Coverage per module.
    coverage: Vec<Py<ModuleCoverage>>,
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
                PyTypeError::new_err("modules must be a dict of str name -> str source")
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
            .map(Decision::from)
            .map_err(to_py_err)
    }

    /// Dry run: the decision, the raw result and per-module line coverage.
    fn explain(&self, py: Python<'_>, input_json: &Bound<'_, PyAny>) -> PyResult<Explanation> {
        let text = json_text(input_json)?;
        let e = py.detach(|| self.inner.explain(text)).map_err(to_py_err)?;
        let coverage = e
            .coverage
            .into_iter()
            .map(|c| {
                Py::new(
                    py,
                    ModuleCoverage {
                        module: c.module,
                        covered: c.covered,
                        not_covered: c.not_covered,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(Explanation {
            decision: Py::new(py, Decision::from(e.decision))?,
            result_json: e.result_json,
            coverage,
        })
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
    m.add_class::<PolicyErrorKind>()?;
    m.add_class::<DenyReason>()?;
    m.add_class::<Decision>()?;
    m.add_class::<ModuleCoverage>()?;
    m.add_class::<Explanation>()?;
    m.add_class::<PolicyEngine>()?;
    m.add("DEFAULT_POLICY_QUERY", core::DEFAULT_QUERY)?;
    Ok(())
}
