//! Python bindings for agentgate_core::balancer.

use crate::breaker::{secs_to_nanos, PyBreakerConfig, PyBreakerStats};
use crate::clock::{any_clock, ManualClock};
use agentgate_core::balancer::{Balancer as Core, EndpointSpec, Outcome, Unavailable};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A point-in-time view of one endpoint.
#[pyclass(module = "agentgate._core", frozen, get_all, name = "EndpointStats")]
#[derive(Clone)]
pub struct PyEndpointStats {
    id: String,
    weight: u32,
    outstanding: u32,
    /// Current latency estimate in seconds.
    ewma: f64,
    healthy: bool,
    breaker: PyBreakerStats,
}

#[pymethods]
impl PyEndpointStats {
    fn __repr__(&self) -> String {
        format!(
            "EndpointStats(id={:?}, weight={}, outstanding={}, ewma={}, healthy={}, breaker={})",
            self.id,
            self.weight,
            self.outstanding,
            self.ewma,
            if self.healthy { "True" } else { "False" },
            self.breaker.__repr__()
        )
    }
}

/// Weighted p2c peak-EWMA balancer; `agentgate.balancer.Balancer` wraps it.
#[pyclass(module = "agentgate._core", frozen, name = "Balancer")]
pub struct PyBalancer {
    inner: Core,
}

fn outcome(s: &str) -> PyResult<Outcome> {
    match s {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        "cancelled" => Ok(Outcome::Cancelled),
        _ => Err(PyValueError::new_err(format!(
            "outcome must be 'success', 'failure' or 'cancelled', got {s:?}"
        ))),
    }
}

impl PyBalancer {
    fn bad_index(&self, index: usize) -> PyErr {
        PyValueError::new_err(format!(
            "index must be in 0..{}, got {index}",
            self.inner.len()
        ))
    }
}

#[pymethods]
impl PyBalancer {
    /// `endpoints`: (id, weight, BreakerConfig) triples; `decay` in seconds.
    #[new]
    #[pyo3(signature = (endpoints, decay=10.0, *, clock=None, seed=None))]
    fn new(
        endpoints: Vec<(String, u32, PyRef<'_, PyBreakerConfig>)>,
        decay: f64,
        clock: Option<PyRef<'_, ManualClock>>,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let decay_nanos = secs_to_nanos("decay", decay)?;
        let specs = endpoints
            .into_iter()
            .map(|(id, weight, b)| EndpointSpec {
                id,
                weight,
                breaker: b.inner.clone(),
            })
            .collect();
        let inner = Core::try_new(specs, decay_nanos, any_clock(clock.as_deref()))
            .map_err(PyValueError::new_err)?;
        Ok(Self {
            inner: match seed {
                Some(s) => inner.with_seed(s),
                None => inner,
            },
        })
    }

    /// Index of the chosen endpoint, or -1 (empty), -2 (no healthy), -3 (all breakers open).
    fn pick(&self) -> i64 {
        match self.inner.pick() {
            Ok(i) => i as i64,
            Err(Unavailable::Empty) => -1,
            Err(Unavailable::NoHealthy) => -2,
            Err(Unavailable::AllOpen) => -3,
        }
    }

    /// Ends a picked request: latency in seconds, outcome "success"/"failure"/"cancelled".
    #[pyo3(signature = (index, latency, outcome="success"))]
    fn finish(&self, index: usize, latency: f64, outcome: &str) -> PyResult<()> {
        let o = self::outcome(outcome)?;
        let nanos = secs_to_nanos("latency", latency)?;
        self.inner
            .finish(index, nanos, o)
            .map_err(|_| self.bad_index(index))
    }

    /// Sets the health-check verdict of an endpoint.
    fn set_healthy(&self, index: usize, healthy: bool) -> PyResult<()> {
        self.inner
            .set_healthy(index, healthy)
            .map_err(|_| self.bad_index(index))
    }

    /// Opens an endpoint's breaker until `reset(index)`.
    fn force_open(&self, index: usize) -> PyResult<()> {
        self.inner
            .breaker(index)
            .map_err(|_| self.bad_index(index))?
            .force_open();
        Ok(())
    }

    /// Closes an endpoint's breaker and forgets its history.
    fn reset(&self, index: usize) -> PyResult<()> {
        self.inner
            .breaker(index)
            .map_err(|_| self.bad_index(index))?
            .reset();
        Ok(())
    }

    /// Index of the endpoint with this id, or None.
    fn index_of(&self, id: &str) -> Option<usize> {
        self.inner.index_of(id)
    }

    /// A point-in-time view of one endpoint.
    fn stats(&self, index: usize) -> PyResult<PyEndpointStats> {
        let s = self
            .inner
            .endpoint_stats(index)
            .map_err(|_| self.bad_index(index))?;
        Ok(PyEndpointStats {
            id: s.id,
            weight: s.weight,
            outstanding: s.outstanding,
            ewma: s.ewma_nanos as f64 / 1e9,
            healthy: s.healthy,
            breaker: s.breaker.into(),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEndpointStats>()?;
    m.add_class::<PyBalancer>()?;
    Ok(())
}
