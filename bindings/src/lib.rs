//! agentgate._core: thin PyO3 bindings over agentgate-core. Conversion and GIL handling only:
//! every check and decision is the core's; enums and exceptions mirror the core's types.

use pyo3::prelude::*;

mod admission;
mod balancer;
mod breaker;
mod clock;
mod cluster;
mod dataplane;
mod enums;
mod errors;
mod histogram;
mod httpsig;
mod limiter;
mod policy;
mod router;
mod sandbox;
mod signature;
mod sketch;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    clock::register(m)?;
    cluster::register(m)?;
    router::register(m)?;
    limiter::register(m)?;
    breaker::register(m)?;
    balancer::register(m)?;
    admission::register(m)?;
    signature::register(m)?;
    httpsig::register(m)?;
    histogram::register(m)?;
    dataplane::register(m)?;
    policy::register(m)?;
    sandbox::register(m)?;
    sketch::register(m)?;
    Ok(())
}
