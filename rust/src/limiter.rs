//! Keyed rate limiter: GCRA (the generic cell rate algorithm, as in `governor`), bounded memory.
//!
//! Each key has one `AtomicU64`, its theoretical arrival time (TAT). A request of cost `n` at
//! time `now` is allowed iff `max(TAT, now) + n·T - now <= burst·T` (T = 1/rate), and then the
//! TAT advances by CAS. This is exactly a token bucket of capacity `burst` refilled at `rate`,
//! without a timestamp + counter pair to keep consistent.
//!
//! Keys live in sharded maps (`RwLock<HashMap<Box<str>, AtomicU64>>`): a check of a known key
//! takes one uncontended read lock and one CAS; the write lock is only taken to insert a key.
//! Memory is bounded by `max_keys`: a key whose TAT is in the past is indistinguishable from a
//! fresh key, so such keys are evicted first when a shard is full (and by [`RateLimiter::sweep`]);
//! if a flood of active keys still fills a shard, the keys with the smallest TAT (closest to
//! full buckets) are evicted in a batch of 1/16 of the shard, which keeps insertion amortised
//! O(1). An evicted active key restarts with a full bucket, so a flood of unique keys can only
//! make the limiter more lenient for the evicted keys, never stricter.
//!
//! Headers follow draft-ietf-httpapi-ratelimit-headers (structured fields, `q`/`w`/`r`/`t`):
//! `RateLimit-Policy: "default";q=<burst>;w=<seconds to refill a full burst>` and
//! `RateLimit: "default";r=<remaining>;t=<seconds until the bucket is full again>`, plus
//! `Retry-After: <seconds>` on rejection (all seconds rounded up).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::clock::{AnyClock, Clock};

const NANOS_PER_SEC: f64 = 1e9;
const MAX_SHARDS: usize = 64;

/// Invalid limiter configuration; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterError {
    /// The rate is malformed or out of range.
    #[error("rate: {0}")]
    Rate(String),
    /// The burst is out of range.
    #[error("burst: {0}")]
    Burst(String),
    /// `max_keys` is zero.
    #[error("max_keys: must be >= 1")]
    MaxKeys,
}

/// A rate (`per_second`) with a burst: the bucket capacity, in cost units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    per_second: f64,
    burst: u32,
    interval: u64,
    tolerance: u64,
}

impl Quota {
    /// A quota of `per_second` (0 < rate <= 1e9) with `burst >= 1`.
    pub fn new(per_second: f64, burst: u32) -> Result<Quota, LimiterError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(LimiterError::Rate(format!(
                "{per_second} must be a finite number > 0"
            )));
        }
        let interval = (NANOS_PER_SEC / per_second).round();
        if per_second > NANOS_PER_SEC {
            return Err(LimiterError::Rate(format!("{per_second}/s is above 1e9/s")));
        }
        if interval >= u64::MAX as f64 {
            return Err(LimiterError::Rate(format!("{per_second}/s is too slow")));
        }
        let interval = interval as u64;
        if burst == 0 {
            return Err(LimiterError::Burst("must be >= 1".into()));
        }
        let tolerance = interval.checked_mul(burst as u64).ok_or_else(|| {
            LimiterError::Burst(format!(
                "{burst} at {per_second}/s takes centuries to refill"
            ))
        })?;
        Ok(Quota {
            per_second,
            burst,
            interval,
            tolerance,
        })
    }

    /// Parses `"100/s"`, `"6000/m"`, `"10/h"`, `"5/d"` (also `sec`, `second`, `min`, `minute`,
    /// `hour`, `day`; fractional counts allowed) with the given burst.
    pub fn parse(rate: &str, burst: u32) -> Result<Quota, LimiterError> {
        let bad = |why: &str| {
            LimiterError::Rate(format!(
                "{rate:?}: {why} (expected like \"100/s\", \"6000/m\")"
            ))
        };
        let (count, unit) = rate.split_once('/').ok_or_else(|| bad("missing '/'"))?;
        let count: f64 = count
            .trim()
            .parse()
            .map_err(|_| bad("count is not a number"))?;
        let secs = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hr" | "hour" => 3600.0,
            "d" | "day" => 86400.0,
            _ => return Err(bad("unknown unit, use s, m, h or d")),
        };
        if !(count.is_finite() && count > 0.0) {
            return Err(bad("count must be > 0"));
        }
        Quota::new(count / secs, burst)
    }

    /// Sustained rate in cost units per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Bucket capacity in cost units.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds to earn one cost unit back (the GCRA emission interval T).
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }
}

