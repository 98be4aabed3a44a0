//! Python bindings for agentgate_core::engine: the gateway's one-call admission decision.

use std::sync::Arc;

use agentgate_core::balancer::Outcome;
use agentgate_core::engine::{
    Admit, AdmitOutcome, Admitted, Client, Engine, EngineSpec, Forward, RequestHead,
};
use agentgate_core::http1::request::Framing;
use agentgate_core::stats::{LatencyDelta, Recorder};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::clock::{any_clock, ManualClock};

fn parse_spec(spec: &[u8]) -> PyResult<EngineSpec> {
    serde_json::from_slice(spec).map_err(|e| PyValueError::new_err(format!("engine spec: {e}")))
}

fn outcome(name: &str) -> PyResult<Outcome> {
    match name {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        "cancelled" => Ok(Outcome::Cancelled),
        other => Err(PyValueError::new_err(format!(
            "outcome must be 'success', 'failure' or 'cancelled', got {other:?}"
        ))),
    }
}

/// A request the engine let through (or queued): what the handler forwards with.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Admission {
    #[pyo3(get)]
    route: usize,
    #[pyo3(get)]
    route_id: Py<PyString>,
    #[pyo3(get)]
    agent: usize,
    #[pyo3(get)]
    agent_name: Py<PyString>,
    #[pyo3(get)]
    endpoint: usize,
    #[pyo3(get)]
    url: Py<PyString>,
    #[pyo3(get)]
    strip: usize,
    #[pyo3(get)]
    priority: &'static str,
    #[pyo3(get)]
    key_id: Option<Py<PyString>>,
    #[pyo3(get)]
    tenant: Option<Py<PyString>>,
    #[pyo3(get)]
    ticket: Option<u64>,
    #[pyo3(get)]
    ratelimit: Option<(String, String)>,
    /// Forwarded header lines (from `admit_request`; None from `admit`).
    #[pyo3(get)]
    block: Option<Py<PyBytes>>,
    /// Body framing: -1 none, -2 chunked, else the Content-Length.
    #[pyo3(get)]
    framing: i64,
    /// The block carries a Host line.
    #[pyo3(get)]
    block_has_host: bool,
    /// Upstream target: stripped, re-encoded path plus query ("" from `admit`).
    #[pyo3(get)]
    target: Py<PyString>,
    stats: Recorder,
}

#[pymethods]
impl Admission {
    /// Counts the request's end (`status` 0: none) and, if `upstream` >= 0, an attempt's
    /// time to response headers, in seconds.
    #[pyo3(signature = (status, seconds, upstream=-1.0))]
    fn record(&self, status: u16, seconds: f64, upstream: f64) {
        self.stats.record(status, seconds, upstream);
    }
}

/// A refused request: status, reason and the headers the problem response carries.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Rejection {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    reason: &'static str,
    #[pyo3(get)]
    detail: String,
    #[pyo3(get)]
    headers: Vec<(&'static str, String)>,
    /// Agent index of the matched route (None before routing), for tickets in the same result.
    #[pyo3(get)]
    agent: Option<usize>,
}

/// The gateway decision engine: route, auth, priority, rate limit, admission and endpoint pick.
#[pyclass(module = "agentgate._core", frozen)]
pub struct GatewayCore {
    engine: Engine,
    // Interned per snapshot so admit() hands out shared strings instead of allocating.
    names: parking_lot::RwLock<Arc<Names>>,
}

struct Names {
    routes: Vec<Py<PyString>>,
    agents: Vec<Py<PyString>>,
    urls: Vec<Vec<Py<PyString>>>,
}

fn names(py: Python<'_>, engine: &Engine) -> Arc<Names> {
    let snap = engine.snapshot();
    let mut routes = Vec::new();
    let mut i = 0;
    while let Some(id) = snap.route_id(i) {
        routes.push(PyString::new(py, id).unbind());
        i += 1;
    }
    let agents = snap
        .pools
        .iter()
        .map(|p| PyString::new(py, &p.name).unbind())
        .collect();
    let urls = snap
        .pools
        .iter()
        .map(|p| {
            p.urls
                .iter()
                .map(|u| PyString::new(py, u).unbind())
                .collect()
        })
        .collect();
    Arc::new(Names {
        routes,
        agents,
        urls,
    })
}

