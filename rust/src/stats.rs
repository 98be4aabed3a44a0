//! Per-route and per-agent request statistics, counted with atomics on the request path.
//!
//! The gateway used to count these in Python per request; here a finished request costs a few
//! relaxed atomic adds, and the metrics publisher takes the deltas on its timer. Buckets follow
//! Prometheus `le` semantics: an observation equal to a bound falls into that bound's bucket.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sketch::{AtomicSketch, Sketch};

/// Upper bounds (seconds) of the latency histograms, shared with the Prometheus metrics.
pub const LATENCY_BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Number of histogram buckets: one per bound plus `+Inf`.
pub const BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// Observations taken out of a [`Latency`]: per-bucket (non-cumulative) counts and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyDelta {
    /// Count per bucket; the last one is `+Inf`.
    pub counts: [u64; BUCKETS],
    /// Sum of the observed seconds.
    pub sum: f64,
}

impl LatencyDelta {
    /// True when nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }
}

/// A lock-free latency histogram over [`LATENCY_BOUNDS`].
#[derive(Debug, Default)]
pub struct Latency {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Latency {
    /// Records one duration; negative or NaN values count as zero.
    pub fn observe(&self, seconds: f64) {
        let s = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        let i = LATENCY_BOUNDS.partition_point(|b| *b < s);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // saturating float-to-int cast: an absurd duration cannot wrap the sum
        self.sum_nanos
            .fetch_add((s * 1e9) as u64, Ordering::Relaxed);
    }

    /// Takes (and resets) what was observed since the last take.
    pub fn take(&self) -> LatencyDelta {
        let mut counts = [0u64; BUCKETS];
        for (c, a) in counts.iter_mut().zip(&self.counts) {
            *c = a.swap(0, Ordering::Relaxed);
        }
        let sum = self.sum_nanos.swap(0, Ordering::Relaxed) as f64 / 1e9;
        LatencyDelta { counts, sum }
    }
}

/// A response status's class, as requests are counted per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
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

impl StatusClass {
    /// Every class, in the order of [`RouteDelta::classes`].
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Other,
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
    ];

    /// The class of `status`.
    pub fn of(status: u16) -> Self {
        match status / 100 {
            1 => StatusClass::Informational,
            2 => StatusClass::Success,
            3 => StatusClass::Redirection,
            4 => StatusClass::ClientError,
            5 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    /// Its label in metrics: "1xx" … "5xx", or "other".
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Other => "other",
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        }
    }
}

impl std::str::FromStr for StatusClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StatusClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("{s:?}: expected other, 1xx, 2xx, 3xx, 4xx or 5xx"))
    }
}

/// Requests of one route: counts by status class and total latency.
#[derive(Debug, Default)]
pub struct RouteStats {
    // index = status / 100 for 1..=5; 0 holds anything else
    classes: [AtomicU64; 6],
    latency: Latency,
    // the same latencies as a DDSketch (1 % relative error) for the metrics history; the
    // buckets above stay for Prometheus
    sketch: AtomicSketch,
}

/// What a [`RouteStats::take`] returns.
#[derive(Debug, Clone)]
pub struct RouteDelta {
    /// Requests by class, in the order of [`StatusClass::ALL`].
    pub classes: [u64; 6],
    /// Their latency.
    pub latency: LatencyDelta,
    /// Their latency as a sketch.
    pub sketch: Sketch,
}

impl RouteDelta {
    /// True when no request finished.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|c| *c == 0)
    }

    /// Each class with its count.
    pub fn by_class(&self) -> impl Iterator<Item = (StatusClass, u64)> + '_ {
        StatusClass::ALL.into_iter().zip(self.classes)
    }
}

impl RouteStats {
    /// Records one finished request.
    pub fn record(&self, status: u16, seconds: f64) {
        self.classes[StatusClass::of(status) as usize].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(seconds);
        self.sketch.observe(seconds);
    }

    /// Takes (and resets) the counts since the last take.
    pub fn take(&self) -> RouteDelta {
        let mut classes = [0u64; 6];
        for (c, a) in classes.iter_mut().zip(&self.classes) {
            *c = a.swap(0, Ordering::Relaxed);
        }
        RouteDelta {
            classes,
            latency: self.latency.take(),
            sketch: self.sketch.take(),
        }
    }
}

/// Per-agent counters: upstream time to headers, retries, and requests refused by the queue.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Time to upstream response headers, per attempt.
    upstream: Latency,
    upstream_sketch: AtomicSketch,
    retries: AtomicU64,
    shed: AtomicU64,
    // never reset: the autoscaler derives the request rate from it
    requests: AtomicU64,
    // tokens by (tenant, model): touched once per response that reported usage
    usage: parking_lot::Mutex<std::collections::HashMap<UsageKey, [u64; 3]>>,
}

type UsageKey = (Option<std::sync::Arc<str>>, String);

/// Tokens used by one tenant with one model since the last take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The caller's tenant (None for unauthenticated requests).
    pub tenant: Option<std::sync::Arc<str>>,
    /// Model ("" when the upstream did not say).
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Responses that reported them.
    pub requests: u64,
}

/// What an [`AgentStats::take`] returns.
#[derive(Debug, Clone)]
pub struct AgentDelta {
    /// Upstream time to headers.
    pub upstream: LatencyDelta,
    /// The same as a sketch.
    pub upstream_sketch: Sketch,
    /// Attempts after the first.
    pub retries: u64,
    /// Requests shed from the queue, refused by a full queue, or timed out waiting.
    pub shed: u64,
    /// Token usage by tenant and model.
    pub usage: Vec<UsageDelta>,
}

