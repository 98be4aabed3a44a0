//! Per-route and per-agent request statistics, counted with atomics on the request path.
//!
//! The gateway used to count these in Python per request; here a finished request costs a few
//! relaxed atomic adds, and the metrics publisher takes the deltas on its timer. Buckets follow
//! Prometheus `le` semantics: an observation equal to a bound falls into that bound's bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// Requests of one route: counts by status class and total latency.
#[derive(Debug, Default)]
pub struct RouteStats {
    // index = status / 100 for 1..=5; 0 holds anything else
    classes: [AtomicU64; 6],
    latency: Latency,
}

/// What a [`RouteStats::take`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDelta {
    /// Requests by class: index 1..=5 is `Nxx`, 0 is any other status.
    pub classes: [u64; 6],
    /// Their latency.
    pub latency: LatencyDelta,
}

impl RouteDelta {
    /// True when no request finished.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|c| *c == 0)
    }
}

impl RouteStats {
    /// Records one finished request.
    pub fn record(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100);
        let i = if (1..=5).contains(&class) { class } else { 0 };
        self.classes[i].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(seconds);
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
        }
    }
}

/// Where one admitted request counts its outcome: its route's and its agent's statistics.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    route: Arc<RouteStats>,
    upstream: Arc<Latency>,
}

impl Recorder {
    /// A recorder over a route's counters and its agent's upstream histogram.
    pub fn new(route: Arc<RouteStats>, upstream: Arc<Latency>) -> Self {
        Recorder { route, upstream }
    }

    /// Records a finished request (`status` 0: none, only an attempt) and, when `upstream`
    /// is not negative, an attempt's time to response headers.
    pub fn record(&self, status: u16, seconds: f64, upstream: f64) {
        if status != 0 {
            self.route.record(status, seconds);
        }
        if upstream >= 0.0 {
            self.upstream.observe(upstream);
        }
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
        assert_eq!(d.latency.counts.iter().sum::<u64>(), 8);
        assert!(r.take().is_empty());
    }

    #[test]
    fn recorder_skips_what_is_not_there() {
        let route = Arc::new(RouteStats::default());
        let up = Arc::new(Latency::default());
        let r = Recorder::new(route.clone(), up.clone());
        r.record(0, 1.0, 0.2); // a retried attempt: upstream time only
        r.record(502, 1.0, -1.0); // no response headers
        assert_eq!(route.take().classes, [0, 0, 0, 0, 0, 1]);
        assert_eq!(up.take().counts.iter().sum::<u64>(), 1);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let r = Arc::new(RouteStats::default());
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
