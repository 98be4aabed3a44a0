//! Circuit breaker: stop sending traffic to an upstream that keeps failing, probe it after a
//! cool-down, and close again once probes succeed.
//!
//! States and transitions:
//! - `Closed` → `Open` when `consecutive_failures` failures arrive in a row, or when the error
//!   rate over the sliding window reaches `error_rate` with at least `min_requests` requests in
//!   the window.
//! - `Open` → `HalfOpen` once the cool-down has passed. The transition is lazy: it happens on the
//!   next [`CircuitBreaker::try_acquire`]; [`CircuitBreaker::state`] already reports `HalfOpen`.
//!   The cool-down of the n-th consecutive trip is `open_nanos * backoff^(n-1)`, capped at
//!   `max_open_nanos`.
//! - `HalfOpen` admits at most `half_open_probes` (K) concurrent probes. K probe successes close
//!   the breaker (with K = 1 the first success closes it); one probe failure reopens it with the
//!   grown cool-down.
//! - The trip count (which drives the cool-down growth) goes back to zero when the breaker has
//!   stayed `Closed` for a full period of `max(window_nanos, last cool-down)` before tripping again.
//!
//! Reporting contract: every request that got `true` from `try_acquire` must report exactly once,
//! with [`CircuitBreaker::record_success`], [`CircuitBreaker::record_failure`] or
//! [`CircuitBreaker::record_cancelled`] (the request never reached the upstream: its probe permit
//! is returned and nothing is counted). While `HalfOpen`, every reported outcome is attributed to
//! a probe: a request admitted before the trip that completes during the half-open period is
//! evidence about the upstream too. Outcomes reported while `Open` are ignored.
//!
//! Concurrency: `try_acquire` in `Closed` is one atomic load; in `Open` before the deadline it is
//! two. Probe permits are taken by CAS on a packed state word. Only transitions to `Open`/`Closed`
//! and `Open` → `HalfOpen` take a small mutex.

use crate::clock::{AnyClock, Clock};
use crate::setting::{secs_to_nanos, SettingError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Tuning of a [`CircuitBreaker`]; all durations are nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row; 0 disables this trigger.
    pub consecutive_failures: u32,
    /// Trip when failures / requests over the window reaches this (0..=1); 0 disables it.
    pub error_rate: f64,
    /// Minimum number of requests in the window before the error rate is considered.
    pub min_requests: u32,
    /// Length of the sliding window for the error rate.
    pub window_nanos: u64,
    /// Number of buckets the window is divided into (its resolution).
    pub buckets: u32,
    /// Base cool-down before the first half-open probe.
    pub open_nanos: u64,
    /// Cap of the grown cool-down.
    pub max_open_nanos: u64,
    /// Cool-down multiplier per repeated trip (>= 1).
    pub backoff: f64,
    /// Maximum concurrent probes in half-open, and successes needed to close (K).
    pub half_open_probes: u32,
}

