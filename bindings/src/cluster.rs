//! Python bindings for the lease side of cluster rate limits (agentgate_core::cluster_limit):
//! the host's lease loop reads demand per key and grants leased tokens. Conversion only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agentgate_core::clock::Clock;
use agentgate_core::cluster_limit::{Grant, RedisState as CoreRedisState};
use agentgate_core::engine::Engine;
use agentgate_core::setting::secs_to_nanos;
use pyo3::prelude::*;

use crate::dataplane::DataPlane;
use crate::enums::{named_enum, py_enum};
use crate::errors::setting_error;

py_enum! {
    /// Whether the lease loop reaches Redis; `str()` gives "up" or "down".
    RedisState mirrors CoreRedisState {
        /// Leases flow: cluster routes spend leased tokens.
        Up,
        /// Unreachable: cluster routes follow their `on_redis_error`.
        Down,
    }
}
named_enum!(RedisState, CoreRedisState);

/// One key of a cluster route that wants the lease loop's attention.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct KeyDemand {
    /// Route id.
    route: String,
    /// Limit key (API key id, tenant, IP or header value).
    key: String,
    /// Requests since the last take, admitted or not.
    asked: u64,
    /// Leased tokens left; negative: spent ahead of a lease, owed to Redis.
    tokens: i64,
    /// The route's shared rate per second.
    rate: f64,
    /// The route's shared bucket size.
    burst: u32,
    /// Tokens a key may spend ahead of its lease in this gateway.
    credit: i64,
}

/// One cluster route's decisions since the last take.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct LimitDecisions {
    route: String,
    /// Admitted from leased tokens.
    allowed: u64,
    /// Admitted ahead of a lease (charged with the next one).
    borrowed: u64,
    /// Refused: no leased token left.
    limited: u64,
    /// Admitted while Redis was unreachable (`on_redis_error: open`).
    fail_open: u64,
    /// Refused while Redis was unreachable (`closed`).
    fail_closed: u64,
    /// Decided by the local limiter (`local`, or a key beyond the key cap).
    local: u64,
}

/// What one take found: keys to lease for and decision counts.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct LeaseDemand {
    keys: Vec<Py<KeyDemand>>,
    decisions: Vec<Py<LimitDecisions>>,
}

/// Tokens leased from Redis for one key of one route.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct LeaseGrant {
    route: String,
    key: String,
    /// Tokens added to the key's balance (what was owed plus the new ones).
    tokens: i64,
    /// Wake the lease loop when the balance falls to this.
    refill_at: i64,
    /// Seconds the tokens stay valid.
    ttl: f64,
    /// Seconds before Redis has another token for this key (0: now).
    retry_after: f64,
}

fn duration(field: &str, secs: f64) -> PyResult<Duration> {
    secs_to_nanos(field, secs)
        .map(Duration::from_nanos)
        .map_err(setting_error)
}

#[pymethods]
impl LeaseGrant {
    #[new]
    #[pyo3(signature = (route, key, tokens, *, refill_at = 0, ttl = 1.0, retry_after = 0.0))]
    fn new(
        route: String,
        key: String,
        tokens: i64,
        refill_at: i64,
        ttl: f64,
        retry_after: f64,
    ) -> PyResult<Self> {
        duration("ttl", ttl)?;
        duration("retry_after", retry_after)?;
        Ok(LeaseGrant {
            route,
            key,
            tokens,
            refill_at,
            ttl,
            retry_after,
        })
    }
}

/// The lease side of a data plane's cluster rate limits (see `agentgate.gateway.leases`).
#[pyclass(module = "agentgate._core", frozen)]
pub struct ClusterLeases {
    engine: Arc<Engine>,
}

#[pymethods]
impl ClusterLeases {
    #[new]
    fn new(dataplane: PyRef<'_, DataPlane>) -> Self {
        ClusterLeases {
            engine: dataplane.inner.engine().clone(),
        }
    }

    /// Waits up to `timeout` seconds until a key runs low (0: only looks); true if one did.
    /// Takes the signal. The GIL is released while waiting.
    #[pyo3(signature = (timeout = 0.0))]
    fn wait(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let t = duration("timeout", timeout)?;
        let board = self.engine.snapshot().leases.clone();
        if t.is_zero() {
            return Ok(board.wait(Duration::ZERO));
        }
        Ok(py.detach(|| board.wait(t)))
    }

    /// Every cluster route's demand per key and decision counts since the last take.
    fn take(&self, py: Python<'_>) -> PyResult<LeaseDemand> {
        let snap = self.engine.snapshot();
        let mut keys = Vec::new();
        let mut decisions = Vec::new();
        for r in snap.routes() {
            let Some(c) = &r.cluster else { continue };
            let (demand, d) = c.take();
            for k in demand {
                keys.push(Py::new(
                    py,
                    KeyDemand {
                        route: r.id.to_string(),
                        key: k.key,
                        asked: k.asked,
                        tokens: k.tokens,
                        rate: c.rate(),
                        burst: c.burst(),
                        credit: c.credit(),
                    },
                )?);
            }
            decisions.push(Py::new(
                py,
                LimitDecisions {
                    route: r.id.to_string(),
                    allowed: d.allowed,
                    borrowed: d.borrowed,
                    limited: d.limited,
                    fail_open: d.fail_open,
                    fail_closed: d.fail_closed,
                    local: d.local,
                },
            )?);
        }
        Ok(LeaseDemand { keys, decisions })
    }

    /// Adds leased tokens; grants for routes no longer cluster-limited are dropped. Returns
    /// how many were applied.
    fn grant(&self, grants: Vec<PyRef<'_, LeaseGrant>>) -> PyResult<usize> {
        let mut by_route: HashMap<&str, Vec<Grant>> = HashMap::new();
        for g in &grants {
            by_route.entry(g.route.as_str()).or_default().push(Grant {
                key: g.key.clone(),
                tokens: g.tokens,
                refill_at: g.refill_at,
                ttl: duration("ttl", g.ttl)?,
                retry_after: duration("retry_after", g.retry_after)?,
            });
        }
        let snap = self.engine.snapshot();
        let mut applied = 0;
        for r in snap.routes() {
            if let (Some(c), Some(gs)) = (&r.cluster, by_route.get(r.id.as_ref())) {
                c.grant(gs);
                applied += gs.len();
            }
        }
        Ok(applied)
    }

    /// The lease loop's report on Redis (also its heartbeat: without one for 3 s, Redis
    /// counts as down).
    fn report(&self, state: RedisState) {
        let now = self.engine.clock().now_nanos();
        self.engine.snapshot().leases.report(state.into(), now);
    }

    /// Redis as the data plane sees it now (a stale report counts as down).
    fn state(&self) -> RedisState {
        let now = self.engine.clock().now_nanos();
        self.engine.snapshot().leases.state(now).into()
    }

    /// Whether any route is cluster-limited.
    fn active(&self) -> bool {
        self.engine
            .snapshot()
            .routes()
            .iter()
            .any(|r| r.cluster.is_some())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ClusterLeases>()?;
    m.add_class::<RedisState>()?;
    m.add_class::<KeyDemand>()?;
    m.add_class::<LimitDecisions>()?;
    m.add_class::<LeaseDemand>()?;
    m.add_class::<LeaseGrant>()?;
    Ok(())
}
