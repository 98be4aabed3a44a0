//! Python bindings for agentgate_core::balancer.

use crate::breaker::{Outcome, PyBreakerConfig, PyBreakerStats};
use crate::clock::{any_clock, ManualClock};
use crate::enums::py_enum;
use crate::errors::{setting_error, NO_ENDPOINT_AVAILABLE, UNKNOWN_ENDPOINT};
use agentgate_core::balancer::{
    Balancer as Core, EndpointSpec as CoreSpec, Unavailable as CoreUnavailable, UnknownEndpoint,
};
use agentgate_core::breaker::BreakerConfig;
use agentgate_core::setting::{nanos_to_secs, secs_to_nanos};
use pyo3::prelude::*;

py_enum! {
    /// Why no endpoint could be picked.
    Unavailable mirrors CoreUnavailable {
        /// The balancer has no endpoints.
        Empty,
        /// Every endpoint is marked unhealthy.
        NoHealthy,
        /// Healthy endpoints exist, but their breakers all refuse traffic.
        AllOpen,
    }
}

#[pymethods]
impl Unavailable {
    /// "empty", "no_healthy" or "all_open".
    fn __str__(&self) -> &'static str {
        CoreUnavailable::from(*self).as_str()
    }
}

fn unavailable(u: CoreUnavailable) -> PyErr {
    NO_ENDPOINT_AVAILABLE.err(u.to_string(), move |exc| {
        exc.setattr("reason", Unavailable::from(u))
    })
}

fn unknown(e: UnknownEndpoint) -> PyErr {
    UNKNOWN_ENDPOINT.err(e.to_string(), move |exc| exc.setattr("index", e.0))
}

/// One endpoint to balance over: its id, weight and breaker settings.
#[pyclass(module = "agentgate._core", frozen, get_all)]
#[derive(Clone)]
pub struct EndpointSpec {
    id: String,
    weight: u32,
    breaker: PyBreakerConfig,
}

#[pymethods]
impl EndpointSpec {
    #[new]
    #[pyo3(signature = (id, weight = 1, breaker = None))]
    fn new(id: String, weight: u32, breaker: Option<PyRef<'_, PyBreakerConfig>>) -> Self {
        let inner = breaker.map_or_else(BreakerConfig::default, |b| b.inner.clone());
        EndpointSpec {
            id,
            weight,
            breaker: PyBreakerConfig { inner },
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "EndpointSpec(id={:?}, weight={}, breaker={})",
            self.id,
            self.weight,
            self.breaker.__repr__()
        )
    }
}

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

#[pymethods]
impl PyBalancer {
    /// `decay` in seconds.
    #[new]
    #[pyo3(signature = (endpoints, decay=10.0, *, clock=None, seed=None))]
    fn new(
        endpoints: Vec<PyRef<'_, EndpointSpec>>,
        decay: f64,
        clock: Option<PyRef<'_, ManualClock>>,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let decay_nanos = secs_to_nanos("decay", decay).map_err(setting_error)?;
        let specs = endpoints
            .iter()
            .map(|e| CoreSpec {
                id: e.id.clone(),
                weight: e.weight,
                breaker: e.breaker.inner.clone(),
            })
            .collect();
        let inner = Core::try_new(specs, decay_nanos, any_clock(clock.as_deref()))
            .map_err(setting_error)?;
        Ok(Self {
            inner: match seed {
                Some(s) => inner.with_seed(s),
                None => inner,
            },
        })
    }

    /// Index of the chosen endpoint; NoEndpointAvailable (with its `reason`) if none.
    fn pick(&self) -> PyResult<usize> {
        self.inner.pick().map_err(unavailable)
    }

    /// Ends a picked request: its latency in seconds and how it ended.
    #[pyo3(signature = (index, latency, outcome = Outcome::Success))]
    fn finish(&self, index: usize, latency: f64, outcome: Outcome) -> PyResult<()> {
        let nanos = secs_to_nanos("latency", latency).map_err(setting_error)?;
        self.inner
            .finish(index, nanos, outcome.into())
            .map_err(unknown)
    }

    /// Sets the health-check verdict of an endpoint.
    fn set_healthy(&self, index: usize, healthy: bool) -> PyResult<()> {
        self.inner.set_healthy(index, healthy).map_err(unknown)
    }

    /// Opens an endpoint's breaker until `reset(index)`.
    fn force_open(&self, index: usize) -> PyResult<()> {
        self.inner.breaker(index).map_err(unknown)?.force_open();
        Ok(())
    }

    /// Closes an endpoint's breaker and forgets its history.
    fn reset(&self, index: usize) -> PyResult<()> {
        self.inner.breaker(index).map_err(unknown)?.reset();
        Ok(())
    }

    /// Index of the endpoint with this id, or None.
    fn index_of(&self, id: &str) -> Option<usize> {
        self.inner.index_of(id)
    }

    /// A point-in-time view of one endpoint.
    fn stats(&self, index: usize) -> PyResult<PyEndpointStats> {
        let s = self.inner.endpoint_stats(index).map_err(unknown)?;
        Ok(PyEndpointStats {
            id: s.id,
            weight: s.weight,
            outstanding: s.outstanding,
            ewma: nanos_to_secs(s.ewma_nanos),
            healthy: s.healthy,
            breaker: s.breaker.into(),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Unavailable>()?;
    m.add_class::<EndpointSpec>()?;
    m.add_class::<PyEndpointStats>()?;
    m.add_class::<PyBalancer>()?;
    Ok(())
}
