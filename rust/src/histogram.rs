//! Latency histograms recorded without locks, and a keyed set of them.
//!
//! Bucketing is HdrHistogram's log-linear scheme with 2 significant digits: values below 256 ns
//! are counted exactly, above that each power of two is split into 128 equal buckets. A bucket
//! is reported by its midpoint, so every percentile is within a relative error of 1/256 (0.4%)
//! of the exact nearest-rank percentile. Two digits (not three) because a latency percentile
//! needs no better than 1% and the counts array stays small: 4,562 `AtomicU64` (36 KiB) cover
//! 0 ns .. 1 h; larger values are counted in the top bucket (min, max and sum stay exact).
//!
//! Recording is one `fetch_add` on the bucket plus count and sum, and `fetch_min`/`fetch_max`
//! only when the extremes move. A snapshot reads the atomics one by one: under concurrent
//! recording it may miss the few records in flight, never count one twice.
//!
//! The `hdrhistogram` crate is not used for the math: its `Histogram` is not concurrent, and
//! copying buckets into it would only quantize twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;
/// Largest value with its own bucket (one hour in nanoseconds); larger values share the top one.
pub const MAX_TRACKABLE_NANOS: u64 = 3_600 * 1_000_000_000;
/// Worst-case relative error of a reported percentile.
pub const RELATIVE_ERROR: f64 = 1.0 / 256.0;
/// Key under which [`HistogramSet`] reports records of keys beyond its capacity.
pub const OVERFLOW_KEY: &str = "_other";

fn index_of(v: u64) -> usize {
    let v = v.min(MAX_TRACKABLE_NANOS);
    if v < LINEAR {
        return v as usize;
    }
    let bits = u64::BITS - v.leading_zeros();
    let shift = bits - (SUB_BITS + 1);
    let mant = v >> shift;
    (LINEAR + (shift as u64 - 1) * SUB + (mant - SUB)) as usize
}

/// (lowest value, width) of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let j = i - LINEAR;
    let shift = j / SUB + 1;
    ((SUB + j % SUB) << shift, 1 << shift)
}

fn bucket_mid(i: usize) -> u64 {
    let (low, width) = bucket_range(i);
    low + width / 2
}

fn bucket_count() -> usize {
    index_of(MAX_TRACKABLE_NANOS) + 1
}

/// Summary of a histogram; all values in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Snapshot {
    /// Number of recorded values.
    pub count: u64,
    /// Sum of recorded values.
    pub sum: u64,
    /// Arithmetic mean (0 when empty).
    pub mean: f64,
    /// Exact minimum (0 when empty).
    pub min: u64,
    /// Exact maximum (0 when empty).
    pub max: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

