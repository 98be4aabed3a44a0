//! Python bindings for agentgate_core::limiter.

use crate::clock::{any_clock, ManualClock};
use crate::enums::py_enum;
use crate::errors::{setting_error, LIMITER_ERROR};
use agentgate_core::limiter::{Decision, LimiterError, Quota, RateLimiter as Core};
use agentgate_core::setting::{int_in, nanos_to_secs};
use pyo3::prelude::*;
use pyo3::types::PyDict;

py_enum! {
    /// Which limiter setting is invalid.
    LimiterErrorKind {
        /// The rate is malformed or out of range.
        Rate,
        /// The burst is out of range.
        Burst,
        /// `max_keys` is zero.
        MaxKeys,
    }
}

fn limiter_error(e: LimiterError) -> PyErr {
    let kind = match e {
        LimiterError::Rate(_) => LimiterErrorKind::Rate,
        LimiterError::Burst(_) => LimiterErrorKind::Burst,
        LimiterError::MaxKeys => LimiterErrorKind::MaxKeys,
    };
    LIMITER_ERROR.err(e.to_string(), move |exc| exc.setattr("kind", kind))
}

/// A rate as Python gives it: text like "100/s", or a number per second.
#[derive(FromPyObject)]
enum Rate {
    Text(String),
    PerSecond(f64),
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
        nanos_to_secs(self.inner.reset_nanos)
    }
    /// Seconds until this request would be allowed (0 if allowed, inf if never).
    #[getter]
    fn retry_after(&self) -> f64 {
        nanos_to_secs(self.inner.retry_after_nanos)
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
        rate: Rate,
        burst: i64,
        max_keys: i64,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let burst = int_in("burst", burst, 0..=i64::from(u32::MAX)).map_err(setting_error)?;
        let max_keys = int_in("max_keys", max_keys, 0..=i64::MAX).map_err(setting_error)?;
        let quota = match rate {
            Rate::Text(text) => Quota::parse(&text, burst),
            Rate::PerSecond(r) => Quota::new(r, burst),
        }
        .map_err(limiter_error)?;
        let inner =
            Core::new(quota, max_keys, any_clock(clock.as_deref())).map_err(limiter_error)?;
        Ok(Self { inner })
    }

    /// Takes `cost` units for `key` if allowed (cost 0 only reports the state).
    #[pyo3(signature = (key, cost=1))]
    fn check(&self, key: &str, cost: i64) -> PyResult<RateLimitDecision> {
        let cost = int_in("cost", cost, 0..=i64::from(u32::MAX)).map_err(setting_error)?;
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
    m.add_class::<LimiterErrorKind>()?;
    m.add_class::<RateLimiter>()?;
    m.add_class::<RateLimitDecision>()
}
