//! The data plane served by the core: listener, request lifecycle, upstream client, health
//! checks. [`DataPlane`] is the one object the Python side holds: it starts listeners, swaps
//! configs in, reports statistics and per-agent state, probes agents on demand, and shuts down.

pub mod body;
pub mod forward;
pub mod handler;
pub mod health;
pub mod problem;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::balancer::EndpointStats;
use crate::clock::AnyClock;
use crate::config::{ConfigError, GatewayConfig};
use crate::engine::{Engine, StatsDelta};
use crate::proxy::health::{Checkers, ProbeResult, ProbeState};

/// A failure to start the data plane.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime or a listener could not start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One endpoint as the data plane sees it now.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// Balancer view: weight, outstanding requests, latency estimate, health, breaker.
    pub stats: EndpointStats,
    /// Cool-down of the breaker's latest trip (it grows with `stats.breaker.trips` up to
    /// `open_for_max`); zero before the first trip.
    pub breaker_open_for: Duration,
    /// Last health probes.
    pub probe: ProbeState,
    /// Connections opened so far.
    pub connections_opened: u64,
    /// Idle keep-alive connections.
    pub idle_connections: usize,
}

/// One agent as the data plane sees it now.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    /// Agent name.
    pub name: String,
    /// Admission slots held.
    pub in_flight: u32,
    /// Waiting requests per class: critical, high, normal, low.
    pub queued: [u32; 4],
    /// Whether active health checks run.
    pub health_checked: bool,
    /// Retries left in the budget.
    pub retry_budget: f64,
    /// Requests admitted since the agent appeared (monotonic).
    pub requests: u64,
    /// Endpoints in balancer order.
    pub endpoints: Vec<EndpointStatus>,
}

/// The data plane: a tokio runtime with the listeners, the engine and the health checkers.
pub struct DataPlane {
    engine: Arc<Engine>,
    shared: Arc<handler::Shared>,
    runtime: tokio::runtime::Runtime,
    checkers: parking_lot::Mutex<Option<Checkers>>,
    listeners: parking_lot::Mutex<Vec<server::Listener>>,
}

impl DataPlane {
    /// A data plane for `cfg` on `workers` threads (nothing listens yet).
    pub fn new(cfg: &GatewayConfig, workers: usize, clock: AnyClock) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("agentgate-dp")
            .enable_all()
            .build()?;
        // built in the runtime's context, as replace() does (the tracer's exporter has its own thread)
        let engine = {
            let _rt = runtime.enter();
            Arc::new(Engine::new(cfg, clock)?)
        };
        let shared = Arc::new(handler::Shared::new(engine.clone()));
        let checkers = health::start(&engine.snapshot(), runtime.handle());
        Ok(DataPlane {
            engine,
            shared,
            runtime,
            checkers: parking_lot::Mutex::new(Some(checkers)),
            listeners: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Starts serving on `addr` (`host:port`, port 0 for any); returns the bound address.
    pub fn listen(&self, addr: &str) -> std::io::Result<SocketAddr> {
        let listener = server::bind(addr)?;
        let http = self.engine.snapshot().http;
        let shared = self.shared.clone();
        let _guard = self.runtime.enter();
        let l = server::serve(listener, shared, http.max_header_bytes, http.max_headers)?;
        let addr = l.addr;
        self.listeners.lock().push(l);
        Ok(addr)
    }

    /// Swaps a new config in; the old one stays on error. Health checks restart on the new
    /// pools (their counters live on the endpoints and carry over).
    pub fn replace(&self, cfg: &GatewayConfig) -> Result<(), ConfigError> {
        {
            let _rt = self.runtime.enter();
            self.engine.replace(cfg)?;
        }
        let checkers = health::start(&self.engine.snapshot(), self.runtime.handle());
        *self.checkers.lock() = Some(checkers);
        Ok(())
    }

    /// The engine (for its snapshot and statistics).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Counts since the last take.
    pub fn take_stats(&self) -> StatsDelta {
        self.engine.take_stats()
    }

    /// Every agent's state, by name.
    pub fn agents(&self) -> Vec<AgentStatus> {
        let snap = self.engine.snapshot();
        snap.pools
            .iter()
            .map(|p| AgentStatus {
                name: p.name.to_string(),
                in_flight: p.admission.in_flight(),
                queued: p.admission.depths(),
                health_checked: p.config.health_check.is_some(),
                retry_budget: p.budget.available(),
                requests: p.stats.requests(),
                endpoints: p
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter_map(|(i, ep)| {
                        let stats = p.balancer.endpoint_stats(i).ok()?;
                        let trips = stats.breaker.trips;
                        let breaker_open_for = if trips == 0 {
                            Duration::ZERO
                        } else {
                            let cfg = p.balancer.breaker(i).ok()?.config();
                            Duration::from_nanos(cfg.cooldown_nanos(trips))
                        };
                        Some(EndpointStatus {
                            stats,
                            breaker_open_for,
                            probe: ep.health.lock().clone(),
                            connections_opened: ep.connections_opened(),
                            idle_connections: ep.idle_connections(),
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    /// Sets the tenants over their spending budget (refused with 429 `budget-exceeded`).
    pub fn set_limited_tenants(&self, tenants: Vec<String>) {
        self.engine.set_limited_tenants(tenants);
    }

    /// Agents with no endpoint that requests wait for (scale from zero), waiting up to
    /// `timeout` for one; a blocking call for a thread of its own.
    pub fn activations(&self, timeout: Duration) -> Vec<String> {
        self.engine
            .activations
            .take(timeout)
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Probes an agent's endpoints now (up to `attempts` each); `None` for an unknown agent.
    pub fn probe(&self, agent: &str, attempts: u32) -> Option<Vec<ProbeResult>> {
        let pool = self.engine.snapshot().pool_named(agent)?.clone();
        Some(self.runtime.block_on(health::probe_now(pool, attempts)))
    }

    /// Stops accepting, lets open requests finish for up to `grace`, then stops the checkers;
    /// returns whether every connection finished in time.
    pub fn shutdown(&self, grace: Duration) -> bool {
        let listeners: Vec<server::Listener> = std::mem::take(&mut *self.listeners.lock());
        let drained = self.runtime.block_on(async {
            let mut all = true;
            for l in &listeners {
                all &= l.shutdown(grace).await;
            }
            all
        });
        *self.checkers.lock() = None;
        drained
    }
}
