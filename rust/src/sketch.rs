//! Mergeable quantile sketches (DDSketch, relative error 1 %) for metrics rollups.
//!
//! [`Sketch`] wraps `sketches_ddsketch::DDSketch` with the default config (α = 0.01, up to 2048
//! bins, values below 1e-9 count as zero), adds exact count/sum/min/max kept beside it, and
//! encodes to DataDog's standard binary format (the one sketches-java reads), so stored rollups
//! stay readable by other DDSketch implementations.
//!
//! [`AtomicSketch`] is the recording side for the request path: one relaxed atomic add per
//! observation into lazily allocated chunks of bins keyed exactly like the DDSketch mapping, so
//! a `take()` every flush interval turns into a [`Sketch`] without losing accuracy. Memory grows
//! only with the spread of the observed values (a chunk covers a factor γ^64 ≈ 3.6).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use sketches_ddsketch::{Config, DDSketch};

mod merge;

/// The relative accuracy of every sketch here.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Why bytes could not be read as a sketch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SketchError {
    /// Not a DDSketch encoding this module can read.
    #[error("not a DDSketch encoding: {0}")]
    Decode(String),
    /// The sketch was encoded with another index mapping (gamma).
    #[error("sketch uses another relative accuracy (gamma {0})")]
    Mapping(f64),
    /// A quantile outside 0..=1.
    #[error("quantile must be within 0 and 1, got {0}")]
    Quantile(f64),
}

fn config() -> Config {
    Config::defaults()
}

