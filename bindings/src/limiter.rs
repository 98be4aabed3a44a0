//! Python bindings for agentgate_core::limiter.

use crate::clock::{any_clock, ManualClock};
use agentgate_core::limiter::{Decision, Quota, RateLimiter as Core};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

fn secs(nanos: u64) -> f64 {
    if nanos == u64::MAX {
        f64::INFINITY
    } else {
        nanos as f64 / 1e9
    }
}

/// The outcome of a rate-limit check; truthy when allowed.
#[pyclass(module = "agentgate._core", frozen)]
pub struct RateLimitDecision {
    inner: Decision,
}

#[pymethods]
impl RateLimitDecision {
    /// Whether the request may proceed.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed
    }
    /// The burst (bucket capacity).
    #[getter]
    fn limit(&self) -> u32 {
        self.inner.limit
    }
    /// Cost-1 requests still allowed right now.
    #[getter]
    fn remaining(&self) -> u32 {
        self.inner.remaining
    }
    /// Seconds until the bucket is full again.
    #[getter]
    fn reset(&self) -> f64 {
        secs(self.inner.reset_nanos)
    }
    /// Seconds until this request would be allowed (0 if allowed, inf if never).
    #[getter]
    fn retry_after(&self) -> f64 {
        if self.inner.allowed {
            0.0
        } else {
            secs(self.inner.retry_after_nanos)
        }
    }
    /// The cost exceeds the burst: never allowed.
    #[getter]
    fn cost_exceeds_burst(&self) -> bool {
        self.inner.cost_exceeds_burst
    }
    fn __bool__(&self) -> bool {
        self.inner.allowed
    }
    fn __repr__(&self) -> String {
        format!(
            "RateLimitDecision(allowed={}, limit={}, remaining={}, reset={:?}, retry_after={:?})",
            if self.inner.allowed { "True" } else { "False" },
            self.inner.limit,
            self.inner.remaining,
            self.reset(),
            self.retry_after()
        )
    }
}

/// Keyed GCRA rate limiter with a bounded number of keys.
#[pyclass(module = "agentgate._core", frozen)]
pub struct RateLimiter {
    inner: Core,
}

#[pymethods]
impl RateLimiter {
    #[new]
    #[pyo3(signature = (rate, burst, max_keys=100_000, clock=None))]
    fn new(
        rate: &Bound<'_, PyAny>,
        burst: i64,
        max_keys: i64,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let burst = u32::try_from(burst).map_err(|_| {
            PyValueError::new_err(format!("burst must be in 1..=2**32-1, got {burst}"))
        })?;
        let max_keys = usize::try_from(max_keys)
            .ok()
            .filter(|k| *k > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!("max_keys must be >= 1, got {max_keys}"))
            })?;
        let quota = if let Ok(s) = rate.cast::<PyString>() {
            Quota::parse(s.to_str()?, burst)
        } else if let Ok(r) = rate.extract::<f64>() {
            Quota::new(r, burst)
        } else {
            return Err(PyValueError::new_err(
                "rate must be a string like \"100/s\" or a number of requests per second",
            ));
        }
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let inner = Core::new(quota, max_keys, any_clock(clock.as_deref()))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Takes `cost` units for `key` if allowed (cost 0 only reports the state).
    #[pyo3(signature = (key, cost=1))]
    fn check(&self, key: &str, cost: i64) -> PyResult<RateLimitDecision> {
        let cost = u32::try_from(cost).map_err(|_| {
            PyValueError::new_err(format!("cost must be in 0..=2**32-1, got {cost}"))
        })?;
        Ok(RateLimitDecision {
            inner: self.inner.check(key, cost),
        })
    }

    /// `RateLimit-Policy`, `RateLimit` and (when rejected but retryable) `Retry-After` headers.
    fn headers<'py>(
        &self,
        py: Python<'py>,
        decision: &RateLimitDecision,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (policy, state) = self.inner.headers(&decision.inner);
        d.set_item("RateLimit-Policy", policy)?;
        d.set_item("RateLimit", state)?;
        if let Some(retry) = Core::retry_after_header(&decision.inner) {
            d.set_item("Retry-After", retry)?;
        }
        Ok(d)
    }

    /// Drops keys whose bucket is full again; returns how many.
    fn sweep(&self) -> usize {
        self.inner.sweep()
    }

    /// Sustained rate in cost units per second.
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.quota().per_second()
    }

    /// Bucket capacity.
    #[getter]
    fn burst(&self) -> u32 {
        self.inner.quota().burst()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RateLimiter>()?;
    m.add_class::<RateLimitDecision>()
}