impl GatewayCore {
    fn admission(
        &self,
        py: Python<'_>,
        a: Admitted,
        ticket: Option<u64>,
        fwd: Option<&Forward>,
    ) -> Admission {
        let names = self.names.read().clone();
        let pick = |v: &Vec<Py<PyString>>, i: usize| {
            v.get(i)
                .map_or_else(|| PyString::new(py, "").unbind(), |s| s.clone_ref(py))
        };
        Admission {
            route: a.route,
            route_id: pick(&names.routes, a.route),
            agent: a.agent,
            agent_name: pick(&names.agents, a.agent),
            endpoint: a.endpoint,
            url: names
                .urls
                .get(a.agent)
                .map_or_else(|| PyString::new(py, "").unbind(), |u| pick(u, a.endpoint)),
            strip: a.strip,
            priority: a.priority.as_str(),
            key_id: a
                .identity
                .as_ref()
                .map(|i| PyString::new(py, &i.key_id).unbind()),
            tenant: a
                .identity
                .as_ref()
                .and_then(|i| i.tenant.as_deref().map(|t| PyString::new(py, t).unbind())),
            ticket,
            stats: a.stats,
            ratelimit: a.ratelimit,
            block: fwd.map(|f| PyBytes::new(py, &f.block.bytes).unbind()),
            framing: fwd.map_or(-1, |f| match f.block.framing {
                Framing::Empty => -1,
                Framing::Chunked => -2,
                Framing::Length(n) => i64::try_from(n).unwrap_or(i64::MAX),
            }),
            block_has_host: fwd.is_some_and(|f| f.block.has_host),
            target: PyString::new(py, fwd.map_or("", |f| f.target.as_str())).unbind(),
        }
    }

    /// The (decision, shed, granted) tuple both admit calls return.
    fn outcome<'py>(
        &self,
        py: Python<'py>,
        out: AdmitOutcome,
        fwd: Option<&Forward>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let decision: Py<PyAny> = match out.decision {
            Admit::Proceed(a) => Py::new(py, self.admission(py, a, None, fwd))?.into_any(),
            Admit::Queued(a, t) => Py::new(py, self.admission(py, a, Some(t), fwd))?.into_any(),
            Admit::Rejected(r) => Py::new(
                py,
                Rejection {
                    status: r.status,
                    reason: r.reason,
                    detail: r.detail,
                    headers: r.headers,
                    agent: out.agent,
                },
            )?
            .into_any(),
        };
        let shed: Py<PyAny> = if out.shed.is_empty() {
            py.None()
        } else {
            PyList::new(py, out.shed)?.into_any().unbind()
        };
        PyTuple::new(
            py,
            [
                decision,
                shed,
                out.granted.into_pyobject(py)?.into_any().unbind(),
            ],
        )
    }
}

#[pymethods]
impl GatewayCore {
    #[new]
    #[pyo3(signature = (spec, clock=None))]
    fn new(py: Python<'_>, spec: &[u8], clock: Option<PyRef<'_, ManualClock>>) -> PyResult<Self> {
        let engine = Engine::new(parse_spec(spec)?, any_clock(clock.as_deref()))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let names = names(py, &engine);
        Ok(Self {
            engine,
            names: parking_lot::RwLock::new(names),
        })
    }

    /// Compiles a new spec (JSON bytes) and swaps it in; ValueError leaves the old one running.
    fn replace(&self, py: Python<'_>, spec: &[u8]) -> PyResult<()> {
        self.engine
            .replace(parse_spec(spec)?)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        *self.names.write() = names(py, &self.engine);
        Ok(())
    }

