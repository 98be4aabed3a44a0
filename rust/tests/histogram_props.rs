//! Property tests of the latency histogram: percentile error bound, exact extremes, concurrency.

use std::sync::Arc;

use agentgate_core::histogram::{LatencyHistogram, MAX_TRACKABLE_NANOS, RELATIVE_ERROR};
use proptest::prelude::*;

/// Latency-like values spread over many orders of magnitude (0 .. 1 h).
fn value() -> impl Strategy<Value = u64> {
    (0u32..42, any::<u64>())
        .prop_map(|(bits, r)| (r >> (64 - bits.max(1))).min(MAX_TRACKABLE_NANOS))
}

fn exact(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

proptest! {
    #[test]
    fn percentiles_within_declared_error(values in prop::collection::vec(value(), 1..2000)) {
        let h = LatencyHistogram::new();
        for v in &values {
            h.record(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let s = h.snapshot();
        prop_assert_eq!(s.count, values.len() as u64);
        prop_assert_eq!(s.min, sorted[0]);
        prop_assert_eq!(s.max, *sorted.last().unwrap());
        prop_assert_eq!(s.sum, values.iter().sum::<u64>());
        for (q, got) in [(0.5, s.p50), (0.9, s.p90), (0.95, s.p95), (0.99, s.p99), (0.999, s.p999)] {
            let want = exact(&sorted, q);
            let err = (got as f64 - want as f64).abs();
            prop_assert!(err <= want as f64 * RELATIVE_ERROR, "q={} got {} want {}", q, got, want);
            prop_assert_eq!(h.quantile(q), got);
        }
    }

    #[test]
    fn prometheus_buckets_are_cumulative(values in prop::collection::vec(value(), 0..500), mut bounds in prop::collection::vec(value(), 1..10)) {
        let h = LatencyHistogram::new();
        for v in &values {
            h.record(*v);
        }
        bounds.sort_unstable();
        let got = h.buckets(&bounds);
        for (i, b) in bounds.iter().enumerate() {
            let le = values.iter().filter(|v| **v <= *b).count() as u64;
            // Bucket resolution can only undercount, and only values within 1/128 below the bound.
            let near = values.iter().filter(|v| **v <= *b && (*b - **v) as f64 <= *b as f64 / 128.0).count() as u64;
            prop_assert!(got[i] <= le && got[i] + near >= le, "bound {} got {} le {}", b, got[i], le);
            if i > 0 {
                prop_assert!(got[i] >= got[i - 1]);
            }
        }
    }
}

#[test]
fn eight_threads_record_exactly() {
    let h = Arc::new(LatencyHistogram::new());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    h.record(1_000 + t * 100_000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = h.snapshot();
    assert_eq!(s.count, 800_000);
    let want: u64 = (0..8u64)
        .flat_map(|t| (0..100_000u64).map(move |i| 1_000 + t * 100_000 + i))
        .sum();
    assert_eq!(s.sum, want);
    assert_eq!(s.min, 1_000);
    assert_eq!(s.max, 1_000 + 7 * 100_000 + 99_999);
    assert_eq!(h.buckets(&[u64::MAX]), [800_000]);
}
