//! Python handle for the core's manual clock, so Python tests can drive time.

use agentgate_core::clock::{AnyClock, ManualClock as CoreManualClock};
use pyo3::prelude::*;

/// A clock that moves only when told to; pass it to core classes as `clock=`.
#[pyclass(module = "agentgate._core", frozen)]
#[derive(Clone)]
pub struct ManualClock {
    pub inner: CoreManualClock,
}

#[pymethods]
impl ManualClock {
    #[new]
    fn new() -> Self {
        Self {
            inner: CoreManualClock::new(),
        }
    }
    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "seconds must be a finite number >= 0",
            ));
        }
        self.inner.advance_secs(seconds);
        Ok(())
    }
    /// Current reading in seconds since the clock's origin.
    fn now(&self) -> f64 {
        use agentgate_core::clock::Clock;
        self.inner.now_nanos() as f64 / 1e9
    }
}

/// Converts an optional Python `ManualClock` into the core clock handle.
pub fn any_clock(clock: Option<&ManualClock>) -> AnyClock {
    match clock {
        Some(c) => AnyClock::Manual(c.inner.clone()),
        None => AnyClock::default(),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ManualClock>()
}
