//! Active health checks: every endpoint of a pool with a `health_check` is probed with GET on
//! its path every `interval`; `healthy` successes in a row make it eligible again, `unhealthy`
//! failures take it out of the balancer's picks. Probes use the same client as requests.
//! [`probe_now`] probes an agent's endpoints on demand, with retries.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{header, Request};

use crate::config::HealthCheck;
use crate::engine::{Pool, Snapshot};
use crate::proxy::body::ReqBody;
use crate::proxy::upstream::Endpoint;

/// What the last probes of an endpoint found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeState {
    /// UNIX time of the last probe (0: never probed).
    pub last_probe: f64,
    /// Its status, when it got an answer.
    pub last_status: Option<u16>,
    /// Its error, when it got none.
    pub last_error: Option<String>,
    /// Its round trip, seconds.
    pub last_latency: f64,
    /// Successes in a row.
    pub successes: u32,
    /// Failures in a row.
    pub failures: u32,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Endpoint URL.
    pub url: String,
    /// Whether it passed.
    pub ok: bool,
    /// Status of the last attempt, if it answered.
    pub status: Option<u16>,
    /// Error of the last attempt, if it did not.
    pub error: Option<String>,
    /// Round trip of the last attempt, seconds.
    pub latency: f64,
    /// Attempts made.
    pub attempts: u32,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One GET; `strict`: only 2xx/3xx pass, else anything below 500 does.
async fn probe_once(
    ep: Arc<Endpoint>,
    path: Arc<str>,
    timeout: Duration,
    strict: bool,
) -> ProbeResult {
    let started = Instant::now();
    let mut req = Request::new(ReqBody::Empty);
    let target = format!("{}{path}", ep.prefix);
    *req.uri_mut() = target
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    req.headers_mut().insert(header::HOST, ep.authority.clone());
    req.headers_mut().insert(
        header::USER_AGENT,
        http::HeaderValue::from_static("agentgate-health/1"),
    );
    let sent = ep.send(req, Some(timeout), Some(timeout));
    let (ok, status, error) = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(resp)) => {
            let s = resp.status().as_u16();
            // read the (small) body so the connection can be reused
            let _ =
                tokio::time::timeout(timeout, http_body_util::BodyExt::collect(resp.into_body()))
                    .await;
            let ok = if strict { s < 400 } else { s < 500 };
            (ok, Some(s), None)
        }
        Ok(Err(e)) => (false, None, Some(e.detail)),
        Err(_) => (false, None, Some(format!("no answer within {timeout:?}"))),
    };
    ProbeResult {
        url: ep.url.to_string(),
        ok,
        status,
        error,
        latency: started.elapsed().as_secs_f64(),
        attempts: 1,
    }
}

fn record(pool: &Pool, i: usize, r: &ProbeResult, hc: Option<&HealthCheck>) {
    let Some(ep) = pool.endpoints.get(i) else {
        return;
    };
    let mut st = ep.health.lock();
    st.last_probe = unix_now();
    st.last_status = r.status;
    st.last_error = r.error.clone();
    st.last_latency = r.latency;
    if r.ok {
        st.successes = st.successes.saturating_add(1);
        st.failures = 0;
    } else {
        st.failures = st.failures.saturating_add(1);
        st.successes = 0;
    }
    if let Some(hc) = hc {
        if r.ok && st.successes >= hc.healthy {
            let _ = pool.balancer.set_healthy(i, true);
        } else if !r.ok && st.failures >= hc.unhealthy {
            let _ = pool.balancer.set_healthy(i, false);
        }
    }
}

/// Probes every endpoint of `pool` forever, as its `health_check` says.
async fn check_pool(pool: Arc<Pool>, hc: HealthCheck) {
    let interval = Duration::from_secs_f64(hc.interval.max(0.01));
    let timeout = Duration::from_secs_f64(hc.timeout.max(0.001));
    let path: Arc<str> = hc.path.as_str().into();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut set = tokio::task::JoinSet::new();
        for (i, ep) in pool.endpoints.iter().enumerate() {
            let probe = probe_once(ep.clone(), path.clone(), timeout, true);
            set.spawn(async move { (i, probe.await) });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                record(&pool, i, &r, Some(&hc));
            }
        }
    }
}

/// The running health checkers of one snapshot; dropping it stops them.
pub struct Checkers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a checker for every pool of `snap` with a health check.
pub fn start(snap: &Snapshot, rt: &tokio::runtime::Handle) -> Checkers {
    let tasks = snap
        .pools
        .iter()
        .filter_map(|p| {
            let hc = p.config.health_check.clone()?;
            Some(rt.spawn(check_pool(p.clone(), hc)))
        })
        .collect();
    Checkers { tasks }
}

/// Probes every endpoint of `pool` now, up to `attempts` times each until one passes, and
/// records the results as health checks do.
pub async fn probe_now(pool: Arc<Pool>, attempts: u32) -> Vec<ProbeResult> {
    let hc = pool.config.health_check.clone();
    let (path, timeout, strict) = match &hc {
        Some(h) => (
            h.path.clone(),
            Duration::from_secs_f64(h.timeout.max(0.001)),
            true,
        ),
        None => ("/".to_string(), Duration::from_secs(2), false),
    };
    let path: Arc<str> = path.into();
    let mut set = tokio::task::JoinSet::new();
    for (i, ep) in pool.endpoints.iter().enumerate() {
        let (ep, path) = (ep.clone(), path.clone());
        set.spawn(async move {
            let mut r = probe_once(ep.clone(), path.clone(), timeout, strict).await;
            let mut n = 1;
            while !r.ok && n < attempts.max(1) {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(n))).await;
                r = probe_once(ep.clone(), path.clone(), timeout, strict).await;
                n += 1;
            }
            r.attempts = n;
            (i, r)
        });
    }
    let mut out: Vec<(usize, ProbeResult)> = Vec::with_capacity(pool.endpoints.len());
    while let Some(done) = set.join_next().await {
        if let Ok((i, r)) = done {
            record(&pool, i, &r, hc.as_ref());
            out.push((i, r));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
