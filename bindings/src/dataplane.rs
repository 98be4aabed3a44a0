//! Python bindings for agentgate_core::proxy::DataPlane: start, reload, observe, probe, stop.
//! Conversion only: every decision is the core's.

use std::collections::HashMap;
use std::time::Duration;

use agentgate_core::config::GatewayConfig;
use agentgate_core::proxy::{DataPlane as Core, StartError};
use agentgate_core::stats::{LatencyDelta, StatusClass as CoreStatusClass};
use pyo3::exceptions::{PyKeyError, PyOSError};
use pyo3::prelude::*;

use crate::admission::{by_priority, Priority};
use crate::breaker::BreakerState;
use crate::clock::{any_clock, ManualClock};
use crate::enums::{named_enum, py_enum};
use crate::errors::config_rejected;
use crate::sketch::Sketch;
use agentgate_core::sketch::Sketch as CoreSketch;

fn parse(config: &[u8]) -> PyResult<GatewayConfig> {
    GatewayConfig::from_json(config).map_err(config_rejected)
}

/// Latency observations: counts per `LATENCY_BOUNDS` bucket (+Inf last, not cumulative), and
/// the same observations as a sketch (1 % relative error).
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct LatencyCounts {
    buckets: Vec<u64>,
    sum: f64,
    sketch: Py<Sketch>,
}

fn latency(py: Python<'_>, l: &LatencyDelta, sketch: &CoreSketch) -> PyResult<Py<LatencyCounts>> {
    Py::new(
        py,
        LatencyCounts {
            buckets: l.counts.to_vec(),
            sum: l.sum,
            sketch: Py::new(py, Sketch::from(sketch.clone()))?,
        },
    )
}

py_enum! {
    /// A response status's class; `str()` gives its metrics label ("2xx", "other").
    StatusClass mirrors CoreStatusClass {
        /// Any status outside 100–599.
        Other,
        /// 1xx.
        Informational,
        /// 2xx.
        Success,
        /// 3xx.
        Redirection,
        /// 4xx.
        ClientError,
        /// 5xx.
        ServerError,
    }
}
named_enum!(StatusClass, CoreStatusClass);

/// Requests of one route since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct RouteCounts {
    agent: String,
    route: String,
    /// Requests by status class (every class present, zeros included).
    by_class: HashMap<StatusClass, u64>,
    latency: Py<LatencyCounts>,
}

/// Tokens one tenant used with one model since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct UsageCount {
    tenant: Option<String>,
    model: String,
    input_tokens: u64,
    output_tokens: u64,
    requests: u64,
}

/// One agent's counts since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct AgentCounts {
    agent: String,
    upstream: Py<LatencyCounts>,
    retries: u64,
    shed: u64,
    usage: Vec<Py<UsageCount>>,
}

/// Answers of the gateway's own with one status (None: any status not counted on its own)
/// since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct RejectedCount {
    status: Option<u16>,
    count: u64,
}

/// Everything counted since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct StatsDelta {
    routes: Vec<Py<RouteCounts>>,
    agents: Vec<Py<AgentCounts>>,
    rejected: Vec<Py<RejectedCount>>,
}

/// One endpoint as the data plane sees it.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct EndpointState {
    url: String,
    weight: u32,
    healthy: bool,
    breaker: BreakerState,
    /// Trips in a row (reset after a quiet closed period); they grow the cool-down.
    breaker_trips: u32,
    /// Cool-down of the latest trip, seconds (0 before the first).
    breaker_open_for: f64,
    /// Requests picked for it and not finished.
    in_flight: u32,
    /// Latency estimate (peak EWMA), seconds.
    latency: f64,
    /// UNIX time of the last health probe (0: never).
    last_probe: f64,
    last_status: Option<u16>,
    last_error: Option<String>,
    probe_successes: u32,
    probe_failures: u32,
    connections_opened: u64,
    idle_connections: usize,
}

/// One agent as the data plane sees it.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct AgentState {
    name: String,
    in_flight: u32,
    /// Waiting requests per class.
    queued: HashMap<Priority, u32>,
    health_checked: bool,
    retry_budget: f64,
    /// Requests admitted since the agent appeared (monotonic).
    requests: u64,
    endpoints: Vec<Py<EndpointState>>,
}

/// One on-demand probe.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct ProbeResult {
    url: String,
    ok: bool,
    status: Option<u16>,
    error: Option<String>,
    latency: f64,
    attempts: u32,
}

/// The data plane: the core's own HTTP listener, engine, upstream client and health checks.
#[pyclass(module = "agentgate._core", frozen)]
pub struct DataPlane {
    pub(crate) inner: Core,
}

#[pymethods]
impl DataPlane {
    /// A data plane for a config (the JSON of the validated config file) on `workers` threads.
    #[new]
    #[pyo3(signature = (config, workers = 1, clock = None))]
    fn new(config: &[u8], workers: usize, clock: Option<PyRef<'_, ManualClock>>) -> PyResult<Self> {
        let cfg = parse(config)?;
        let inner = Core::new(&cfg, workers, any_clock(clock.as_deref())).map_err(|e| match e {
            StartError::Config(c) => config_rejected(c),
            StartError::Io(io) => PyOSError::new_err(io.to_string()),
        })?;
        Ok(DataPlane { inner })
    }

    /// Starts serving on `address` (`ip:port`, port 0 for any free one); returns the port.
    fn listen(&self, py: Python<'_>, address: &str) -> PyResult<u16> {
        py.detach(|| self.inner.listen(address))
            .map(|a| a.port())
            .map_err(|e| PyOSError::new_err(format!("cannot listen on {address}: {e}")))
    }