    /// Decides one request: returns (decision, shed_tickets, granted_ticket) where decision is
    /// an `Admission` (ticket set when queued) or a `Rejection`.
    fn admit<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        host: &str,
        path: &str,
        headers: &Bound<'py, PyAny>,
        client_ip: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let get = intern!(py, "get");
        let fetch = |name: &Bound<'py, PyString>| -> PyResult<Option<Bound<'py, PyString>>> {
            let v = headers.call_method1(get, (name,))?;
            Ok(v.cast_into::<PyString>().ok())
        };
        let auth = fetch(intern!(py, "authorization"))?;
        let api_key = fetch(intern!(py, "x-api-key"))?;
        let prio = fetch(intern!(py, "x-priority"))?;
        let auth_s = auth.as_ref().map(|s| s.to_str()).transpose()?;
        let key_s = api_key.as_ref().map(|s| s.to_str()).transpose()?;
        let prio_s = prio.as_ref().map(|s| s.to_str()).transpose()?;
        // Routes matching on other headers (rare) get them all, lowercased, up front.
        let extra: Vec<(String, String)> = if self.engine.snapshot().needs_headers() {
            let items = headers.call_method0(intern!(py, "items"))?;
            let mut out = Vec::new();
            for item in items.try_iter()? {
                let (k, v): (String, String) = item?.extract()?;
                out.push((k.to_ascii_lowercase(), v));
            }
            out
        } else {
            Vec::new()
        };
        let lookup = |name: &str| -> Option<&str> {
            match name {
                "authorization" => auth_s,
                "x-api-key" => key_s,
                "x-priority" => prio_s,
                _ => extra
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str()),
            }
        };
        let head = RequestHead {
            method,
            host,
            path,
            client_ip,
            header: lookup,
        };
        let out = self.engine.admit(&head);
        self.outcome(py, out, None)
    }

    /// `admit` plus the forwarded request: the Admission also carries the upstream header
    /// block, its framing and the target. `headers` needs `items()` (pairs of str); names
    /// are matched case-insensitively. `request_id` is added upstream unless None.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (method, host, path, query, headers, client_ip, scheme, request_id))]
    fn admit_request<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        host: &str,
        path: &str,
        query: &str,
        headers: &Bound<'py, PyAny>,
        client_ip: &str,
        scheme: &str,
        request_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let items = headers.call_method0(intern!(py, "items"))?;
        let mut owned: Vec<(Bound<'py, PyString>, Bound<'py, PyString>)> = Vec::with_capacity(16);
        for item in items.try_iter()? {
            owned.push(item?.extract()?);
        }
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(owned.len());
        for (k, v) in &owned {
            pairs.push((k.to_str()?, v.to_str()?));
        }
        let lookup = |name: &str| -> Option<&str> {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let head = RequestHead {
            method,
            host,
            path,
            client_ip,
            header: lookup,
        };
        let client = Client {
            scheme,
            query,
            request_id,
        };
        let (out, fwd) = self
            .engine
            .admit_forward(&head, pairs.iter().copied(), &client);
        self.outcome(py, out, fwd.as_ref())
    }

    /// Counts since the last call: ([(agent, route, classes, buckets, sum)],
    /// [(agent, buckets, sum)]); classes[i] is `ixx` for 1..=5 and other statuses at 0,
    /// buckets are per `LATENCY_BOUNDS` bound plus +Inf, not cumulative.
    fn take_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let d = self.engine.take_stats();
        let hist = |l: &LatencyDelta| (l.counts.to_vec(), l.sum);
        let routes = PyList::empty(py);
        for (agent, route, r) in &d.routes {
            let (b, sum) = hist(&r.latency);
            routes.append((agent.as_ref(), route.as_ref(), r.classes.to_vec(), b, sum))?;
        }
        let upstream = PyList::empty(py);
        for (agent, l) in &d.upstream {
            let (b, sum) = hist(l);
            upstream.append((agent.as_ref(), b, sum))?;
        }
        PyTuple::new(py, [routes.into_any(), upstream.into_any()])
    }

    /// Picks an endpoint for a request that holds a slot of agent `agent`: (index, url).
    fn pick(&self, py: Python<'_>, agent: usize) -> PyResult<Py<PyAny>> {
        match self.engine.pick(agent) {
            Ok(e) => {
                let names = self.names.read().clone();
                let url = names
                    .urls
                    .get(agent)
                    .and_then(|u| u.get(e))
                    .map_or_else(|| PyString::new(py, "").unbind(), |s| s.clone_ref(py));
                Ok((e, url).into_pyobject(py)?.into_any().unbind())
            }
            Err(r) => Ok(Py::new(
                py,
                Rejection {
                    status: r.status,
                    reason: r.reason,
                    detail: r.detail,
                    headers: r.headers,
                    agent: Some(agent),
                },
            )?
            .into_any()),
        }
    }

    /// Ends an attempt (endpoint may be None) and, unless keep_slot, the admission slot;
    /// returns the ticket to wake, if any.
    #[pyo3(signature = (agent, endpoint, latency, outcome="success", keep_slot=false))]
    fn finish(
        &self,
        agent: usize,
        endpoint: Option<usize>,
        latency: f64,
        outcome: &str,
        keep_slot: bool,
    ) -> PyResult<Option<u64>> {
        let o = self::outcome(outcome)?;
        let nanos = if latency.is_finite() && latency > 0.0 {
            (latency * 1e9) as u64
        } else {
            0
        };
        Ok(self.engine.finish(agent, endpoint, nanos, o, keep_slot))
    }

    /// Releases the admission slot of a request that never used an endpoint.
    fn release(&self, agent: usize) -> Option<u64> {
        self.engine.release(agent)
    }

    /// Withdraws a queued ticket; False means it was granted meanwhile (release it).
    fn cancel(&self, agent: usize, ticket: u64) -> bool {
        self.engine.cancel(agent, ticket)
    }

    /// (agent, ticket) pairs that waited longer than their class allows.
    fn expire(&self) -> Vec<(usize, u64)> {
        self.engine.expire()
    }

    /// Marks an endpoint healthy or not (active health checks).
    fn set_healthy(&self, agent: usize, endpoint: usize, healthy: bool) -> PyResult<()> {
        let snap = self.engine.snapshot();
        let pool = snap
            .pools
            .get(agent)
            .ok_or_else(|| PyValueError::new_err(format!("unknown agent index {agent}")))?;
        pool.balancer
            .set_healthy(endpoint, healthy)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Per-endpoint state for health and metrics: list of dicts per agent.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let snap = self.engine.snapshot();
        let out = pyo3::types::PyDict::new(py);
        for pool in snap.pools.iter() {
            let eps = PyList::empty(py);
            for i in 0..pool.balancer.len() {
                let s = pool
                    .balancer
                    .endpoint_stats(i)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                let d = pyo3::types::PyDict::new(py);
                d.set_item("url", &s.id)?;
                d.set_item("weight", s.weight)?;
                d.set_item("outstanding", s.outstanding)?;
                d.set_item("latency_ewma", s.ewma_nanos as f64 / 1e9)?;
                d.set_item("healthy", s.healthy)?;
                d.set_item("breaker", s.breaker.state.as_str())?;
                d.set_item("breaker_trips", s.breaker.trips)?;
                d.set_item("window_requests", s.breaker.window_requests)?;
                d.set_item("window_failures", s.breaker.window_failures)?;
                eps.append(d)?;
            }
            let p = pyo3::types::PyDict::new(py);
            p.set_item("endpoints", eps)?;
            p.set_item("in_flight", pool.admission.in_flight())?;
            let depths = pool.admission.depths();
            p.set_item("queue", (depths[0], depths[1], depths[2], depths[3]))?;
            out.set_item(pool.name.as_ref(), p)?;
        }
        Ok(out.into_any().unbind())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GatewayCore>()?;
    m.add_class::<Admission>()?;
    m.add_class::<Rejection>()?;
    m.add(
        "LATENCY_BOUNDS",
        agentgate_core::stats::LATENCY_BOUNDS.to_vec(),
    )?;
    Ok(())
}