/// A concurrent latency histogram in nanoseconds; see the module docs.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: (0..bucket_count()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record(&self, nanos: u64) {
        self.counts[index_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(nanos, Ordering::Relaxed);
        if nanos < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(nanos, Ordering::Relaxed);
        }
        if nanos > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn load_counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Count, mean, exact min/max and the usual percentiles.
    pub fn snapshot(&self) -> Snapshot {
        let counts = self.load_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Snapshot::default();
        }
        let sum = self.sum.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed).max(1);
        let (min, max) = (
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        );
        let qs = [0.5, 0.9, 0.95, 0.99, 0.999];
        let mut out = [0u64; 5];
        let mut cum = 0u64;
        let mut k = 0;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            while k < qs.len() && cum >= rank(qs[k], total) {
                out[k] = bucket_mid(i).clamp(min.min(max), max);
                k += 1;
            }
            if k == qs.len() {
                break;
            }
        }
        Snapshot {
            count: total,
            sum,
            mean: sum as f64 / count as f64,
            min: min.min(max),
            max,
            p50: out[0],
            p90: out[1],
            p95: out[2],
            p99: out[3],
            p999: out[4],
        }
    }

    /// The value at quantile `q` in [0, 1] (nearest rank); 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let counts = self.load_counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let (min, max) = (
            self.min.load(Ordering::Relaxed),
            self.max.load(Ordering::Relaxed),
        );
        let r = rank(q, total);
        let mut cum = 0;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            if cum >= r {
                return bucket_mid(i).clamp(min.min(max), max);
            }
        }
        max
    }

    /// Cumulative counts of values `<= bound` for each bound (Prometheus `le` buckets), to
    /// bucket resolution: a bucket counts under `bound` when its whole range is `<= bound`.
    pub fn buckets(&self, bounds: &[u64]) -> Vec<u64> {
        let mut cum = self.load_counts();
        for i in 1..cum.len() {
            cum[i] += cum[i - 1];
        }
        let total = cum.last().copied().unwrap_or(0);
        bounds
            .iter()
            .map(|&b| {
                if b >= MAX_TRACKABLE_NANOS {
                    return total;
                }
                let i = index_of(b);
                let (low, width) = bucket_range(i);
                if low + width - 1 <= b {
                    cum[i]
                } else if i == 0 {
                    0
                } else {
                    cum[i - 1]
                }
            })
            .collect()
    }

    /// Clears all counts (not atomic as a whole: records racing with it may survive partly).
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum.store(0, Ordering::Relaxed);
        self.min.store(u64::MAX, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

/// Nearest rank (1-based) of quantile `q` among `total` values.
fn rank(q: f64, total: u64) -> u64 {
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    ((q * total as f64).ceil() as u64).clamp(1, total)
}

type Map = HashMap<Box<str>, Arc<LatencyHistogram>>;

/// Histograms keyed by name (route, agent, endpoint), bounded in number.
///
/// Lookups of existing keys are lock-free (`ArcSwap` of a map); a new key copies the map under
/// a mutex, which is fine because new keys are rare. Beyond `max_keys`, records go to one
/// overflow histogram reported as [`OVERFLOW_KEY`].
pub struct HistogramSet {
    map: ArcSwap<Map>,
    insert: Mutex<()>,
    full: AtomicBool,
    max_keys: usize,
    other: Arc<LatencyHistogram>,
}

impl std::fmt::Debug for HistogramSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramSet")
            .field("keys", &self.len())
            .finish()
    }
}

impl HistogramSet {
    /// An empty set holding at most `max_keys` keys (each costs about 36 KiB).
    pub fn new(max_keys: usize) -> Self {
        Self {
            map: ArcSwap::from_pointee(Map::new()),
            insert: Mutex::new(()),
            full: AtomicBool::new(max_keys == 0),
            max_keys,
            other: Arc::new(LatencyHistogram::new()),
        }
    }

    /// Records `nanos` under `key` (or the overflow histogram when the set is full).
    #[inline]
    pub fn record(&self, key: &str, nanos: u64) {
        if let Some(h) = self.map.load().get(key) {
            h.record(nanos);
            return;
        }
        self.get_or_insert(key).record(nanos);
    }

    /// The histogram of an existing key, to cache and record into directly.
    pub fn get(&self, key: &str) -> Option<Arc<LatencyHistogram>> {
        self.map.load().get(key).cloned()
    }

    /// The histogram of `key`, created if there is room, else the overflow histogram.
    pub fn get_or_insert(&self, key: &str) -> Arc<LatencyHistogram> {
        if let Some(h) = self.get(key) {
            return h;
        }
        if self.full.load(Ordering::Acquire) {
            return self.other.clone();
        }
        let _guard = self.insert.lock();
        let current = self.map.load_full();
        if let Some(h) = current.get(key) {
            return h.clone();
        }
        if current.len() >= self.max_keys {
            self.full.store(true, Ordering::Release);
            return self.other.clone();
        }
        let mut next: Map = (*current).clone();
        let h = Arc::new(LatencyHistogram::new());
        next.insert(key.into(), h.clone());
        self.map.store(Arc::new(next));
        h
    }

    /// The overflow histogram.
    pub fn other(&self) -> &Arc<LatencyHistogram> {
        &self.other
    }

    /// Snapshot of one key (`OVERFLOW_KEY` names the overflow histogram unless it is a real key).
    pub fn snapshot(&self, key: &str) -> Option<Snapshot> {
        match self.get(key) {
            Some(h) => Some(h.snapshot()),
            None if key == OVERFLOW_KEY => Some(self.other.snapshot()),
            None => None,
        }
    }