    /// Swaps a new config in; on `ConfigRejected` the running one stays.
    fn replace(&self, py: Python<'_>, config: &[u8]) -> PyResult<()> {
        let cfg = parse(config)?;
        py.detach(|| self.inner.replace(&cfg))
            .map_err(config_rejected)
    }

    /// Counts since the last take (routes, agents, the gateway's own answers).
    fn take_stats(&self, py: Python<'_>) -> PyResult<StatsDelta> {
        let d = self.inner.take_stats();
        let routes = d
            .routes
            .iter()
            .map(|(agent, route, r)| {
                Py::new(
                    py,
                    RouteCounts {
                        agent: agent.to_string(),
                        route: route.to_string(),
                        by_class: r.by_class().map(|(c, n)| (c.into(), n)).collect(),
                        latency: latency(py, &r.latency, &r.sketch)?,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        let agents = d
            .agents
            .iter()
            .map(|(agent, a)| {
                Py::new(
                    py,
                    AgentCounts {
                        agent: agent.to_string(),
                        upstream: latency(py, &a.upstream, &a.upstream_sketch)?,
                        retries: a.retries,
                        shed: a.shed,
                        usage: a
                            .usage
                            .iter()
                            .map(|u| {
                                Py::new(
                                    py,
                                    UsageCount {
                                        tenant: u.tenant.as_deref().map(str::to_string),
                                        model: u.model.clone(),
                                        input_tokens: u.input_tokens,
                                        output_tokens: u.output_tokens,
                                        requests: u.requests,
                                    },
                                )
                            })
                            .collect::<PyResult<_>>()?,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        let rejected = d
            .rejected
            .iter()
            .map(|&(status, count)| {
                // the core's 0 is its bucket for every other status
                let status = (status != 0).then_some(status);
                Py::new(py, RejectedCount { status, count })
            })
            .collect::<PyResult<_>>()?;
        Ok(StatsDelta {
            routes,
            agents,
            rejected,
        })
    }

    /// Every agent's state now, sorted by name.
    fn agents(&self, py: Python<'_>) -> PyResult<Vec<AgentState>> {
        self.inner
            .agents()
            .into_iter()
            .map(|a| {
                let endpoints = a
                    .endpoints
                    .into_iter()
                    .map(|e| {
                        Py::new(
                            py,
                            EndpointState {
                                url: e.stats.id,
                                weight: e.stats.weight,
                                healthy: e.stats.healthy,
                                breaker: e.stats.breaker.state.into(),
                                breaker_trips: e.stats.breaker.trips,
                                breaker_open_for: e.breaker_open_for.as_secs_f64(),
                                in_flight: e.stats.outstanding,
                                latency: e.stats.ewma_nanos as f64 / 1e9,
                                last_probe: e.probe.last_probe,
                                last_status: e.probe.last_status,
                                last_error: e.probe.last_error,
                                probe_successes: e.probe.successes,
                                probe_failures: e.probe.failures,
                                connections_opened: e.connections_opened,
                                idle_connections: e.idle_connections,
                            },
                        )
                    })
                    .collect::<PyResult<_>>()?;
                Ok(AgentState {
                    name: a.name,
                    in_flight: a.in_flight,
                    queued: by_priority(a.queued),
                    health_checked: a.health_checked,
                    retry_budget: a.retry_budget,
                    requests: a.requests,
                    endpoints,
                })
            })
            .collect()
    }

    /// Sets the tenants over their spending budget: their requests get 429 `budget-exceeded`.
    fn set_limited_tenants(&self, tenants: Vec<String>) {
        self.inner.set_limited_tenants(tenants);
    }

    /// Agents with no endpoint that requests wait for (scale from zero); waits up to
    /// `timeout` seconds for one (the GIL is released meanwhile).
    #[pyo3(signature = (timeout = 1.0))]
    fn activations(&self, py: Python<'_>, timeout: f64) -> Vec<String> {
        let t = Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
        py.detach(|| self.inner.activations(t))
    }

    /// Probes an agent's endpoints now (up to `attempts` tries each); KeyError if unknown.
    #[pyo3(signature = (agent, attempts = 3))]
    fn probe(&self, py: Python<'_>, agent: &str, attempts: u32) -> PyResult<Vec<ProbeResult>> {
        let results = py
            .detach(|| self.inner.probe(agent, attempts))
            .ok_or_else(|| PyKeyError::new_err(agent.to_string()))?;
        Ok(results
            .into_iter()
            .map(|r| ProbeResult {
                url: r.url,
                ok: r.ok,
                status: r.status,
                error: r.error,
                latency: r.latency,
                attempts: r.attempts,
            })
            .collect())
    }

    /// Stops accepting and drains open requests for up to `grace` seconds; True if all ended.
    fn shutdown(&self, py: Python<'_>, grace: f64) -> bool {
        let grace = Duration::from_secs_f64(grace.clamp(0.0, 3600.0));
        py.detach(|| self.inner.shutdown(grace))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DataPlane>()?;
    m.add_class::<StatsDelta>()?;
    m.add_class::<RouteCounts>()?;
    m.add_class::<StatusClass>()?;
    m.add_class::<AgentCounts>()?;
    m.add_class::<UsageCount>()?;
    m.add_class::<RejectedCount>()?;
    m.add_class::<LatencyCounts>()?;
    m.add_class::<AgentState>()?;
    m.add_class::<EndpointState>()?;
    m.add_class::<ProbeResult>()?;
    // a tuple: a module constant callers must not change
    m.add(
        "LATENCY_BOUNDS",
        pyo3::types::PyTuple::new(m.py(), agentgate_core::stats::LATENCY_BOUNDS)?,
    )?;
    Ok(())
}