const SEC: u64 = 1_000_000_000;
/// Largest accepted number of window buckets.
pub const MAX_BUCKETS: u32 = 1000;
/// Largest accepted `half_open_probes` (it is packed into 16 bits).
pub const MAX_HALF_OPEN_PROBES: u32 = 10_000;

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window_nanos: 10 * SEC,
            buckets: 10,
            open_nanos: 10 * SEC,
            max_open_nanos: 300 * SEC,
            backoff: 2.0,
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks every field; the error names the bad field and value.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(self.error_rate.is_finite() && (0.0..=1.0).contains(&self.error_rate)) {
            return Err(SettingError::new(
                "error_rate",
                format!("must be in [0, 1], got {}", self.error_rate),
            ));
        }
        if self.window_nanos == 0 {
            return Err(SettingError::new("window_nanos", "must be > 0"));
        }
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(SettingError::new(
                "buckets",
                format!("must be in 1..={MAX_BUCKETS}, got {}", self.buckets),
            ));
        }
        if u64::from(self.buckets) > self.window_nanos {
            return Err(SettingError::new(
                "buckets",
                format!(
                    "({}) must not exceed window_nanos ({})",
                    self.buckets, self.window_nanos
                ),
            ));
        }
        if self.open_nanos == 0 {
            return Err(SettingError::new("open_nanos", "must be > 0"));
        }
        if self.max_open_nanos < self.open_nanos {
            return Err(SettingError::new(
                "max_open_nanos",
                format!(
                    "must be >= open_nanos ({}), got {}",
                    self.open_nanos, self.max_open_nanos
                ),
            ));
        }
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            return Err(SettingError::new(
                "backoff",
                format!("must be a finite number >= 1, got {}", self.backoff),
            ));
        }
        if self.half_open_probes == 0 || self.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(SettingError::new(
                "half_open_probes",
                format!(
                    "must be in 1..={MAX_HALF_OPEN_PROBES}, got {}",
                    self.half_open_probes
                ),
            ));
        }
        Ok(())
    }

    /// A copy with every invalid field replaced by the nearest valid value.
    fn sanitized(&self) -> Self {
        let mut c = self.clone();
        c.error_rate = if c.error_rate.is_finite() {
            c.error_rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        c.window_nanos = c.window_nanos.max(1);
        c.buckets = c.buckets.clamp(1, MAX_BUCKETS);
        c.buckets = c
            .buckets
            .min(u32::try_from(c.window_nanos).unwrap_or(u32::MAX));
        c.open_nanos = c.open_nanos.max(1);
        c.max_open_nanos = c.max_open_nanos.max(c.open_nanos);
        c.backoff = if c.backoff.is_finite() {
            c.backoff.max(1.0)
        } else {
            1.0
        };
        c.half_open_probes = c.half_open_probes.clamp(1, MAX_HALF_OPEN_PROBES);
        c
    }

    /// Cool-down of the `trips`-th consecutive trip (1-based), capped.
    pub fn cooldown_nanos(&self, trips: u32) -> u64 {
        let exp = i32::try_from(trips.saturating_sub(1))
            .unwrap_or(i32::MAX)
            .min(4096);
        let f = self.open_nanos as f64 * self.backoff.powi(exp);
        if !f.is_finite() || f >= self.max_open_nanos as f64 {
            self.max_open_nanos
        } else {
            (f as u64).max(self.open_nanos)
        }
    }
}

/// [`BreakerConfig`] as people write it: durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSecs {
    /// Trip after this many failures in a row; 0 disables this trigger.
    pub consecutive_failures: u32,
    /// Trip at this error rate over the window (0..=1); 0 disables it.
    pub error_rate: f64,
    /// Requests in the window before the error rate counts.
    pub min_requests: u32,
    /// Sliding window, seconds (> 0).
    pub window: f64,
    /// Buckets of the window.
    pub buckets: u32,
    /// First cool-down, seconds (> 0).
    pub open_for: f64,
    /// Longest cool-down, seconds (>= `open_for`).
    pub max_open_for: f64,
    /// Cool-down multiplier per repeated trip (>= 1).
    pub backoff: f64,
    /// Concurrent probes in half-open, and successes needed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerSecs {
    fn default() -> Self {
        let c = BreakerConfig::default();
        BreakerSecs {
            consecutive_failures: c.consecutive_failures,
            error_rate: c.error_rate,
            min_requests: c.min_requests,
            window: c.window_nanos as f64 / SEC as f64,
            buckets: c.buckets,
            open_for: c.open_nanos as f64 / SEC as f64,
            max_open_for: c.max_open_nanos as f64 / SEC as f64,
            backoff: c.backoff,
            half_open_probes: c.half_open_probes,
        }
    }
}

impl TryFrom<&BreakerSecs> for BreakerConfig {
    type Error = SettingError;

    /// Converts and validates; errors name the seconds fields (`window`, `open_for`, ...).
    fn try_from(s: &BreakerSecs) -> Result<Self, SettingError> {
        let c = BreakerConfig {
            consecutive_failures: s.consecutive_failures,
            error_rate: s.error_rate,
            min_requests: s.min_requests,
            window_nanos: secs_to_nanos("window", s.window)?,
            buckets: s.buckets,
            open_nanos: secs_to_nanos("open_for", s.open_for)?,
            max_open_nanos: secs_to_nanos("max_open_for", s.max_open_for)?,
            backoff: s.backoff,
            half_open_probes: s.half_open_probes,
        };
        if c.window_nanos == 0 {
            let problem = format!("must be > 0 seconds, got {}", s.window);
            return Err(SettingError::new("window", problem));
        }
        if c.open_nanos == 0 {
            let problem = format!("must be > 0 seconds, got {}", s.open_for);
            return Err(SettingError::new("open_for", problem));
        }
        if c.max_open_nanos < c.open_nanos {
            let problem = format!(
                "must be >= open_for ({}), got {}",
                s.open_for, s.max_open_for
            );
            return Err(SettingError::new("max_open_for", problem));
        }
        c.validate()?;
        Ok(c)
    }
}