/// The outcome of one check, with what the rate-limit headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (its cost has been taken if so).
    pub allowed: bool,
    /// The burst (bucket capacity).
    pub limit: u32,
    /// Cost-1 requests that would still be allowed right now.
    pub remaining: u32,
    /// Nanoseconds until the bucket is full again.
    pub reset_nanos: u64,
    /// Nanoseconds until this request would be allowed; 0 if allowed, `u64::MAX` if never.
    pub retry_after_nanos: u64,
    /// The cost exceeds the burst: such a request is always rejected.
    pub cost_exceeds_burst: bool,
}

type Shard = RwLock<HashMap<Box<str>, AtomicU64>>;

/// A keyed GCRA limiter with bounded memory; see the module docs.
pub struct RateLimiter {
    quota: Quota,
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: RandomState,
    clock: AnyClock,
    policy: String,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota)
            .field("len", &self.len())
            .finish()
    }
}

fn ceil_secs(nanos: u64) -> u64 {
    nanos.div_ceil(1_000_000_000)
}

impl RateLimiter {
    /// A limiter holding at most `max_keys` keys (>= 1).
    pub fn new(quota: Quota, max_keys: usize, clock: AnyClock) -> Result<Self, LimiterError> {
        if max_keys == 0 {
            return Err(LimiterError::MaxKeys);
        }
        // A power of two <= max_keys, so that per-shard capacities sum to at most max_keys.
        let n = MAX_SHARDS.min(max_keys);
        let n = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let shards = (0..n).map(|_| RwLock::new(HashMap::new())).collect();
        let policy = format!(
            "\"default\";q={};w={}",
            quota.burst,
            ceil_secs(quota.tolerance).max(1)
        );
        Ok(Self {
            quota,
            shards,
            per_shard: max_keys / n,
            hasher: RandomState::new(),
            clock,
            policy,
        })
    }