/// A mergeable DDSketch with exact count, sum, min and max.
#[derive(Clone)]
pub struct Sketch {
    inner: DDSketch,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            inner: DDSketch::new(config()),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

// Encoding: magic + version, then count (u64), sum, min, max (f64 LE), then the DDSketch in
// sketches-java's format. The exact summary lives outside because DDSketch's own min/max/sum
// become bin representatives when a sketch is rebuilt from bins.
const MAGIC: &[u8; 3] = b"AGS";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 8 * 4;

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` `count` times; non-finite values are ignored.
    pub fn add(&mut self, value: f64, count: u64) {
        if count == 0 || !value.is_finite() {
            return;
        }
        self.inner.add_with_count(value, count);
        self.count += count;
        self.sum += value * count as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Merges `other` into this sketch.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        // same config by construction: merge cannot fail
        let _ = self.inner.merge(&other.inner);
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Approximate memory held, in bytes (for cache budgets).
    pub fn nbytes(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * self.inner.length()
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values (exact up to float rounding).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value, None when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value, None when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `q` quantile within 1 % relative error (clamped to the exact min and max); None
    /// when empty.
    pub fn quantile(&self, q: f64) -> Result<Option<f64>, SketchError> {
        if !(0.0..=1.0).contains(&q) {
            return Err(SketchError::Quantile(q));
        }
        if self.count == 0 {
            return Ok(None);
        }
        let v = self
            .inner
            .quantile(q)
            .map_err(|_| SketchError::Quantile(q))?
            .unwrap_or(0.0);
        Ok(Some(v.clamp(self.min, self.max)))
    }

    /// Estimated fraction of values at or below `value` (within the sketch's accuracy: values
    /// within 1 % of `value` may fall on either side).
    pub fn fraction_below(&self, value: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        if value >= self.max {
            return 1.0;
        }
        if value < self.min {
            return 0.0;
        }
        // bisect on the rank: the quantile function is monotone in q
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            match self.quantile(mid) {
                Ok(Some(v)) if v <= value => lo = mid,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The encoded sketch (header with the exact summary, then sketches-java's format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.inner.to_java_bytes();
        let mut out = Vec::with_capacity(HEADER + body.len());
        put_header(&mut out, self.count, self.sum, self.min, self.max);
        out.extend_from_slice(&body);
        out
    }

    /// Reads what `to_bytes` wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        let (count, sum, min, max) = header(bytes)?;
        let inner = if count == 0 {
            DDSketch::new(config())
        } else {
            let d = DDSketch::from_java_bytes(&bytes[HEADER..])
                .map_err(|e| SketchError::Decode(e.to_string()))?;
            let mut probe = DDSketch::new(config());
            if probe.merge(&d).is_err() {
                return Err(SketchError::Mapping(f64::NAN));
            }
            if d.count() as u64 != count {
                return Err(SketchError::Decode(format!(
                    "header count {count} but {} values in the bins",
                    d.count()
                )));
            }
            probe
        };
        Ok(Sketch {
            inner,
            count,
            sum,
            min: if count > 0 { min } else { f64::INFINITY },
            max: if count > 0 { max } else { f64::NEG_INFINITY },
        })
    }

    /// Merges every encoded sketch of `items` into one; the first bad one is an error.
    pub fn merge_encoded<'a>(
        items: impl IntoIterator<Item = &'a [u8]> + Clone,
    ) -> Result<Self, SketchError> {
        let mut m = merge::Merger::new(config().gamma);
        if items.clone().into_iter().all(|b| m.add(b).is_some()) {
            return Self::from_bytes(&m.encode());
        }
        Self::merge_decoded(items)
    }

    /// `merge_encoded`, encoded: what `merge_encoded(items)?.to_bytes()` returns, without
    /// decoding the result.
    pub fn merge_encoded_bytes<'a>(
        items: impl IntoIterator<Item = &'a [u8]> + Clone,
    ) -> Result<Vec<u8>, SketchError> {
        let mut m = merge::Merger::new(config().gamma);
        if items.clone().into_iter().all(|b| m.add(b).is_some()) {
            return Ok(m.encode());
        }
        Ok(Self::merge_decoded(items)?.to_bytes())
    }

    /// The crate's own merge (each sketch decoded into a `DDSketch`, then merged): what
    /// `merge_encoded` falls back to outside its fast path, and the reference tests compare with.
    pub fn merge_decoded<'a>(
        items: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, SketchError> {
        let mut out = Sketch::new();
        for bytes in items {
            let (count, sum, min, max) = header(bytes)?;
            if count == 0 {
                continue;
            }
            let d = DDSketch::from_java_bytes(&bytes[HEADER..])
                .map_err(|e| SketchError::Decode(e.to_string()))?;
            if d.count() as u64 != count {
                return Err(SketchError::Decode(format!(
                    "header count {count} but {} values in the bins",
                    d.count()
                )));
            }
            out.inner
                .merge(&d)
                .map_err(|_| SketchError::Mapping(f64::NAN))?;
            out.count += count;
            out.sum += sum;
            out.min = out.min.min(min);
            out.max = out.max.max(max);
        }
        Ok(out)
    }
}

/// Writes the header: magic, version and the exact summary.
fn put_header(out: &mut Vec<u8>, count: u64, sum: f64, min: f64, max: f64) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(&min.to_le_bytes());
    out.extend_from_slice(&max.to_le_bytes());
}

/// The exact summary in front of an encoded sketch: (count, sum, min, max).
fn header(bytes: &[u8]) -> Result<(u64, f64, f64, f64), SketchError> {
    if bytes.len() < HEADER || &bytes[..3] != MAGIC {
        return Err(SketchError::Decode("missing header".into()));
    }
    if bytes[3] != VERSION {
        return Err(SketchError::Decode(format!("version {}", bytes[3])));
    }
    let f = |i: usize| -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[4 + 8 * i..12 + 8 * i]);
        b
    };
    let count = u64::from_le_bytes(f(0));
    let sum = f64::from_le_bytes(f(1));
    let min = f64::from_le_bytes(f(2));
    let max = f64::from_le_bytes(f(3));
    if count > 0 && !(min <= max && sum.is_finite()) {
        return Err(SketchError::Decode("inconsistent summary".into()));
    }
    Ok((count, sum, min, max))
}

// Keys of the DDSketch logarithmic mapping that the atomic recorder covers: 1 ns .. ~10^6 s
// for latencies in seconds. Values outside are clamped to the end bins (min/max stay exact).
const CHUNK: usize = 64;
const CHUNKS: usize = 40;
const SPAN: usize = CHUNK * CHUNKS;

/// Lock-free recorder of positive values (e.g. seconds) into DDSketch bins.
pub struct AtomicSketch {
    first_key: i32,
    chunks: Box<[OnceLock<Box<[AtomicU64; CHUNK]>>]>,
    zero: AtomicU64,
    sum_nanos: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for AtomicSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AtomicSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicSketch")
            .field("zero", &self.zero.load(Ordering::Relaxed))
            .finish()
    }
}

impl AtomicSketch {
    /// An empty recorder (no bins allocated yet).
    pub fn new() -> Self {
        let c = config();
        AtomicSketch {
            first_key: c.key(1e-9),
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            zero: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
        }
    }

    /// Records one value (seconds); negative and NaN values count as zero.
    pub fn observe(&self, seconds: f64) {
        let s = if seconds.is_finite() && seconds > 0.0 {
            seconds
        } else {
            0.0
        };
        // saturating float-to-int cast: an absurd value cannot wrap the sum
        let nanos = (s * 1e9) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.min_nanos.fetch_min(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        if s <= 1e-9 {
            self.zero.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = config().key(s);
        let i = usize::try_from(key - self.first_key)
            .unwrap_or(0)
            .min(SPAN - 1);
        let chunk = self.chunks[i / CHUNK]
            .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        chunk[i % CHUNK].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes (and resets) what was recorded since the last take, as a [`Sketch`].
    ///
    /// Observations racing with a take land in this take or the next one; count, sum and bins
    /// may disagree by those few for one interval, never in total.
    pub fn take(&self) -> Sketch {
        let c = config();
        let sum = self.sum_nanos.swap(0, Ordering::Relaxed) as f64 / 1e9;
        let min = self.min_nanos.swap(u64::MAX, Ordering::Relaxed);
        let max = self.max_nanos.swap(0, Ordering::Relaxed);
        let mut inner = DDSketch::new(c);
        let mut binned = 0u64;
        let zero = self.zero.swap(0, Ordering::Relaxed);
        if zero > 0 {
            inner.add_with_count(0.0, zero);
            binned += zero;
        }
        for (ci, slot) in self.chunks.iter().enumerate() {
            let Some(chunk) = slot.get() else { continue };
            for (j, a) in chunk.iter().enumerate() {
                let n = a.swap(0, Ordering::Relaxed);
                if n > 0 {
                    let key = self.first_key + (ci * CHUNK + j) as i32;
                    inner.add_with_count(c.value(key), n);
                    binned += n;
                }
            }
        }
        if binned == 0 {
            return Sketch::new();
        }
        let (min, max) = if min <= max {
            (min as f64 / 1e9, max as f64 / 1e9)
        } else {
            // a take raced the first observation's min/max update: fall back to the bins
            let lo = inner.min().unwrap_or(0.0);
            let hi = inner.max().unwrap_or(0.0);
            (lo, hi)
        };
        Sketch {
            inner,
            count: binned,
            sum,
            min,
            max: max.max(min),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(|a, b| a.total_cmp(b));
        values[(q * (values.len() - 1) as f64) as usize]
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut seed = 7;
        let mut vals: Vec<f64> = (0..50_000)
            .map(|_| (-lcg(&mut seed).ln()) * 0.05 + 0.0001)
            .collect();
        let mut s = Sketch::new();
        for v in &vals {
            s.add(*v, 1);
        }
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let want = exact(&mut vals, q);
            let got = s.quantile(q).unwrap().unwrap();
            assert!(
                ((got - want) / want).abs() <= 0.0101,
                "q{q}: {got} vs {want}"
            );
        }
        assert_eq!(s.count(), 50_000);
    }

    #[test]
    fn merge_equals_union_and_round_trips() {
        let mut a = Sketch::new();
        let mut b = Sketch::new();
        let mut all = Sketch::new();
        for i in 1..=1000 {
            let v = i as f64 / 1000.0;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v, 2);
            all.add(v, 2);
        }
        let mut m = Sketch::from_bytes(&a.to_bytes()).unwrap();
        m.merge(&Sketch::from_bytes(&b.to_bytes()).unwrap());
        let (ab, bb) = (a.to_bytes(), b.to_bytes());
        let direct = Sketch::merge_encoded([ab.as_slice(), bb.as_slice()]).unwrap();
        assert_eq!(direct.quantile(0.9).unwrap(), all.quantile(0.9).unwrap());
        assert_eq!(direct.count(), 2000);
        for q in [0.0, 0.25, 0.5, 0.99, 1.0] {
            assert_eq!(m.quantile(q).unwrap(), all.quantile(q).unwrap());
        }
        assert_eq!(m.count(), 2000);
        assert_eq!(m.min(), Some(0.001));
        assert_eq!(m.max(), Some(1.0));
        assert!((m.sum() - all.sum()).abs() < 1e-9);
    }

    fn sample(seed: &mut u64, n: usize, scale: f64, signed: bool) -> Vec<u8> {
        let mut s = Sketch::new();
        for _ in 0..n {
            let u = lcg(seed);
            let v = match (u * 20.0) as u32 {
                0 => 0.0,
                1 if signed => -scale * lcg(seed),
                _ => scale * (-lcg(seed).ln()) * (0.2 + u),
            };
            s.add(v, 1 + (lcg(seed) * 3.0) as u64);
        }
        s.to_bytes()
    }

    #[test]
    fn fast_merge_is_byte_identical_to_the_crates() {
        let mut seed = 11;
        for round in 0..60 {
            let k = 1 + round % 9;
            let blobs: Vec<Vec<u8>> = (0..k)
                .map(|i| {
                    let n = [0, 1, 5, 200][(i + round) % 4];
                    let scale = [0.003, 0.05, 2.0, 1e4][(i * 7 + round) % 4];
                    sample(&mut seed, n, scale, round % 3 == 0)
                })
                .collect();
            let items = || blobs.iter().map(|b| b.as_slice());
            let reference = Sketch::merge_decoded(items()).unwrap();
            let mut m = merge::Merger::new(config().gamma);
            assert!(
                items().all(|b| m.add(b).is_some()),
                "round {round} left the fast path"
            );
            assert_eq!(m.encode(), reference.to_bytes(), "round {round}");
            assert_eq!(
                Sketch::merge_encoded_bytes(items()).unwrap(),
                reference.to_bytes()
            );
            let fast = Sketch::merge_encoded(items()).unwrap();
            assert_eq!(fast.to_bytes(), reference.to_bytes());
            for q in [0.0, 0.01, 0.5, 0.95, 0.99, 1.0] {
                assert_eq!(fast.quantile(q), reference.quantile(q));
            }
        }
    }

    #[test]
    fn fast_merge_falls_back_where_the_crate_would_collapse_or_fail() {
        // keys more than 2048 bins apart together (not alone): the crate's store collapses its
        // lowest bins
        let (mut low, mut high, mut narrow) = (Sketch::new(), Sketch::new(), Sketch::new());
        low.add(2e-9, 5);
        low.add(1e3, 5);
        high.add(1.0, 2);
        high.add(1e12, 2);
        narrow.add(0.02, 3);
        let blobs = [low.to_bytes(), high.to_bytes(), narrow.to_bytes()];
        let items = || blobs.iter().map(|b| b.as_slice());
        let mut m = merge::Merger::new(config().gamma);
        assert!(
            !items().all(|b| m.add(b).is_some()),
            "must leave the fast path"
        );
        let reference = Sketch::merge_decoded(items()).unwrap();
        assert_eq!(
            Sketch::merge_encoded_bytes(items()).unwrap(),
            reference.to_bytes()
        );
        assert_eq!(
            Sketch::merge_encoded(items()).unwrap().quantile(0.5),
            reference.quantile(0.5)
        );
        // a bad sketch among good ones: the same error either way
        let mut bad = narrow.to_bytes();
        bad.truncate(bad.len() - 1);
        let blobs = [narrow.to_bytes(), bad];
        let items = || blobs.iter().map(|b| b.as_slice());
        assert_eq!(
            Sketch::merge_encoded(items()).unwrap_err(),
            Sketch::merge_decoded(items()).unwrap_err()
        );
        assert!(Sketch::merge_encoded_bytes(items()).is_err());
        // nothing to merge: the empty sketch
        assert_eq!(
            Sketch::merge_encoded_bytes(std::iter::empty()).unwrap(),
            Sketch::new().to_bytes()
        );
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(Sketch::from_bytes(b"").is_err());
        assert!(Sketch::from_bytes(b"AGS\x09xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").is_err());
        let mut s = Sketch::new();
        s.add(1.0, 3);
        let mut b = s.to_bytes();
        b.truncate(b.len() - 1);
        assert!(Sketch::from_bytes(&b).is_err());
        assert!(s.quantile(1.5).is_err());
        assert_eq!(Sketch::new().quantile(0.5), Ok(None));
    }

    #[test]
    fn atomic_take_matches_direct_sketch() {
        let a = AtomicSketch::new();
        let mut direct = Sketch::new();
        let mut seed = 3;
        for _ in 0..20_000 {
            let v = lcg(&mut seed) * lcg(&mut seed) * 2.0;
            a.observe(v);
            direct.add(v, 1);
        }
        a.observe(0.0);
        direct.add(0.0, 1);
        let t = a.take();
        assert_eq!(t.count(), direct.count());
        for q in [0.5, 0.95, 0.99] {
            let x = t.quantile(q).unwrap().unwrap();
            let y = direct.quantile(q).unwrap().unwrap();
            assert!(((x - y) / y).abs() < 1e-9, "q{q}: {x} vs {y}");
        }
        assert!((t.sum() - direct.sum()).abs() < 1e-3);
        assert_eq!(a.take().count(), 0, "take resets");
    }

    #[test]
    fn fraction_below_is_monotone_and_close() {
        let mut s = Sketch::new();
        for i in 1..=1000 {
            s.add(i as f64, 1);
        }
        let f = s.fraction_below(500.0);
        assert!((f - 0.5).abs() < 0.02, "{f}");
        assert_eq!(s.fraction_below(0.5), 0.0);
        assert_eq!(s.fraction_below(1000.0), 1.0);
    }
}
