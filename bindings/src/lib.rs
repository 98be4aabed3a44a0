//! agentgate._core: thin PyO3 bindings over agentgate-core. Conversion and GIL handling only.

use pyo3::prelude::*;

mod clock;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    clock::register(m)?;
    Ok(())
}