    /// Snapshots of every key, sorted by key, plus `OVERFLOW_KEY` if it recorded anything.
    pub fn snapshot_all(&self) -> Vec<(String, Snapshot)> {
        let map = self.map.load_full();
        let mut out: Vec<(String, Snapshot)> = map
            .iter()
            .map(|(k, h)| (k.to_string(), h.snapshot()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other.count() > 0 && !map.contains_key(OVERFLOW_KEY) {
            out.push((OVERFLOW_KEY.to_string(), self.other.snapshot()));
        }
        out
    }

    /// The keys, sorted (the overflow histogram is not a key).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.load().keys().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// True when no key exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resets every histogram, keeping the keys.
    pub fn reset(&self) {
        for h in self.map.load().values() {
            h.reset();
        }
        self.other.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_range() {
        let n = bucket_count();
        assert_eq!(n, 4562);
        let mut next = 0;
        for i in 0..n {
            let (low, width) = bucket_range(i);
            assert_eq!(low, next, "bucket {i}");
            assert_eq!(index_of(low), i);
            assert_eq!(index_of(low + width - 1), i);
            assert!(i < LINEAR as usize || width * SUB <= low);
            next = low + width;
        }
        assert!(next > MAX_TRACKABLE_NANOS);
        assert_eq!(index_of(u64::MAX), n - 1);
    }

    #[test]
    fn snapshot_basic() {
        let h = LatencyHistogram::new();
        assert_eq!(h.snapshot(), Snapshot::default());
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=100u64 {
            h.record(v * 1_000);
        }
        let s = h.snapshot();
        assert_eq!(
            (s.count, s.min, s.max, s.sum),
            (100, 1_000, 100_000, 5_050_000)
        );
        assert!((s.mean - 50_500.0).abs() < 1e-9);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 / 256.0;
        assert!(close(s.p50, 50_000), "{}", s.p50);
        assert!(close(s.p90, 90_000), "{}", s.p90);
        assert!(close(s.p99, 99_000), "{}", s.p99);
        assert_eq!(s.p999, 100_000);
        assert!(close(h.quantile(0.0), 1_000));
        h.reset();
        assert_eq!(h.snapshot().count, 0);
    }

    #[test]
    fn huge_values_are_clamped_but_extremes_exact() {
        let h = LatencyHistogram::new();
        h.record(u64::MAX / 2);
        h.record(0);
        let s = h.snapshot();
        assert_eq!((s.min, s.max, s.count), (0, u64::MAX / 2, 2));
        assert_eq!(h.quantile(1.0), bucket_mid(bucket_count() - 1));
    }

    #[test]
    fn prometheus_buckets() {
        let h = LatencyHistogram::new();
        for v in [10, 200, 5_000, 5_000, 1_000_000] {
            h.record(v);
        }
        let got = h.buckets(&[0, 10, 199, 200, 4_999, 2_000_000, u64::MAX]);
        assert_eq!(got, [0, 1, 1, 2, 2, 5, 5]);
        // 5_000 sits in the 32-wide bucket [4992, 5023]: counted once the bound covers it all.
        assert_eq!(h.buckets(&[5_000, 5_023, 1_000_000]), [2, 4, 4]);
    }

    #[test]
    fn set_caps_keys_and_overflows() {
        let set = HistogramSet::new(2);
        set.record("a", 10);
        set.record("b", 20);
        set.record("c", 30);
        set.record("a", 40);
        assert_eq!(set.keys(), ["a", "b"]);
        assert_eq!(set.snapshot("a").map(|s| s.count), Some(2));
        assert_eq!(set.snapshot("c"), None);
        assert_eq!(set.snapshot(OVERFLOW_KEY).map(|s| s.max), Some(30));
        let all = set.snapshot_all();
        let names: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "b", OVERFLOW_KEY]);
        let cached = set.get("b").unwrap();
        cached.record(1);
        assert_eq!(set.snapshot("b").unwrap().count, 2);
        assert!(Arc::ptr_eq(&set.get_or_insert("zzz"), set.other()));
        set.reset();
        assert_eq!(set.snapshot("a").unwrap().count, 0);
        assert_eq!(set.len(), 2);
    }
}
