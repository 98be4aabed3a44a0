//! agentgate._core: thin PyO3 bindings over agentgate-core. Conversion and GIL handling only:
//! every check and decision is the core's; enums and exceptions mirror the core's types.

use pyo3::prelude::*;

// The core's allocations only (Python keeps its own). glibc's malloc / free /
// malloc_consolidate were ~10 % of the data plane's CPU per proxied request (perf, GET 1 KiB).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (libmimalloc-sys names no constant for it); 4 in
/// the mimalloc v2 and v3 headers vendored by libmimalloc-sys 0.1.49: check it on an upgrade.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

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
    // committing whole arenas up front added ~7 MiB of PSS to `agentgate serve` (100 against
    // 93 MiB with glibc), for no CPU measured; committed on demand it is back to 94 MiB
    // SAFETY: sets a process-wide integer option; mimalloc reads it when it makes an arena
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
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