/// The externally visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Traffic flows; outcomes are counted.
    Closed,
    /// Traffic is refused until the cool-down ends.
    Open,
    /// A limited number of probes are let through.
    HalfOpen,
}

impl BreakerState {
    /// Every state.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// Lower-case snake name: "closed", "open", "half_open".
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl std::str::FromStr for BreakerState {
    type Err = String;

    /// Parses "closed", "open" or "half_open".
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&BreakerState::ALL, BreakerState::as_str, "breaker state", s)
    }
}

/// How a request admitted by a breaker (or balancer) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The upstream answered well.
    Success,
    /// The upstream failed (error, timeout, 5xx …).
    Failure,
    /// The request never got a verdict from the upstream (client went away): not counted.
    Cancelled,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Cancelled];

    /// Lower-case name: "success", "failure", "cancelled".
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    /// Parses "success", "failure" or "cancelled".
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&Outcome::ALL, Outcome::as_str, "outcome", s)
    }
}

/// A point-in-time view of a breaker, for metrics and the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerStats {
    /// Current state (as [`CircuitBreaker::state`] reports it).
    pub state: BreakerState,
    /// Failures in a row so far (Closed only).
    pub consecutive_failures: u32,
    /// Requests counted in the sliding window.
    pub window_requests: u64,
    /// Failures counted in the sliding window.
    pub window_failures: u64,
    /// Consecutive trips driving the cool-down growth.
    pub trips: u32,
    /// When the current open period ends (clock nanos); 0 unless Open. `u64::MAX` if forced open.
    pub open_until_nanos: u64,
}

// Packed state word: probes (16 bits) | half-open successes (16) | state (2) | generation (30).
// One word so that a probe permit is a single CAS that also checks the state, and the generation
// (bumped on every transition) rules out ABA between half-open periods.
const ST_CLOSED: u64 = 0;
const ST_OPEN: u64 = 1;
const ST_HALF: u64 = 2;
const GEN_MASK: u64 = (1 << 30) - 1;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(state: u64, gen: u64, succ: u64, probes: u64) -> Self {
        Word(
            (probes & 0xFFFF)
                | ((succ & 0xFFFF) << 16)
                | ((state & 3) << 32)
                | ((gen & GEN_MASK) << 34),
        )
    }
    fn probes(self) -> u64 {
        self.0 & 0xFFFF
    }
    fn succ(self) -> u64 {
        (self.0 >> 16) & 0xFFFF
    }
    fn state(self) -> u64 {
        (self.0 >> 32) & 3
    }
    fn gen(self) -> u64 {
        self.0 >> 34
    }
    fn next(self, state: u64) -> Self {
        Word::new(state, (self.gen() + 1) & GEN_MASK, 0, 0)
    }
}

/// One time bucket: its epoch (bucket index + 1, 0 = empty) and packed counts
/// (failures in the high 32 bits, requests in the low 32 bits) so one add updates both.
#[derive(Default)]
struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

/// Ring of time buckets. Rotation is approximate by design: an add racing with the zeroing of a
/// bucket that is being recycled may be lost, which only affects a boundary sample.
struct Window {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
}

impl Window {
    fn new(window_nanos: u64, n: u32) -> Self {
        let n = n.max(1);
        let bucket_nanos = (window_nanos / u64::from(n)).max(1);
        Self {
            bucket_nanos,
            buckets: (0..n).map(|_| Bucket::default()).collect(),
        }
    }

    fn add(&self, now: u64, failed: bool) {
        let idx = now / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let Some(b) = self.buckets.get((idx % len) as usize) else {
            return;
        };
        let want = idx + 1;
        let e = b.epoch.load(Ordering::Acquire);
        if e < want
            && b.epoch
                .compare_exchange(e, want, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.counts.store(0, Ordering::Release);
        }
        b.counts
            .fetch_add(1 | (u64::from(failed) << 32), Ordering::AcqRel);
    }

