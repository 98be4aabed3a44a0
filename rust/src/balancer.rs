//! Load balancer: power of two choices over peak-EWMA latency (tower's `p2c` + `PeakEwma`),
//! weighted, skipping unhealthy endpoints and endpoints whose circuit breaker refuses traffic.
//!
//! Cost of an endpoint = `ewma_latency * (outstanding + 1) / weight`, where the latency estimate
//! jumps to any sample above it (peak) and otherwise decays toward the sample with
//! `exp(-elapsed / decay)`. When read for a pick, the estimate also decays toward zero with the
//! time since its last sample, as tower does, so an idle endpoint gets tried again.
//! Every endpoint starts at [`DEFAULT_RTT_NANOS`] so that outstanding requests matter before the
//! first samples arrive.
//!
//! Contract: each successful [`Balancer::pick`] must be followed by exactly one
//! [`Balancer::finish`] for the same index (it reports to the endpoint's breaker, see
//! [`crate::breaker`]).

use crate::breaker::{BreakerConfig, BreakerStats, CircuitBreaker};
use crate::clock::{AnyClock, Clock};
use crate::setting::SettingError;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

pub use crate::breaker::Outcome;

/// Latency assumed for an endpoint without samples (tower uses a configured default too).
pub const DEFAULT_RTT_NANOS: u64 = 1_000_000;

/// Static description of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Identifier (e.g. URL or name), unique within the balancer.
    pub id: String,
    /// Relative share of traffic at equal load; must be >= 1.
    pub weight: u32,
    /// Circuit breaker settings for this endpoint.
    pub breaker: BreakerConfig,
}

/// Why no endpoint could be picked (the detail of a 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Unavailable {
    /// The balancer has no endpoints.
    #[error("no endpoints configured")]
    Empty,
    /// Every endpoint is marked unhealthy by health checks.
    #[error("no healthy endpoint")]
    NoHealthy,
    /// Healthy endpoints exist, but all their breakers refuse traffic (open or probes busy).
    #[error("all circuit breakers open")]
    AllOpen,
}

impl Unavailable {
    /// Snake-case reason: "empty", "no_healthy", "all_open".
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Empty => "empty",
            Unavailable::NoHealthy => "no_healthy",
            Unavailable::AllOpen => "all_open",
        }
    }
}

/// An index passed to the balancer does not name an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown endpoint index {0}")]
pub struct UnknownEndpoint(pub usize);

/// A point-in-time view of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    /// Endpoint identifier.
    pub id: String,
    /// Configured weight.
    pub weight: u32,
    /// Requests picked and not finished yet.
    pub outstanding: u32,
    /// Current (decayed) latency estimate.
    pub ewma_nanos: u64,
    /// Health-check verdict.
    pub healthy: bool,
    /// The endpoint's breaker.
    pub breaker: BreakerStats,
}

struct Endpoint {
    id: String,
    weight: u32,
    outstanding: AtomicU32,
    // Estimate (f64 bits) and the time of its last update: read lock-free on picks, written
    // under `update` so concurrent samples do not lose each other.
    ewma_bits: AtomicU64,
    ewma_at: AtomicU64,
    update: Mutex<()>,
    healthy: AtomicBool,
    breaker: CircuitBreaker,
}

impl Endpoint {
    fn estimate(&self, now: u64, decay: f64) -> f64 {
        let est = f64::from_bits(self.ewma_bits.load(Ordering::Acquire));
        let elapsed = now.saturating_sub(self.ewma_at.load(Ordering::Acquire)) as f64;
        est * (-elapsed / decay).exp()
    }

    fn cost(&self, now: u64, decay: f64) -> f64 {
        // Floor at 1 ns so that fully decayed endpoints still compare by load.
        let est = self.estimate(now, decay).max(1.0);
        est * (f64::from(self.outstanding.load(Ordering::Acquire)) + 1.0) / f64::from(self.weight)
    }