impl AgentDelta {
    /// True when nothing happened.
    pub fn is_empty(&self) -> bool {
        self.upstream.is_empty() && self.retries == 0 && self.shed == 0 && self.usage.is_empty()
    }
}

impl AgentStats {
    /// Records one attempt's time to response headers.
    pub fn upstream(&self, seconds: f64) {
        self.upstream.observe(seconds);
        self.upstream_sketch.observe(seconds);
    }

    /// Counts one retry.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one response's token usage.
    pub fn usage(&self, tenant: Option<std::sync::Arc<str>>, u: &crate::usage::Usage) {
        let mut m = self.usage.lock();
        let e = m.entry((tenant, u.model.clone())).or_insert([0; 3]);
        e[0] += u.input_tokens;
        e[1] += u.output_tokens;
        e[2] += 1;
    }

    /// Counts one admitted request (monotonic, never taken).
    pub fn admitted(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests admitted since the agent first appeared.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts one request refused by the admission queue.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes (and resets) the counts since the last take.
    pub fn take(&self) -> AgentDelta {
        AgentDelta {
            upstream: self.upstream.take(),
            upstream_sketch: self.upstream_sketch.take(),
            retries: self.retries.swap(0, Ordering::Relaxed),
            shed: self.shed.swap(0, Ordering::Relaxed),
            usage: std::mem::take(&mut *self.usage.lock())
                .into_iter()
                .map(|((tenant, model), [i, o, n])| UsageDelta {
                    tenant,
                    model,
                    input_tokens: i,
                    output_tokens: o,
                    requests: n,
                })
                .collect(),
        }
    }
}

/// Statuses the gateway answers itself, each counted on its own; others count as `other`.
pub const REJECT_STATUSES: [u16; 14] = [
    400, 401, 403, 404, 405, 408, 413, 429, 431, 499, 502, 503, 504, 0,
];

/// Requests the gateway answered itself (before or instead of the upstream), by status.
#[derive(Debug, Default)]
pub struct GatewayStats {
    rejected: [AtomicU64; REJECT_STATUSES.len()],
}

impl GatewayStats {
    /// Counts one answer of the gateway's own.
    pub fn rejected(&self, status: u16) {
        let last = REJECT_STATUSES.len() - 1;
        let i = REJECT_STATUSES[..last]
            .iter()
            .position(|s| *s == status)
            .unwrap_or(last);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes (and resets) the counts: `(status, count)`, status 0 = any other.
    pub fn take(&self) -> Vec<(u16, u64)> {
        REJECT_STATUSES
            .iter()
            .zip(&self.rejected)
            .filter_map(|(s, a)| {
                let n = a.swap(0, Ordering::Relaxed);
                (n > 0).then_some((*s, n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_le_semantics() {
        let h = Latency::default();
        for s in [0.0, 0.0005, 0.0006, 0.001, 30.0, 31.0, -1.0, f64::NAN] {
            h.observe(s);
        }
        let d = h.take();
        assert_eq!(d.counts[0], 4, "0, 0.0005 (= bound), -1 and NaN");
        assert_eq!(d.counts[1], 2, "0.0006 and 0.001");
        assert_eq!(d.counts[BUCKETS - 2], 1, "30 (= last bound)");
        assert_eq!(d.counts[BUCKETS - 1], 1, "31 is +Inf");
        assert!((d.sum - 61.0021).abs() < 1e-6, "{}", d.sum);
        assert!(h.take().is_empty(), "take resets");
    }

    #[test]
    fn routes_count_by_status_class() {
        let r = RouteStats::default();
        for st in [200, 204, 404, 503, 99, 600, 301, 101] {
            r.record(st, 0.01);
        }
        let d = r.take();
        assert_eq!(d.classes, [2, 1, 2, 1, 1, 1]);
        let by: Vec<(StatusClass, u64)> = d.by_class().collect();
        assert_eq!(by[0], (StatusClass::Other, 2));
        assert_eq!(by[5], (StatusClass::ServerError, 1));
        for c in StatusClass::ALL {
            assert_eq!(c.as_str().parse::<StatusClass>(), Ok(c));
        }
        assert!("6xx".parse::<StatusClass>().is_err());
        assert_eq!(d.latency.counts.iter().sum::<u64>(), 8);
        assert!(r.take().is_empty());
    }

    #[test]
    fn agent_and_gateway_counters() {
        let a = AgentStats::default();
        a.retry();
        a.retry();
        a.shed();
        a.upstream(0.2);
        let d = a.take();
        assert_eq!((d.retries, d.shed), (2, 1));
        assert_eq!(d.upstream.counts.iter().sum::<u64>(), 1);
        assert!(a.take().is_empty());
        let g = GatewayStats::default();
        g.rejected(404);
        g.rejected(404);
        g.rejected(418);
        assert_eq!(g.take(), vec![(404, 2), (0, 1)]);
        assert!(g.take().is_empty());
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let r = std::sync::Arc::new(RouteStats::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        r.record(200, 0.002);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let d = r.take();
        assert_eq!(d.classes[2], 40_000);
        assert_eq!(
            d.latency.counts[2], 40_000,
            "0.002 s is in the 0.0025 bucket"
        );
    }
}
