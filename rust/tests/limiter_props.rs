//! Property tests of the GCRA limiter against a token-bucket reference model.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use agentgate_core::clock::{AnyClock, Clock, ManualClock};
use agentgate_core::limiter::{Quota, RateLimiter};
use proptest::prelude::*;

/// A token bucket counted in nanoseconds of credit: capacity burst·T, refilled 1 ns per ns.
struct Model {
    t: u64,
    cap: u64,
    buckets: HashMap<u8, (u64, u64)>,
}

impl Model {
    fn check(&mut self, key: u8, cost: u32, now: u64) -> (bool, u64, u64, u64) {
        let (fill, last) = self.buckets.get(&key).copied().unwrap_or((self.cap, now));
        let fill = (fill + (now - last)).min(self.cap);
        let need = cost as u64 * self.t;
        if need <= fill {
            let left = fill - need;
            self.buckets.insert(key, (left, now));
            (true, left / self.t, self.cap - left, 0)
        } else {
            self.buckets.insert(key, (fill, now));
            let retry = if need > self.cap {
                u64::MAX
            } else {
                need - fill
            };
            (false, fill / self.t, self.cap - fill, retry)
        }
    }
}

fn setup(rate: f64, burst: u32, max_keys: usize) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new();
    let quota = Quota::new(rate, burst).unwrap();
    (
        RateLimiter::new(quota, max_keys, AnyClock::Manual(clock.clone())).unwrap(),
        clock,
    )
}

fn ops() -> impl Strategy<Value = Vec<(u64, u8, u32)>> {
    prop::collection::vec((0u64..400_000_000, 0u8..4, 0u32..12), 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn gcra_matches_token_bucket(
        rate in prop_oneof![Just(1.0), Just(7.0), Just(100.0), Just(1e4)],
        burst in 1u32..10,
        ops in ops(),
    ) {
        let (l, clock) = setup(rate, burst, 1000);
        let t = l.quota().interval_nanos();
        let mut model = Model { t, cap: t * burst as u64, buckets: HashMap::new() };
        for (advance, key, cost) in ops {
            clock.advance(advance);
            let d = l.check(&format!("key{key}"), cost);
            let (allowed, remaining, reset, retry) = model.check(key, cost, clock.now_nanos());
            prop_assert_eq!(d.allowed, allowed);
            prop_assert_eq!(d.remaining as u64, remaining);
            prop_assert_eq!(d.reset_nanos, reset);
            prop_assert_eq!(d.retry_after_nanos, retry);
            prop_assert_eq!(d.cost_exceeds_burst, cost > burst);
            prop_assert_eq!(d.limit, burst);
        }
    }

    #[test]
    fn retry_after_is_exact(burst in 1u32..20, used in 1u32..20, cost in 1u32..20, wait in 0u64..1_000_000_000) {
        prop_assume!(used <= burst && cost <= burst);
        let (l, clock) = setup(13.0, burst, 10);
        prop_assert!(l.check("k", used).allowed);
        clock.advance(wait);
        let d = l.check("k", cost);
        if !d.allowed {
            clock.advance(d.retry_after_nanos - 1);
            prop_assert!(!l.check("k", cost).allowed);
            clock.advance(1);
            prop_assert!(l.check("k", cost).allowed);
        }
    }

    #[test]
    fn eviction_never_makes_it_stricter(ops in ops(), max_keys in 1usize..4) {
        let (l, clock) = setup(10.0, 3, max_keys);
        let t = l.quota().interval_nanos();
        let mut model = Model { t, cap: 3 * t, buckets: HashMap::new() };
        for (advance, key, cost) in ops {
            clock.advance(advance);
            let now = clock.now_nanos();
            let d = l.check(&format!("key{key}"), cost);
            let (allowed, ..) = model.check(key, cost, now);
            if allowed {
                prop_assert!(d.allowed);
            } else if d.allowed {
                // The limiter may only be more lenient because it forgot (evicted) the key:
                // then its decision is a fresh bucket's, and the model follows it from here.
                model.buckets.remove(&key);
                let (fresh, ..) = model.check(key, cost, now);
                prop_assert!(fresh, "allowed beyond what even a fresh bucket allows");
            }
            prop_assert!(l.len() <= max_keys);
        }
    }
}

#[test]
fn million_unique_keys_stay_bounded() {
    let (l, clock) = setup(1.0, 5, 10_000);
    for i in 0..1_000_000u32 {
        let d = l.check(&i.to_string(), 1);
        assert!(d.allowed, "a fresh key always has its burst");
        if i % 100_000 == 0 {
            clock.advance(1_000);
            assert!(l.len() <= 10_000);
        }
    }
    assert!(l.len() <= 10_000, "len {}", l.len());
    clock.advance(10_000_000_000);
    l.sweep();
    assert!(l.is_empty());
}

#[test]
fn eight_threads_never_exceed_rate_plus_burst() {
    let rate = 1000.0;
    let burst = 50;
    let (l, clock) = setup(rate, burst, 100);
    let l = Arc::new(l);
    let start = clock.now_nanos();
    let allowed = Arc::new(AtomicU64::new(0));
    // Thread 0 also drives time forward, so the others race against a moving clock.
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (l, allowed, clock) = (l.clone(), allowed.clone(), clock.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                for j in 0..20_000 {
                    if i == 0 && j % 10 == 0 {
                        clock.advance(100_000);
                    }
                    if l.check("shared", 1).allowed {
                        n += 1;
                    }
                }
                allowed.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = clock.now_nanos() - start;
    let bound = elapsed / l.quota().interval_nanos() + burst as u64;
    let got = allowed.load(Ordering::Relaxed);
    assert!(got <= bound, "allowed {got} > {bound}");
    assert!(got > burst as u64, "the rate must let some through: {got}");

    // With time frozen, exactly the burst gets through, however many threads race for it.
    let (l, _clock) = setup(rate, burst, 100);
    let l = Arc::new(l);
    let counts: Vec<_> = (0..8)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || (0..1000).filter(|_| l.check("k", 1).allowed).count())
        })
        .collect();
    let total: usize = counts.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, burst as usize);
}
