//! Python bindings for agentgate_core::breaker (placeholder, being written).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
