//! Python bindings for agentgate_core::breaker.

use crate::clock::{any_clock, ManualClock};
use agentgate_core::breaker::{
    BreakerConfig as CoreConfig, BreakerStats as CoreStats, CircuitBreaker as Core,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Converts seconds from Python into nanoseconds, naming the field on bad input.
pub fn secs_to_nanos(field: &str, secs: f64) -> PyResult<u64> {
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "{field} must be a finite number of seconds >= 0, got {secs}"
        )));
    }
    Ok((secs * 1e9).round().min(u64::MAX as f64) as u64)
}

/// Builds and validates a core config from the Python keyword arguments (seconds).
#[allow(clippy::too_many_arguments)]
fn config(
    consecutive_failures: u32,
    error_rate: f64,
    min_requests: u32,
    window: f64,
    buckets: u32,
    open_for: f64,
    max_open_for: f64,
    backoff: f64,
    half_open_probes: u32,
) -> PyResult<CoreConfig> {
    let c = CoreConfig {
        consecutive_failures,
        error_rate,
        min_requests,
        window_nanos: secs_to_nanos("window", window)?,
        buckets,
        open_nanos: secs_to_nanos("open_for", open_for)?,
        max_open_nanos: secs_to_nanos("max_open_for", max_open_for)?,
        backoff,
        half_open_probes,
    };
    // Name the Python fields (seconds) rather than the core's nanosecond fields.
    if c.window_nanos == 0 {
        return Err(PyValueError::new_err(format!(
            "window must be > 0 seconds, got {window}"
        )));
    }
    if c.open_nanos == 0 {
        return Err(PyValueError::new_err(format!(
            "open_for must be > 0 seconds, got {open_for}"
        )));
    }
    if c.max_open_nanos < c.open_nanos {
        return Err(PyValueError::new_err(format!(
            "max_open_for ({max_open_for}) must be >= open_for ({open_for})"
        )));
    }
    c.validate().map_err(PyValueError::new_err)?;
    Ok(c)
}

/// Validated circuit-breaker settings (durations in seconds), e.g. for balancer endpoints.
#[pyclass(module = "agentgate._core", frozen, name = "BreakerConfig")]
#[derive(Clone)]
pub struct PyBreakerConfig {
    pub inner: CoreConfig,
}

#[pymethods]
impl PyBreakerConfig {
    #[new]
    #[pyo3(signature = (consecutive_failures=5, error_rate=0.5, min_requests=20, window=10.0,
        buckets=10, open_for=10.0, max_open_for=300.0, backoff=2.0, half_open_probes=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        consecutive_failures: u32,
        error_rate: f64,
        min_requests: u32,
        window: f64,
        buckets: u32,
        open_for: f64,
        max_open_for: f64,
        backoff: f64,
        half_open_probes: u32,
    ) -> PyResult<Self> {
        let inner = config(
            consecutive_failures,
            error_rate,
            min_requests,
            window,
            buckets,
            open_for,
            max_open_for,
            backoff,
            half_open_probes,
        )?;
        Ok(Self { inner })
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "BreakerConfig(consecutive_failures={}, error_rate={}, min_requests={}, window={}, \
             buckets={}, open_for={}, max_open_for={}, backoff={}, half_open_probes={})",
            c.consecutive_failures,
            c.error_rate,
            c.min_requests,
            c.window_nanos as f64 / 1e9,
            c.buckets,
            c.open_nanos as f64 / 1e9,
            c.max_open_nanos as f64 / 1e9,
            c.backoff,
            c.half_open_probes
        )
    }
}

/// A point-in-time view of a circuit breaker.
#[pyclass(module = "agentgate._core", frozen, get_all, name = "BreakerStats")]
#[derive(Clone)]
pub struct PyBreakerStats {
    state: &'static str,
    consecutive_failures: u32,
    window_requests: u64,
    window_failures: u64,
    trips: u32,
    /// Clock seconds when the open period ends; None unless open (inf if forced open).
    open_until: Option<f64>,
}

impl From<CoreStats> for PyBreakerStats {
    fn from(s: CoreStats) -> Self {
        Self {
            state: s.state.as_str(),
            consecutive_failures: s.consecutive_failures,
            window_requests: s.window_requests,
            window_failures: s.window_failures,
            trips: s.trips,
            open_until: match s.open_until_nanos {
                0 => None,
                u64::MAX => Some(f64::INFINITY),
                n => Some(n as f64 / 1e9),
            },
        }
    }
}

#[pymethods]
impl PyBreakerStats {
    pub fn __repr__(&self) -> String {
        format!(
            "BreakerStats(state='{}', consecutive_failures={}, window_requests={}, \
             window_failures={}, trips={}, open_until={})",
            self.state,
            self.consecutive_failures,
            self.window_requests,
            self.window_failures,
            self.trips,
            self.open_until
                .map_or_else(|| "None".to_string(), |v| v.to_string())
        )
    }
}

/// Circuit breaker over the core; `agentgate.breaker.CircuitBreaker` extends it.
#[pyclass(module = "agentgate._core", frozen, subclass, name = "CircuitBreaker")]
pub struct PyCircuitBreaker {
    inner: Core,
}

#[pymethods]
impl PyCircuitBreaker {
    #[new]
    #[pyo3(signature = (consecutive_failures=5, error_rate=0.5, min_requests=20, window=10.0,
        open_for=10.0, max_open_for=300.0, backoff=2.0, half_open_probes=1, *, buckets=10,
        clock=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        consecutive_failures: u32,
        error_rate: f64,
        min_requests: u32,
        window: f64,
        open_for: f64,
        max_open_for: f64,
        backoff: f64,
        half_open_probes: u32,
        buckets: u32,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let c = config(
            consecutive_failures,
            error_rate,
            min_requests,
            window,
            buckets,
            open_for,
            max_open_for,
            backoff,
            half_open_probes,
        )?;
        Ok(Self {
            inner: Core::new(c, any_clock(clock.as_deref())),
        })
    }

    /// May a request go through now? A True must be followed by exactly one report.
    fn allow(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Reports a success of an allowed request.
    fn success(&self) {
        self.inner.record_success()
    }

    /// Reports a failure of an allowed request.
    fn failure(&self) {
        self.inner.record_failure()
    }

    /// Reports that an allowed request was cancelled: returns its permit, counts nothing.
    fn cancelled(&self) {
        self.inner.record_cancelled()
    }

    /// "closed", "open" or "half_open".
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state().as_str()
    }

    /// A point-in-time view.
    fn stats(&self) -> PyBreakerStats {
        self.inner.stats().into()
    }

    /// Opens the breaker until `reset()`.
    fn force_open(&self) {
        self.inner.force_open()
    }

    /// Closes the breaker and forgets its history.
    fn reset(&self) {
        self.inner.reset()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBreakerConfig>()?;
    m.add_class::<PyBreakerStats>()?;
    m.add_class::<PyCircuitBreaker>()?;
    Ok(())
}