    fn observe(&self, now: u64, sample: f64, decay: f64) {
        let _g = self.update.lock();
        let est = f64::from_bits(self.ewma_bits.load(Ordering::Acquire));
        let next = if sample > est {
            sample
        } else {
            let elapsed = now.saturating_sub(self.ewma_at.load(Ordering::Acquire)) as f64;
            let w = (-elapsed / decay).exp();
            est * w + sample * (1.0 - w)
        };
        self.ewma_bits.store(next.to_bits(), Ordering::Release);
        self.ewma_at.store(now, Ordering::Release);
    }

    fn available(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && self.breaker.would_admit()
    }
}

enum Rand {
    Thread,
    Seeded(Mutex<fastrand::Rng>),
}

impl Rand {
    fn below(&self, n: u64) -> u64 {
        match self {
            Rand::Thread => fastrand::u64(..n),
            Rand::Seeded(r) => r.lock().u64(..n),
        }
    }
}

/// A weighted p2c peak-EWMA balancer over a fixed set of endpoints; safe to share across threads.
pub struct Balancer {
    endpoints: Box<[Endpoint]>,
    decay: f64,
    clock: AnyClock,
    rand: Rand,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("len", &self.endpoints.len())
            .finish()
    }
}

impl Balancer {
    /// A balancer; weights of 0 are raised to 1, a decay of 0 to 1 ns and invalid breaker fields
    /// are clamped. Use [`Balancer::try_new`] to reject them instead.
    pub fn new(endpoints: Vec<EndpointSpec>, decay_nanos: u64, clock: AnyClock) -> Self {
        let now = clock.now_nanos();
        let endpoints = endpoints
            .into_iter()
            .map(|s| Endpoint {
                id: s.id,
                weight: s.weight.max(1),
                outstanding: AtomicU32::new(0),
                ewma_bits: AtomicU64::new((DEFAULT_RTT_NANOS as f64).to_bits()),
                ewma_at: AtomicU64::new(now),
                update: Mutex::new(()),
                healthy: AtomicBool::new(true),
                breaker: CircuitBreaker::new(s.breaker, clock.clone()),
            })
            .collect();
        Self {
            endpoints,
            decay: decay_nanos.max(1) as f64,
            clock,
            rand: Rand::Thread,
        }
    }

