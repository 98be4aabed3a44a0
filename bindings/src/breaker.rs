//! Python bindings for agentgate_core::breaker, and the breaker enums every module shares.

use crate::clock::{any_clock, ManualClock};
use crate::enums::{named_enum, py_enum};
use crate::errors::setting_error;
use agentgate_core::breaker::{
    BreakerConfig as CoreConfig, BreakerSecs, BreakerState as CoreState, BreakerStats as CoreStats,
    CircuitBreaker as Core, Outcome as CoreOutcome,
};
use agentgate_core::setting::nanos_to_secs;
use pyo3::prelude::*;

py_enum! {
    /// A breaker's state; `str()` gives its name in APIs ("closed", "open", "half_open").
    BreakerState mirrors CoreState {
        /// Traffic flows.
        Closed,
        /// Refusing until the cool-down ends.
        Open,
        /// Letting probes through.
        HalfOpen,
    }
}
named_enum!(BreakerState, CoreState);

py_enum! {
    /// How a request that a breaker or balancer let through ended.
    Outcome mirrors CoreOutcome {
        /// The upstream answered well.
        Success,
        /// The upstream failed (error, timeout, 5xx).
        Failure,
        /// No verdict from the upstream (the client went away): not counted.
        Cancelled,
    }
}
named_enum!(Outcome, CoreOutcome);

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
        let secs = BreakerSecs {
            consecutive_failures,
            error_rate,
            min_requests,
            window,
            buckets,
            open_for,
            max_open_for,
            backoff,
            half_open_probes,
        };
        let inner = CoreConfig::try_from(&secs).map_err(setting_error)?;
        Ok(Self { inner })
    }

    pub fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "BreakerConfig(consecutive_failures={}, error_rate={}, min_requests={}, window={}, \
             buckets={}, open_for={}, max_open_for={}, backoff={}, half_open_probes={})",
            c.consecutive_failures,
            c.error_rate,
            c.min_requests,
            nanos_to_secs(c.window_nanos),
            c.buckets,
            nanos_to_secs(c.open_nanos),
            nanos_to_secs(c.max_open_nanos),
            c.backoff,
            c.half_open_probes
        )
    }
}

/// A point-in-time view of a circuit breaker.
#[pyclass(module = "agentgate._core", frozen, get_all, name = "BreakerStats")]
#[derive(Clone)]
pub struct PyBreakerStats {
    state: BreakerState,
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
            state: s.state.into(),
            consecutive_failures: s.consecutive_failures,
            window_requests: s.window_requests,
            window_failures: s.window_failures,
            trips: s.trips,
            // 0 stands for "not open" in the core's field
            open_until: (s.open_until_nanos != 0).then(|| nanos_to_secs(s.open_until_nanos)),
        }
    }
}

#[pymethods]
impl PyBreakerStats {
    pub fn __repr__(&self) -> String {
        format!(
            "BreakerStats(state=BreakerState.{:?}, consecutive_failures={}, window_requests={}, \
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
        let secs = BreakerSecs {
            consecutive_failures,
            error_rate,
            min_requests,
            window,
            buckets,
            open_for,
            max_open_for,
            backoff,
            half_open_probes,
        };
        let config = CoreConfig::try_from(&secs).map_err(setting_error)?;
        Ok(Self {
            inner: Core::new(config, any_clock(clock.as_deref())),
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

    /// Reports how an allowed request ended.
    fn record(&self, outcome: Outcome) {
        self.inner.record(outcome.into())
    }

    /// The current state.
    #[getter]
    fn state(&self) -> BreakerState {
        self.inner.state().into()
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
    m.add_class::<BreakerState>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<PyBreakerConfig>()?;
    m.add_class::<PyBreakerStats>()?;
    m.add_class::<PyCircuitBreaker>()?;
    Ok(())
}