    fn sum(&self, now: u64) -> (u64, u64) {
        let idx = now / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let (mut req, mut fail) = (0u64, 0u64);
        for b in self.buckets.iter() {
            let e = b.epoch.load(Ordering::Acquire);
            if e == 0 || e - 1 > idx || idx - (e - 1) >= len {
                continue;
            }
            let c = b.counts.load(Ordering::Acquire);
            req += c & 0xFFFF_FFFF;
            fail += c >> 32;
        }
        (req, fail)
    }

    fn clear(&self) {
        for b in self.buckets.iter() {
            b.epoch.store(0, Ordering::Release);
            b.counts.store(0, Ordering::Release);
        }
    }
}

/// Bookkeeping touched only by transitions (under the mutex).
struct Transitions {
    trips: u32,
    closed_since: u64,
    last_cooldown: u64,
}

/// A thread-safe circuit breaker; see the module docs for semantics and the reporting contract.
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: AnyClock,
    word: AtomicU64,
    open_until: AtomicU64,
    consecutive: AtomicU32,
    trips: AtomicU32,
    window: Window,
    transitions: Mutex<Transitions>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("stats", &self.stats())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker. Invalid config fields are clamped to the nearest valid value; use
    /// [`CircuitBreaker::try_new`] (or [`BreakerConfig::validate`]) to reject them instead.
    pub fn new(config: BreakerConfig, clock: AnyClock) -> Self {
        let config = config.sanitized();
        let now = clock.now_nanos();
        Self {
            window: Window::new(config.window_nanos, config.buckets),
            clock,
            word: AtomicU64::new(Word::new(ST_CLOSED, 0, 0, 0).0),
            open_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            trips: AtomicU32::new(0),
            transitions: Mutex::new(Transitions {
                trips: 0,
                closed_since: now,
                last_cooldown: 0,
            }),
            config,
        }
    }

    /// A closed breaker, or the validation error naming the bad field.
    pub fn try_new(config: BreakerConfig, clock: AnyClock) -> Result<Self, SettingError> {
        config.validate()?;
        Ok(Self::new(config, clock))
    }

    /// The (sanitized) configuration in use.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    /// May a request go through now? In half-open this takes a probe permit. A `true` must be
    /// followed by exactly one `record_*` call.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let w = self.load();
        match w.state() {
            ST_CLOSED => true,
            ST_OPEN => {
                let now = self.clock.now_nanos();
                if now < self.open_until.load(Ordering::Acquire) {
                    return false;
                }
                self.begin_half_open(now);
                self.try_probe()
            }
            _ => self.try_probe(),
        }
    }

    /// Would `try_acquire` admit a request now? A read-only check (no permit taken).
    pub fn would_admit(&self) -> bool {
        let w = self.load();
        match w.state() {
            ST_CLOSED => true,
            ST_OPEN => self.clock.now_nanos() >= self.open_until.load(Ordering::Acquire),
            _ => w.probes() < u64::from(self.config.half_open_probes),
        }
    }

    fn begin_half_open(&self, now: u64) {
        let _g = self.transitions.lock();
        let w = self.load();
        if w.state() == ST_OPEN && now >= self.open_until.load(Ordering::Acquire) {
            self.word.store(w.next(ST_HALF).0, Ordering::Release);
        }
    }

    fn try_probe(&self) -> bool {
        let k = u64::from(self.config.half_open_probes);
        let mut w = self.load();
        loop {
            match w.state() {
                ST_CLOSED => return true,
                ST_OPEN => return false,
                _ => {}
            }
            if w.probes() >= k {
                return false;
            }
            let n = Word::new(ST_HALF, w.gen(), w.succ(), w.probes() + 1);
            match self
                .word
                .compare_exchange_weak(w.0, n.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(cur) => w = Word(cur),
            }
        }
    }

    /// Reports a successful request (one that was admitted).
    pub fn record_success(&self) {
        let k = u64::from(self.config.half_open_probes);
        let mut w = self.load();
        loop {
            match w.state() {
                ST_CLOSED => {
                    // Load first: avoid dirtying a shared cache line on every success.
                    if self.consecutive.load(Ordering::Relaxed) != 0 {
                        self.consecutive.store(0, Ordering::Relaxed);
                    }
                    self.window.add(self.clock.now_nanos(), false);
                    return;
                }
                ST_OPEN => return,
                _ => {}
            }
            let succ = w.succ() + 1;
            if succ >= k {
                let now = self.clock.now_nanos();
                let mut t = self.transitions.lock();
                let cur = self.load();
                if cur != w {
                    w = cur;
                    continue;
                }
                self.consecutive.store(0, Ordering::Relaxed);
                self.window.clear();
                self.open_until.store(0, Ordering::Release);
                t.closed_since = now;
                self.word.store(w.next(ST_CLOSED).0, Ordering::Release);
                return;
            }
            let n = Word::new(ST_HALF, w.gen(), succ, w.probes().saturating_sub(1));
            match self
                .word
                .compare_exchange_weak(w.0, n.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(cur) => w = Word(cur),
            }
        }
    }

    /// Reports a failed request (one that was admitted).
    pub fn record_failure(&self) {
        let w = self.load();
        match w.state() {
            ST_CLOSED => {
                let now = self.clock.now_nanos();
                let c = self
                    .consecutive
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                self.window.add(now, true);
                let cf = self.config.consecutive_failures;
                if (cf > 0 && c >= cf) || self.rate_tripped(now) {
                    self.trip(w, now);
                }
            }
            ST_OPEN => {}
            _ => self.trip(w, self.clock.now_nanos()),
        }
    }

    /// Reports that an admitted request was cancelled before the upstream answered: returns its
    /// probe permit (half-open) and counts nothing.
    pub fn record_cancelled(&self) {
        let mut w = self.load();
        while w.state() == ST_HALF && w.probes() > 0 {
            let n = Word::new(ST_HALF, w.gen(), w.succ(), w.probes() - 1);
            match self
                .word
                .compare_exchange_weak(w.0, n.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(cur) => w = Word(cur),
            }
        }
    }

    /// Reports an outcome; dispatches to the matching `record_*`.
    pub fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.record_success(),
            Outcome::Failure => self.record_failure(),
            Outcome::Cancelled => self.record_cancelled(),
        }
    }

    fn rate_tripped(&self, now: u64) -> bool {
        let rate = self.config.error_rate;
        if rate <= 0.0 {
            return false;
        }
        let (req, fail) = self.window.sum(now);
        req > 0 && req >= u64::from(self.config.min_requests) && fail as f64 >= rate * req as f64
    }

    /// Opens the breaker if the word is still `seen` (so concurrent trips count once).
    fn trip(&self, seen: Word, now: u64) {
        let mut t = self.transitions.lock();
        let w = self.load();
        if w.gen() != seen.gen() || w.state() == ST_OPEN {
            return;
        }
        if w.state() == ST_CLOSED {
            let quiet = self.config.window_nanos.max(t.last_cooldown);
            if now.saturating_sub(t.closed_since) >= quiet {
                t.trips = 0;
            }
        }
        t.trips = t.trips.saturating_add(1);
        let cool = self.config.cooldown_nanos(t.trips);
        t.last_cooldown = cool;
        self.trips.store(t.trips, Ordering::Relaxed);
        self.open_until
            .store(now.saturating_add(cool), Ordering::Release);
        self.consecutive.store(0, Ordering::Relaxed);
        self.window.clear();
        self.word.store(w.next(ST_OPEN).0, Ordering::Release);
    }

    /// Opens the breaker until [`CircuitBreaker::reset`] (operations override).
    pub fn force_open(&self) {
        let _t = self.transitions.lock();
        let w = self.load();
        self.open_until.store(u64::MAX, Ordering::Release);
        self.word.store(w.next(ST_OPEN).0, Ordering::Release);
    }

    /// Closes the breaker and forgets all history, including the trip count.
    pub fn reset(&self) {
        let mut t = self.transitions.lock();
        let w = self.load();
        t.trips = 0;
        t.last_cooldown = 0;
        t.closed_since = self.clock.now_nanos();
        self.trips.store(0, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        self.window.clear();
        self.open_until.store(0, Ordering::Release);
        self.word.store(w.next(ST_CLOSED).0, Ordering::Release);
    }

    /// Current state; an `Open` breaker whose cool-down has passed reports `HalfOpen`.
    pub fn state(&self) -> BreakerState {
        match self.load().state() {
            ST_CLOSED => BreakerState::Closed,
            ST_OPEN => {
                if self.clock.now_nanos() >= self.open_until.load(Ordering::Acquire) {
                    BreakerState::HalfOpen
                } else {
                    BreakerState::Open
                }
            }
            _ => BreakerState::HalfOpen,
        }
    }

    /// Probe permits currently held (half-open only; 0 otherwise).
    pub fn outstanding_probes(&self) -> u32 {
        let w = self.load();
        if w.state() == ST_HALF {
            w.probes() as u32
        } else {
            0
        }
    }

    /// A point-in-time view for metrics.
    pub fn stats(&self) -> BreakerStats {
        let now = self.clock.now_nanos();
        let state = self.state();
        let (window_requests, window_failures) = self.window.sum(now);
        BreakerStats {
            state,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            window_requests,
            window_failures,
            trips: self.trips.load(Ordering::Relaxed),
            open_until_nanos: if state == BreakerState::Open {
                self.open_until.load(Ordering::Acquire)
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_rate: 0.0,
            min_requests: 10,
            window_nanos: 10 * SEC,
            buckets: 10,
            open_nanos: 10 * SEC,
            max_open_nanos: 60 * SEC,
            backoff: 2.0,
            half_open_probes: 1,
        }
    }

    fn mk(c: BreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        (
            CircuitBreaker::try_new(c, AnyClock::Manual(clock.clone())).unwrap(),
            clock,
        )
    }

    fn fail_n(b: &CircuitBreaker, n: u32) {
        for _ in 0..n {
            assert!(b.try_acquire());
            b.record_failure();
        }
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = BreakerConfig::default();
        assert!(c.validate().is_ok());
        c.error_rate = 1.5;
        assert_eq!(c.validate().unwrap_err().field, "error_rate");
        let c = BreakerConfig {
            half_open_probes: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "half_open_probes");
        let c = BreakerConfig {
            backoff: 0.5,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "backoff");
        let c = BreakerConfig {
            max_open_nanos: 1,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "max_open_nanos");
        let c = BreakerConfig {
            buckets: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "buckets");
        let c = BreakerConfig {
            window_nanos: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "window_nanos");
        assert!(CircuitBreaker::try_new(c.clone(), AnyClock::default()).is_err());
        // `new` clamps instead of failing.
        let b = CircuitBreaker::new(c, AnyClock::default());
        assert!(b.config().validate().is_ok());
    }

    #[test]
    fn seconds_convert_and_errors_name_the_seconds_fields() {
        let c = BreakerConfig::try_from(&BreakerSecs::default()).unwrap();
        assert_eq!(c, BreakerConfig::default());
        let field = |s: BreakerSecs| BreakerConfig::try_from(&s).unwrap_err().field;
        let d = BreakerSecs::default;
        assert_eq!(field(BreakerSecs { window: 0.0, ..d() }), "window");
        assert_eq!(
            field(BreakerSecs {
                window: -1.0,
                ..d()
            }),
            "window"
        );
        assert_eq!(
            field(BreakerSecs {
                open_for: 0.0,
                ..d()
            }),
            "open_for"
        );
        let short = BreakerSecs {
            open_for: 20.0,
            max_open_for: 10.0,
            ..d()
        };
        assert_eq!(field(short), "max_open_for");
        assert_eq!(
            field(BreakerSecs {
                backoff: 0.5,
                ..d()
            }),
            "backoff"
        );
        assert_eq!(
            field(BreakerSecs {
                error_rate: 2.0,
                ..d()
            }),
            "error_rate"
        );
    }

    #[test]
    fn states_and_outcomes_parse_their_names() {
        for s in BreakerState::ALL {
            assert_eq!(s.as_str().parse::<BreakerState>(), Ok(s));
        }
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        assert!("half-open".parse::<BreakerState>().is_err());
        assert!("ok".parse::<Outcome>().unwrap_err().contains("success"));
    }

    #[test]
    fn consecutive_failures_trip_and_success_resets_the_run() {
        let (b, _) = mk(cfg());
        fail_n(&b, 2);
        assert!(b.try_acquire());
        b.record_success();
        fail_n(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        fail_n(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        assert_eq!(b.stats().trips, 1);
    }

    #[test]
    fn open_to_half_open_to_closed() {
        let (b, clock) = mk(cfg());
        fail_n(&b, 3);
        let until = b.stats().open_until_nanos;
        assert_eq!(until, clock.now_nanos() + 10 * SEC);
        clock.advance(10 * SEC - 1);
        assert!(!b.try_acquire());
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(), "first probe");
        assert!(!b.try_acquire(), "K=1: second concurrent probe refused");
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
    }

    #[test]
    fn probe_failure_reopens_with_grown_cooldown_and_cap() {
        let (b, clock) = mk(cfg());
        fail_n(&b, 3);
        let mut expected = [10u64, 20, 40, 60, 60].into_iter();
        let mut cool = expected.next().unwrap();
        for next in expected {
            assert_eq!(b.stats().open_until_nanos - clock.now_nanos(), cool * SEC);
            clock.advance(cool * SEC);
            assert!(b.try_acquire());
            b.record_failure();
            assert_eq!(b.state(), BreakerState::Open);
            cool = next;
        }
        assert_eq!(b.stats().open_until_nanos - clock.now_nanos(), 60 * SEC);
        assert_eq!(b.stats().trips, 5);
    }

    #[test]
    fn trip_count_resets_after_a_full_closed_period() {
        let (b, clock) = mk(cfg());
        fail_n(&b, 3);
        clock.advance(10 * SEC);
        assert!(b.try_acquire());
        b.record_failure(); // trips = 2, cool-down 20 s
        clock.advance(20 * SEC);
        assert!(b.try_acquire());
        b.record_success();
        // Closed again; tripping again quickly keeps growing: trips = 3 → 40 s.
        fail_n(&b, 3);
        assert_eq!(b.stats().trips, 3);
        assert_eq!(b.stats().open_until_nanos - clock.now_nanos(), 40 * SEC);
        clock.advance(40 * SEC);
        assert!(b.try_acquire());
        b.record_success();
        // Closed for the last cool-down (40 s) → the next trip starts from the base again.
        clock.advance(40 * SEC);
        fail_n(&b, 3);
        assert_eq!(b.stats().trips, 1);
        assert_eq!(b.stats().open_until_nanos - clock.now_nanos(), 10 * SEC);
    }

    #[test]
    fn k_probes_need_k_successes_and_cancel_returns_the_permit() {
        let (b, clock) = mk(BreakerConfig {
            half_open_probes: 3,
            ..cfg()
        });
        fail_n(&b, 3);
        clock.advance(10 * SEC);
        assert!(b.try_acquire());
        assert!(b.try_acquire());
        assert!(b.try_acquire());
        assert!(!b.try_acquire());
        assert_eq!(b.outstanding_probes(), 3);
        b.record_cancelled();
        assert_eq!(b.outstanding_probes(), 2);
        assert!(b.try_acquire());
        b.record_success();
        b.record_success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn error_rate_needs_min_volume() {
        let c = BreakerConfig {
            consecutive_failures: 0,
            error_rate: 0.5,
            min_requests: 10,
            ..cfg()
        };
        let (b, _) = mk(c);
        // 4 failures, 4 successes interleaved: 8 requests < 10, no trip even at 50 %.
        for _ in 0..4 {
            assert!(b.try_acquire());
            b.record_failure();
            assert!(b.try_acquire());
            b.record_success();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire());
        b.record_success(); // 9 requests, 4 failures
        assert!(b.try_acquire());
        b.record_failure(); // 10 requests, 5 failures = 50 % → trip
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn error_rate_below_threshold_does_not_trip() {
        let c = BreakerConfig {
            consecutive_failures: 0,
            error_rate: 0.5,
            min_requests: 10,
            ..cfg()
        };
        let (b, _) = mk(c);
        for _ in 0..50 {
            assert!(b.try_acquire());
            b.record_success();
            assert!(b.try_acquire());
            b.record_success();
            assert!(b.try_acquire());
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.stats();
        assert_eq!((s.window_requests, s.window_failures), (150, 50));
    }

    #[test]
    fn old_failures_age_out_of_the_window() {
        let c = BreakerConfig {
            consecutive_failures: 0,
            error_rate: 0.5,
            min_requests: 4,
            ..cfg()
        };
        let (b, clock) = mk(c);
        fail_n(&b, 1);
        for _ in 0..2 {
            assert!(b.try_acquire());
            b.record_success();
        }
        assert_eq!(b.stats().window_requests, 3);
        clock.advance(11 * SEC); // the whole window has passed
        assert_eq!(b.stats().window_requests, 0);
        for _ in 0..3 {
            assert!(b.try_acquire());
            b.record_success();
        }
        fail_n(&b, 1); // 1 of 4 = 25 %: the old failure no longer counts
        assert_eq!(b.state(), BreakerState::Closed);
        // Partial slide: requests from 5 s ago still count, from 11 s ago not.
        clock.advance(5 * SEC);
        fail_n(&b, 1);
        let s = b.stats();
        assert_eq!((s.window_requests, s.window_failures), (5, 2));
        assert_eq!(b.state(), BreakerState::Closed);
        fail_n(&b, 1);
        assert_eq!(b.state(), BreakerState::Open, "3 of 6 = 50 %");
        assert_eq!(b.stats().window_requests, 0, "a trip starts a fresh window");
    }

    #[test]
    fn force_open_and_reset() {
        let (b, clock) = mk(cfg());
        b.force_open();
        clock.advance(1_000 * SEC);
        assert!(!b.try_acquire());
        assert_eq!(b.state(), BreakerState::Open);
        b.reset();
        assert!(b.try_acquire());
        assert_eq!(b.stats().trips, 0);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let (b, _) = mk(cfg());
        fail_n(&b, 3);
        b.record_failure();
        b.record_success();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.stats().trips, 1);
    }

    #[test]
    fn half_open_probe_limit_under_threads() {
        let (b, clock) = mk(BreakerConfig {
            half_open_probes: 4,
            ..cfg()
        });
        fail_n(&b, 3);
        clock.advance(10 * SEC);
        let b = Arc::new(b);
        let admitted = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                let admitted = admitted.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if b.try_acquire() {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 4);
        assert_eq!(b.outstanding_probes(), 4);
    }

    #[test]
    fn concurrent_probes_cycle_never_exceed_k() {
        let (b, clock) = mk(BreakerConfig {
            half_open_probes: 3,
            ..cfg()
        });
        fail_n(&b, 3);
        clock.advance(10 * SEC);
        let b = Arc::new(b);
        let live = Arc::new(AtomicU32::new(0));
        let max_seen = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (b, live, max_seen) = (b.clone(), live.clone(), max_seen.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if b.try_acquire() {
                            let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                            max_seen.fetch_max(n, Ordering::SeqCst);
                            live.fetch_sub(1, Ordering::SeqCst);
                            b.record_cancelled();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(max_seen.load(Ordering::SeqCst) <= 3);
        assert_eq!(b.outstanding_probes(), 0);
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Acquire,
        Success,
        Failure,
        Cancel,
        Advance(u64),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => Just(Ev::Acquire),
            3 => Just(Ev::Success),
            3 => Just(Ev::Failure),
            1 => Just(Ev::Cancel),
            2 => (0u64..15 * SEC).prop_map(Ev::Advance),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_random_event_sequences(
            events in proptest::collection::vec(ev(), 1..300),
            k in 1u32..4,
            cf in 0u32..5,
            rate in prop_oneof![Just(0.0), 0.1f64..1.0],
        ) {
            let c = BreakerConfig {
                consecutive_failures: cf, error_rate: rate, min_requests: 3,
                half_open_probes: k, ..cfg()
            };
            let (b, clock) = mk(c.clone());
            // Requests holding a permit, to report exactly once as the contract says.
            let mut held: u32 = 0;
            for e in events {
                let before = b.stats();
                match e {
                    Ev::Acquire => {
                        let ok = b.try_acquire();
                        if before.state == BreakerState::Open {
                            prop_assert!(!ok, "open admitted before open_until");
                            prop_assert!(clock.now_nanos() < before.open_until_nanos);
                        }
                        if before.state == BreakerState::Closed {
                            prop_assert!(ok);
                        }
                        if ok { held += 1; }
                    }
                    Ev::Success | Ev::Failure | Ev::Cancel if held > 0 => {
                        held -= 1;
                        match e {
                            Ev::Success => b.record_success(),
                            Ev::Failure => b.record_failure(),
                            _ => b.record_cancelled(),
                        }
                    }
                    Ev::Advance(n) => clock.advance(n),
                    _ => {}
                }
                prop_assert!(b.outstanding_probes() <= k);
                let s = b.stats();
                prop_assert!(s.window_failures <= s.window_requests);
                if s.state == BreakerState::Open {
                    let left = s.open_until_nanos - clock.now_nanos();
                    prop_assert!(left <= c.max_open_nanos);
                }
                if s.trips > 0 {
                    prop_assert!(c.cooldown_nanos(s.trips) <= c.max_open_nanos);
                }
            }
        }
    }
}