    /// A balancer, or an error naming the bad endpoint and field.
    pub fn try_new(
        endpoints: Vec<EndpointSpec>,
        decay_nanos: u64,
        clock: AnyClock,
    ) -> Result<Self, SettingError> {
        if decay_nanos == 0 {
            return Err(SettingError::new("decay_nanos", "must be > 0"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, e) in endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}]");
            if e.weight == 0 {
                let problem = format!("must be >= 1, got 0 (endpoint {:?})", e.id);
                return Err(SettingError::new(format!("{at}.weight"), problem));
            }
            if !seen.insert(e.id.as_str()) {
                let problem = format!("duplicates an earlier endpoint: {:?}", e.id);
                return Err(SettingError::new(format!("{at}.id"), problem));
            }
            e.breaker
                .validate()
                .map_err(|err| err.within(&format!("{at}.breaker")))?;
        }
        Ok(Self::new(endpoints, decay_nanos, clock))
    }

    /// Uses a private generator seeded with `seed` instead of the thread-local one, so picks are
    /// reproducible (tests, simulations). Costs a mutex per pick.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rand = Rand::Seeded(Mutex::new(fastrand::Rng::with_seed(seed)));
        self
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True if there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    fn endpoint(&self, index: usize) -> Result<&Endpoint, UnknownEndpoint> {
        self.endpoints.get(index).ok_or(UnknownEndpoint(index))
    }

    /// The breaker of endpoint `index`.
    pub fn breaker(&self, index: usize) -> Result<&CircuitBreaker, UnknownEndpoint> {
        Ok(&self.endpoint(index)?.breaker)
    }

    /// Index of the endpoint with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.id == id)
    }

    /// Chooses an endpoint and takes a slot on it (outstanding + 1, breaker permit); the caller
    /// must call [`Balancer::finish`] with the returned index exactly once.
    pub fn pick(&self) -> Result<usize, Unavailable> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(Unavailable::Empty);
        }
        if n == 1 {
            return self.claim_any(0);
        }
        let mut total: u64 = 0;
        let mut count = 0usize;
        for e in self.endpoints.iter() {
            if e.available() {
                total += u64::from(e.weight);
                count += 1;
            }
        }
        if count == 0 {
            return Err(self.reason());
        }
        let a = self.weighted(total, None);
        let first = if count == 1 {
            a
        } else {
            let wa = a
                .and_then(|a| self.endpoints.get(a))
                .map_or(0, |e| u64::from(e.weight));
            let b = self.weighted(total.saturating_sub(wa), a);
            match (a, b) {
                (Some(a), Some(b)) => {
                    let now = self.clock.now_nanos();
                    let (ca, cb) = (
                        self.endpoints[a].cost(now, self.decay),
                        self.endpoints[b].cost(now, self.decay),
                    );
                    let (lo, hi) = if cb < ca { (b, a) } else { (a, b) };
                    if self.claim(lo) {
                        return Ok(lo);
                    }
                    if self.claim(hi) {
                        return Ok(hi);
                    }
                    None
                }
                (a, _) => a,
            }
        };
        if let Some(i) = first {
            if self.claim(i) {
                return Ok(i);
            }
        }
        // Both candidates refused (e.g. half-open probes taken) or availability changed under
        // us: try every endpoint once, from a random start so no endpoint is favoured.
        let start = self.rand.below(n as u64) as usize;
        for k in 0..n {
            let i = (start + k) % n;
            if self.endpoints[i].available() && self.claim(i) {
                return Ok(i);
            }
        }
        Err(self.reason())
    }

    fn claim_any(&self, i: usize) -> Result<usize, Unavailable> {
        if self.claim(i) {
            Ok(i)
        } else {
            Err(self.reason())
        }
    }

    fn claim(&self, i: usize) -> bool {
        let Some(e) = self.endpoints.get(i) else {
            return false;
        };
        if !e.healthy.load(Ordering::Acquire) || !e.breaker.try_acquire() {
            return false;
        }
        e.outstanding.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// A random available endpoint with probability proportional to its weight, skipping `skip`.
    /// `total` is the summed weight of the candidates; availability may change concurrently, in
    /// which case the last candidate seen wins.
    fn weighted(&self, total: u64, skip: Option<usize>) -> Option<usize> {
        if total == 0 {
            return None;
        }
        let mut r = self.rand.below(total);
        let mut last = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            if Some(i) == skip || !e.available() {
                continue;
            }
            let w = u64::from(e.weight);
            if r < w {
                return Some(i);
            }
            r -= w;
            last = Some(i);
        }
        last
    }

    fn reason(&self) -> Unavailable {
        if self.endpoints.is_empty() {
            Unavailable::Empty
        } else if self
            .endpoints
            .iter()
            .any(|e| e.healthy.load(Ordering::Acquire))
        {
            Unavailable::AllOpen
        } else {
            Unavailable::NoHealthy
        }
    }

    /// Ends a request picked on `index`: frees its slot, feeds the latency to the EWMA (success
    /// and failure) and reports the outcome to the endpoint's breaker.
    pub fn finish(
        &self,
        index: usize,
        latency_nanos: u64,
        outcome: Outcome,
    ) -> Result<(), UnknownEndpoint> {
        let e = self.endpoint(index)?;
        // Saturating: a stray extra finish must not wrap the counter.
        let _ = e
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
        if outcome != Outcome::Cancelled {
            e.observe(self.clock.now_nanos(), latency_nanos as f64, self.decay);
        }
        e.breaker.record(outcome);
        Ok(())
    }

    /// Sets the health-check verdict of endpoint `index`.
    pub fn set_healthy(&self, index: usize, healthy: bool) -> Result<(), UnknownEndpoint> {
        self.endpoint(index)?
            .healthy
            .store(healthy, Ordering::Release);
        Ok(())
    }

    /// A point-in-time view of endpoint `index`.
    pub fn endpoint_stats(&self, index: usize) -> Result<EndpointStats, UnknownEndpoint> {
        let e = self.endpoint(index)?;
        Ok(EndpointStats {
            id: e.id.clone(),
            weight: e.weight,
            outstanding: e.outstanding.load(Ordering::Acquire),
            ewma_nanos: e.estimate(self.clock.now_nanos(), self.decay) as u64,
            healthy: e.healthy.load(Ordering::Acquire),
            breaker: e.breaker.stats(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;
    use crate::clock::ManualClock;
    use proptest::prelude::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn spec(id: &str, weight: u32) -> EndpointSpec {
        EndpointSpec {
            id: id.to_string(),
            weight,
            breaker: BreakerConfig {
                consecutive_failures: 2,
                error_rate: 0.0,
                ..Default::default()
            },
        }
    }

    fn mk(specs: Vec<EndpointSpec>) -> (Balancer, ManualClock) {
        let clock = ManualClock::new();
        let b = Balancer::try_new(specs, 10 * SEC, AnyClock::Manual(clock.clone())).unwrap();
        (b.with_seed(7), clock)
    }

    #[test]
    fn validation_names_the_endpoint_and_field() {
        let c = AnyClock::default();
        let e = Balancer::try_new(vec![spec("a", 0)], SEC, c.clone()).unwrap_err();
        assert_eq!(e.field, "endpoints[0].weight");
        assert!(e.problem.contains("\"a\""), "{e}");
        let e = Balancer::try_new(vec![spec("a", 1), spec("a", 1)], SEC, c.clone()).unwrap_err();
        assert_eq!(e.field, "endpoints[1].id");
        let mut s = spec("b", 1);
        s.breaker.error_rate = 2.0;
        let e = Balancer::try_new(vec![s], SEC, c.clone()).unwrap_err();
        assert_eq!(e.field, "endpoints[0].breaker.error_rate");
        let e = Balancer::try_new(vec![], 0, c).unwrap_err();
        assert_eq!(e.field, "decay_nanos");
    }

    #[test]
    fn empty_and_single() {
        let (b, _) = mk(vec![]);
        assert_eq!(b.pick(), Err(Unavailable::Empty));
        let (b, _) = mk(vec![spec("a", 1)]);
        assert_eq!(b.pick(), Ok(0));
        assert_eq!(b.endpoint_stats(0).unwrap().outstanding, 1);
        b.finish(0, MS, Outcome::Success).unwrap();
        assert_eq!(b.endpoint_stats(0).unwrap().outstanding, 0);
        assert_eq!(b.finish(3, MS, Outcome::Success), Err(UnknownEndpoint(3)));
    }

    #[test]
    fn distribution_follows_weights_at_equal_latency() {
        let (b, _) = mk(vec![spec("a", 1), spec("b", 2), spec("c", 5)]);
        let mut counts = [0u32; 3];
        // A steady concurrency of 16 with equal latencies: the cost term (outstanding + 1) /
        // weight settles where each endpoint's load is proportional to its weight.
        let mut held = std::collections::VecDeque::new();
        let n = 16_000;
        for _ in 0..n {
            let i = b.pick().unwrap();
            counts[i] += 1;
            held.push_back(i);
            if held.len() > 16 {
                let j = held.pop_front().unwrap();
                b.finish(j, MS, Outcome::Success).unwrap();
            }
        }
        let share: Vec<f64> = counts
            .iter()
            .map(|&c| f64::from(c) / f64::from(n))
            .collect();
        let want = [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0];
        for k in 0..3 {
            assert!((share[k] - want[k]).abs() < 0.06, "{share:?} vs {want:?}");
        }
    }

    #[test]
    fn equal_weights_share_equally_with_outstanding() {
        let (b, _) = mk(vec![spec("a", 1), spec("b", 1), spec("c", 1), spec("d", 1)]);
        // Hold every pick open: least-loaded choice keeps outstanding counts within 1-2.
        for _ in 0..400 {
            b.pick().unwrap();
        }
        let out: Vec<u32> = (0..4)
            .map(|i| b.endpoint_stats(i).unwrap().outstanding)
            .collect();
        let (min, max) = (out.iter().min().unwrap(), out.iter().max().unwrap());
        assert!(max - min <= 3, "{out:?}");
    }

    #[test]
    fn slow_endpoint_gets_fewer_picks() {
        let (b, clock) = mk(vec![spec("fast", 1), spec("slow", 1)]);
        let mut counts = [0u32; 2];
        for _ in 0..4_000 {
            let i = b.pick().unwrap();
            counts[i] += 1;
            let lat = if i == 0 { MS } else { 50 * MS };
            clock.advance(MS);
            b.finish(i, lat, Outcome::Success).unwrap();
        }
        assert!(counts[0] > 4 * counts[1], "{counts:?}");
        let slow = b.endpoint_stats(1).unwrap().ewma_nanos;
        let fast = b.endpoint_stats(0).unwrap().ewma_nanos;
        assert!(slow > 10 * fast, "slow {slow} fast {fast}");
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let (b, clock) = mk(vec![spec("a", 1)]);
        b.pick().unwrap();
        b.finish(0, 100 * MS, Outcome::Success).unwrap();
        assert_eq!(b.endpoint_stats(0).unwrap().ewma_nanos, 100 * MS);
        b.pick().unwrap();
        clock.advance(10 * SEC); // one decay period
        b.finish(0, 0, Outcome::Success).unwrap();
        let e = b.endpoint_stats(0).unwrap().ewma_nanos as f64;
        let want = 100.0 * MS as f64 * (-1.0f64).exp();
        assert!((e - want).abs() < 1000.0, "{e} vs {want}");
        // Cancelled requests do not feed the estimate.
        b.pick().unwrap();
        b.finish(0, 900 * MS, Outcome::Cancelled).unwrap();
        assert!(b.endpoint_stats(0).unwrap().ewma_nanos < 100 * MS);
    }

    #[test]
    fn open_and_unhealthy_endpoints_are_never_picked() {
        let (b, _) = mk(vec![spec("a", 1), spec("b", 1), spec("c", 1)]);
        b.set_healthy(0, false).unwrap();
        b.breaker(1).unwrap().force_open();
        for _ in 0..500 {
            let i = b.pick().unwrap();
            assert_eq!(i, 2);
            b.finish(i, MS, Outcome::Success).unwrap();
        }
        assert_eq!(b.endpoint_stats(0).unwrap().outstanding, 0);
        assert_eq!(b.endpoint_stats(1).unwrap().outstanding, 0);
    }

    #[test]
    fn failures_open_the_breaker_and_reasons_are_explicit() {
        let (b, clock) = mk(vec![spec("a", 1), spec("b", 1)]);
        for _ in 0..10 {
            match b.pick() {
                Ok(i) => b.finish(i, MS, Outcome::Failure).unwrap(),
                Err(u) => {
                    assert_eq!(u, Unavailable::AllOpen);
                    break;
                }
            }
        }
        assert_eq!(b.pick(), Err(Unavailable::AllOpen));
        assert_eq!(
            b.endpoint_stats(0).unwrap().breaker.state,
            BreakerState::Open
        );
        b.set_healthy(0, false).unwrap();
        b.set_healthy(1, false).unwrap();
        assert_eq!(b.pick(), Err(Unavailable::NoHealthy));
        b.set_healthy(1, true).unwrap();
        assert_eq!(b.pick(), Err(Unavailable::AllOpen));
        // After the cool-down one probe goes through, the next pick is refused.
        clock.advance(10 * SEC);
        let i = b.pick().unwrap();
        assert_eq!(i, 1);
        assert_eq!(b.pick(), Err(Unavailable::AllOpen));
        b.finish(i, MS, Outcome::Success).unwrap();
        assert_eq!(b.pick(), Ok(1));
    }

    #[test]
    fn half_open_candidate_falls_back_to_another() {
        let specs = vec![spec("a", 1), spec("b", 1), spec("c", 1)];
        let (b, clock) = mk(specs);
        // Open "a", let its cool-down pass, and take its only probe permit.
        for _ in 0..2 {
            b.breaker(0).unwrap().record_failure();
        }
        clock.advance(10 * SEC);
        assert!(b.breaker(0).unwrap().try_acquire());
        for _ in 0..200 {
            let i = b.pick().unwrap();
            assert_ne!(i, 0);
            b.finish(i, MS, Outcome::Success).unwrap();
        }
    }

    #[test]
    fn outstanding_never_negative_under_threads() {
        let (b, _) = mk(vec![spec("a", 1), spec("b", 2), spec("c", 3)]);
        let b = Arc::new(b);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    fastrand::seed(t);
                    let mut held = Vec::new();
                    for k in 0..5_000u64 {
                        if let Ok(i) = b.pick() {
                            held.push(i);
                        }
                        if k % 3 != 0 {
                            if let Some(i) = held.pop() {
                                b.finish(i, MS, Outcome::Success).unwrap();
                            }
                        }
                        for i in 0..3 {
                            assert!(b.endpoint_stats(i).unwrap().outstanding < 1 << 30);
                        }
                    }
                    for i in held {
                        b.finish(i, MS, Outcome::Cancelled).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for i in 0..3 {
            assert_eq!(b.endpoint_stats(i).unwrap().outstanding, 0);
        }
        // A stray extra finish saturates at zero instead of wrapping.
        b.finish(0, MS, Outcome::Cancelled).unwrap();
        assert_eq!(b.endpoint_stats(0).unwrap().outstanding, 0);
    }

    proptest! {
        #[test]
        fn picks_respect_health_and_breakers(
            n in 1usize..6,
            ops in proptest::collection::vec((0u8..6, 0usize..6, 0u64..(20 * SEC)), 1..200),
            seed in any::<u64>(),
        ) {
            let specs = (0..n).map(|i| spec(&format!("e{i}"), (i as u32 % 3) + 1)).collect();
            let clock = ManualClock::new();
            let b = Balancer::try_new(specs, SEC, AnyClock::Manual(clock.clone()))
                .unwrap()
                .with_seed(seed);
            let mut held: Vec<usize> = Vec::new();
            for (op, idx, t) in ops {
                let idx = idx % n;
                match op {
                    0 | 1 => {
                        let avail: Vec<bool> =
                            (0..n).map(|i| b.endpoints[i].available()).collect();
                        match b.pick() {
                            Ok(i) => {
                                prop_assert!(avail[i], "picked unavailable endpoint {i}");
                                held.push(i);
                            }
                            Err(Unavailable::Empty) => prop_assert!(false),
                            Err(Unavailable::NoHealthy) => {
                                prop_assert!(
                                    (0..n).all(|i| !b.endpoint_stats(i).unwrap().healthy)
                                );
                            }
                            Err(Unavailable::AllOpen) => {
                                prop_assert!(avail.iter().all(|a| !a));
                                prop_assert!(
                                    (0..n).any(|i| b.endpoint_stats(i).unwrap().healthy)
                                );
                            }
                        }
                    }
                    2 => b.set_healthy(idx, !b.endpoint_stats(idx).unwrap().healthy).unwrap(),
                    3 => clock.advance(t),
                    _ => {
                        if let Some(i) = held.pop() {
                            let o = if op == 4 { Outcome::Success } else { Outcome::Failure };
                            b.finish(i, t / 1000, o).unwrap();
                        }
                    }
                }
                let total: u32 = (0..n).map(|i| b.endpoint_stats(i).unwrap().outstanding).sum();
                prop_assert_eq!(total as usize, held.len());
            }
        }
    }
}