    /// The configured quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & (self.shards.len() - 1)]
    }

    /// Takes `cost` units for `key` if the bucket allows it (cost 0 only reports the state).
    pub fn check(&self, key: &str, cost: u32) -> Decision {
        let now = self.clock.now_nanos();
        let shard = self.shard(key);
        if cost > self.quota.burst {
            let tat = shard
                .read()
                .get(key)
                .map_or(0, |t| t.load(Ordering::Acquire));
            return self.rejected(tat.max(now) - now, u64::MAX, true);
        }
        {
            let map = shard.read();
            if let Some(tat) = map.get(key) {
                return self.gcra(tat, cost, now);
            }
        }
        let mut map = shard.write();
        if let Some(tat) = map.get(key) {
            return self.gcra(tat, cost, now);
        }
        if map.len() >= self.per_shard {
            evict(&mut map, now, self.per_shard);
        }
        let tat = map.entry(Box::from(key)).or_insert(AtomicU64::new(0));
        self.gcra(tat, cost, now)
    }

    fn gcra(&self, tat: &AtomicU64, cost: u32, now: u64) -> Decision {
        let (t, tau) = (self.quota.interval, self.quota.tolerance);
        // cost <= burst here, and burst * T fits in u64 (checked in Quota::new).
        let inc = cost as u64 * t;
        let mut cur = tat.load(Ordering::Acquire);
        loop {
            let ahead = cur.max(now) - now;
            let new_ahead = ahead.saturating_add(inc);
            if new_ahead > tau {
                return self.rejected(ahead, new_ahead - tau, false);
            }
            match tat.compare_exchange_weak(
                cur,
                now.saturating_add(new_ahead),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Decision {
                        allowed: true,
                        limit: self.quota.burst,
                        remaining: ((tau - new_ahead) / t) as u32,
                        reset_nanos: new_ahead,
                        retry_after_nanos: 0,
                        cost_exceeds_burst: false,
                    }
                }
                Err(actual) => cur = actual,
            }
        }
    }

    fn rejected(&self, ahead: u64, retry: u64, exceeds: bool) -> Decision {
        let (t, tau) = (self.quota.interval, self.quota.tolerance);
        Decision {
            allowed: false,
            limit: self.quota.burst,
            remaining: (tau.saturating_sub(ahead) / t) as u32,
            reset_nanos: ahead,
            retry_after_nanos: retry,
            cost_exceeds_burst: exceeds,
        }
    }

    /// Number of keys currently held (at most `max_keys`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops keys whose bucket is full again (they behave like fresh keys); returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_nanos();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write();
            let before = map.len();
            map.retain(|_, t| t.load(Ordering::Relaxed) > now);
            removed += before - map.len();
        }
        removed
    }

    /// The `RateLimit-Policy` and `RateLimit` header values for a decision of this limiter.
    pub fn headers(&self, d: &Decision) -> (String, String) {
        (
            self.policy.clone(),
            format!(
                "\"default\";r={};t={}",
                d.remaining,
                ceil_secs(d.reset_nanos)
            ),
        )
    }

    /// The `RateLimit-Policy` header value (constant per limiter).
    pub fn policy_header(&self) -> &str {
        &self.policy
    }

    /// `Retry-After` in whole seconds (>= 1) for a rejection that can succeed later.
    pub fn retry_after_header(d: &Decision) -> Option<String> {
        if d.allowed || d.cost_exceeds_burst {
            return None;
        }
        Some(ceil_secs(d.retry_after_nanos).max(1).to_string())
    }
}

