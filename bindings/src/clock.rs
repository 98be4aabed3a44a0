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
    /// Moves the clock forward by `seconds` (SettingError if negative or not finite).
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.inner
            .try_advance_secs(seconds)
            .map_err(crate::errors::setting_error)
    }
    /// Current reading in seconds since the clock's origin.
    fn now(&self) -> f64 {
        use agentgate_core::clock::Clock;
        agentgate_core::setting::nanos_to_secs(self.inner.now_nanos())
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