/// Makes room in a full shard: expired keys first, then the smallest TATs, 1/16 at a time.
fn evict(map: &mut HashMap<Box<str>, AtomicU64>, now: u64, cap: usize) {
    map.retain(|_, t| t.load(Ordering::Relaxed) > now);
    let target = cap.saturating_sub((cap / 16).max(1));
    if map.len() <= target {
        return;
    }
    let excess = map.len() - target;
    let mut tats: Vec<u64> = map.values().map(|t| t.load(Ordering::Relaxed)).collect();
    let (_, cutoff, _) = tats.select_nth_unstable(excess - 1);
    let cutoff = *cutoff;
    let below = tats.iter().filter(|v| **v < cutoff).count();
    let mut ties = excess - below;
    map.retain(|_, t| {
        let v = t.load(Ordering::Relaxed);
        if v < cutoff {
            false
        } else if v == cutoff && ties > 0 {
            ties -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const SEC: u64 = 1_000_000_000;

    fn limiter(rate: f64, burst: u32, max_keys: usize) -> (RateLimiter, ManualClock) {
        let clock = ManualClock::new();
        let q = Quota::new(rate, burst).unwrap();
        (
            RateLimiter::new(q, max_keys, AnyClock::Manual(clock.clone())).unwrap(),
            clock,
        )
    }

    #[test]
    fn parse_rates() {
        assert_eq!(Quota::parse("100/s", 5).unwrap().per_second(), 100.0);
        assert_eq!(Quota::parse(" 6000 / m", 5).unwrap().per_second(), 100.0);
        assert_eq!(Quota::parse("36/h", 1).unwrap().interval_nanos(), 100 * SEC);
        assert_eq!(
            Quota::parse("0.5/second", 1).unwrap().interval_nanos(),
            2 * SEC
        );
        for bad in ["100", "x/s", "100/w", "0/s", "-1/s", "inf/s", "NaN/s", ""] {
            let e = Quota::parse(bad, 1).unwrap_err();
            assert!(matches!(e, LimiterError::Rate(_)), "{bad}: {e}");
        }
        assert!(matches!(
            Quota::parse("1/s", 0),
            Err(LimiterError::Burst(_))
        ));
        assert!(matches!(Quota::new(2e9, 1), Err(LimiterError::Rate(_))));
        assert!(matches!(
            Quota::parse("1/d", u32::MAX),
            Err(LimiterError::Burst(_))
        ));
        let q = Quota::new(1.0, 1).unwrap();
        assert!(RateLimiter::new(q, 0, AnyClock::default()).is_err());
    }

    #[test]
    fn burst_is_exact_then_rate() {
        let (l, clock) = limiter(10.0, 5, 100);
        for i in 0..5 {
            let d = l.check("k", 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            assert_eq!(d.limit, 5);
        }
        let d = l.check("k", 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_nanos, SEC / 10);
        assert_eq!(d.reset_nanos, SEC / 2);
        assert!(l.check("other", 1).allowed);
        clock.advance(SEC / 10 - 1);
        assert!(!l.check("k", 1).allowed);
        clock.advance(1);
        assert!(l.check("k", 1).allowed);
        assert!(!l.check("k", 1).allowed);
    }

    #[test]
    fn retry_after_is_when_it_succeeds() {
        let (l, clock) = limiter(3.0, 4, 100);
        assert!(l.check("k", 3).allowed);
        let d = l.check("k", 3);
        assert!(!d.allowed && !d.cost_exceeds_burst);
        clock.advance(d.retry_after_nanos - 1);
        assert!(!l.check("k", 3).allowed);
        clock.advance(1);
        let d = l.check("k", 3);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn cost_above_burst_never_allowed() {
        let (l, clock) = limiter(1000.0, 10, 100);
        let d = l.check("k", 11);
        assert!(!d.allowed && d.cost_exceeds_burst);
        assert_eq!(d.retry_after_nanos, u64::MAX);
        assert_eq!(d.remaining, 10);
        assert_eq!(RateLimiter::retry_after_header(&d), None);
        clock.advance(1000 * SEC);
        assert!(!l.check("k", 11).allowed);
        assert!(l.check("k", 10).allowed);
        assert_eq!(l.check("k", 0).remaining, 0);
    }

    #[test]
    fn headers_format() {
        let (l, _clock) = limiter(100.0, 100, 10);
        for _ in 0..50 {
            l.check("k", 1);
        }
        let d = l.check("k", 1);
        let (policy, rl) = l.headers(&d);
        assert_eq!(policy, "\"default\";q=100;w=1");
        assert_eq!(rl, "\"default\";r=49;t=1");
        let (l, _clock) = limiter(0.5, 2, 10);
        l.check("k", 2);
        let d = l.check("k", 1);
        assert_eq!(l.headers(&d).0, "\"default\";q=2;w=4");
        assert_eq!(l.headers(&d).1, "\"default\";r=0;t=4");
        assert_eq!(RateLimiter::retry_after_header(&d).as_deref(), Some("2"));
    }

    #[test]
    fn sweep_and_capacity() {
        let (l, clock) = limiter(1.0, 1, 64);
        for i in 0..64 {
            assert!(l.check(&format!("k{i}"), 1).allowed);
        }
        assert!(l.len() <= 64);
        clock.advance(SEC);
        let held = l.len();
        assert_eq!(l.sweep(), held);
        assert!(l.is_empty());
        for i in 0..10_000 {
            l.check(&format!("flood{i}"), 1);
            assert!(l.len() <= 64);
        }
        // A fresh max_keys smaller than the shard count still caps exactly.
        let (l, _c) = limiter(1.0, 1, 3);
        for i in 0..100 {
            l.check(&format!("k{i}"), 1);
        }
        assert!(l.len() <= 3);
    }

    #[test]
    fn eviction_prefers_expired_then_smallest_tat() {
        let mut map: HashMap<Box<str>, AtomicU64> = HashMap::new();
        for i in 0..32u64 {
            map.insert(format!("k{i}").into(), AtomicU64::new(100 + i));
        }
        evict(&mut map, 0, 32);
        assert_eq!(map.len(), 30);
        assert!(!map.contains_key("k0") && !map.contains_key("k1"));
        evict(&mut map, 120, 32);
        assert_eq!(map.len(), 11);
    }
}
