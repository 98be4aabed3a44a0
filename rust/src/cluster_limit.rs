//! Rate limits shared by every gateway (`rate_limit: {scope: cluster}`), enforced from leases.
//!
//! The shared GCRA lives in Redis; the request path never waits for it. Each gateway holds, per
//! (route, key), a local balance of tokens leased from the shared bucket. A request spends one
//! with a CAS on an atomic; nothing else happens on the request path. The host process runs a
//! lease loop (Python, `agentgate.gateway.leases`) that reads the demand per key
//! ([`LeaseBoard::wait`] + [`ClusterLimit::take`]), leases batches from Redis with one atomic
//! script per key, and hands them back ([`ClusterLimit::grant`]).
//!
//! Bounds (per key, across `G` gateways):
//! - A key may spend up to `credit` tokens that are not leased yet (so the first request of a
//!   new key is not refused while its first lease is on its way, and a late lease round does
//!   not refuse at once). The lease loop pays that debt out of the shared bucket before it
//!   leases anything new, and the credit comes back only as it is paid, so at any time the
//!   gateways owe at most `G·credit`: over any span `t` they admit at most
//!   `rate·t + burst + G·credit`. `credit` is the lease slack: `max(1, ceil(rate · 50 ms))`,
//!   at most the burst.
//! - Leased tokens unspent after their lease's TTL are void: that can only under-admit.
//!
//! When the lease loop says Redis is down, or has not reported for [`STALE_AFTER_NANOS`], the
//! route's `on_redis_error` applies: `open` admits, `closed` refuses with 503, `local` enforces
//! the whole limit in this gateway alone (each gateway then admits up to `rate`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::clock::{AnyClock, Clock};
use crate::engine::{reject, Rejection};
use crate::limiter::RateLimiter;

const SHARDS: usize = 16;
/// Without a report from the lease loop for this long, Redis counts as unreachable.
pub const STALE_AFTER_NANOS: u64 = 3_000_000_000;
/// A bucket with no demand and nothing leased or owed for this many takes is dropped.
const IDLE_TAKES: u32 = 50;
/// How much not-yet-leased spending a key may run ahead: this many seconds of its rate.
const CREDIT_SECONDS: f64 = 0.050;

/// What a cluster route does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Admit every request.
    Open,
    /// Refuse every request (503).
    Closed,
    /// Enforce the whole limit in this gateway alone.
    Local,
}

impl std::str::FromStr for OnRedisError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(OnRedisError::Open),
            "closed" => Ok(OnRedisError::Closed),
            "local" => Ok(OnRedisError::Local),
            other => Err(format!("{other:?}: expected open, closed or local")),
        }
    }
}

/// Whether the lease loop reaches Redis, as it last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// Leases flow.
    Up,
    /// The last lease round failed.
    Down,
}

impl RedisState {
    /// Lower-case name: "up", "down".
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Up => "up",
            RedisState::Down => "down",
        }
    }
}

impl std::str::FromStr for RedisState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "up" => Ok(RedisState::Up),
            "down" => Ok(RedisState::Down),
            other => Err(format!("{other:?}: expected up or down")),
        }
    }
}

// 0: no report yet (counts as down)
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Shared by every cluster route of an engine: Redis reachability and the loop's wake-up.
#[derive(Default)]
pub struct LeaseBoard {
    state: AtomicU8,
    contact: AtomicU64,
    // set by a request that wants the loop; the mutex only orders it with the loop's wait
    hungry: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl LeaseBoard {
    /// The lease loop's report (also its heartbeat).
    pub fn report(&self, state: RedisState, now: u64) {
        let s = match state {
            RedisState::Up => UP,
            RedisState::Down => DOWN,
        };
        self.state.store(s, Ordering::Release);
        self.contact.store(now, Ordering::Release);
    }

    /// Whether leases can be relied on now (a recent report said Redis is up).
    pub fn up(&self, now: u64) -> bool {
        self.state.load(Ordering::Acquire) == UP
            && now.saturating_sub(self.contact.load(Ordering::Acquire)) < STALE_AFTER_NANOS
    }

    /// The state in force now (a stale or missing report counts as down).
    pub fn state(&self, now: u64) -> RedisState {
        if self.up(now) {
            RedisState::Up
        } else {
            RedisState::Down
        }
    }

    fn signal(&self) {
        // one atomic load while the loop has not taken the last signal yet
        if self.hungry.load(Ordering::Relaxed) || self.hungry.swap(true, Ordering::AcqRel) {
            return;
        }
        let _g = self.lock.lock();
        self.wake.notify_all();
    }

    /// Blocks until some key runs low on leased tokens, or `timeout`; true if one did.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut g = self.lock.lock();
        if !self.hungry.load(Ordering::Acquire) && !timeout.is_zero() {
            self.wake.wait_for(&mut g, timeout);
        }
        self.hungry.swap(false, Ordering::AcqRel)
    }
}

struct Bucket {
    /// Leased tokens not spent yet; negative: spent ahead of a lease (owed to Redis).
    tokens: AtomicI64,
    /// The lease loop wants to hear when `tokens` falls to this.
    refill_at: AtomicI64,
    /// Positive tokens are void after this (clock nanos).
    expires: AtomicU64,
    /// Redis said no token before this (clock nanos), for Retry-After.
    empty_until: AtomicU64,
    /// Requests since the last take.
    asked: AtomicU64,
    idle_takes: AtomicU32,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            tokens: AtomicI64::new(0),
            refill_at: AtomicI64::new(0),
            expires: AtomicU64::new(0),
            empty_until: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            idle_takes: AtomicU32::new(0),
        }
    }

    /// Voids positive tokens of an expired lease (debt stays: it was spent).
    fn expire(&self, now: u64) {
        if now <= self.expires.load(Ordering::Acquire) {
            return;
        }
        let mut cur = self.tokens.load(Ordering::Acquire);
        while cur > 0 {
            match self
                .tokens
                .compare_exchange_weak(cur, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Spends one token unless the balance is at `-credit`; the balance after, if spent.
    fn spend(&self, credit: i64) -> Option<i64> {
        let mut cur = self.tokens.load(Ordering::Acquire);
        loop {
            if cur <= -credit {
                return None;
            }
            match self.tokens.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(cur - 1),
                Err(actual) => cur = actual,
            }
        }
    }
}

type Shard = RwLock<HashMap<Box<str>, Bucket>>;

/// Decisions of one cluster route since the last take.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decisions {
    /// Admitted from leased tokens.
    pub allowed: u64,
    /// Admitted ahead of a lease (paid to Redis by a later one).
    pub borrowed: u64,
    /// Refused: no leased token left.
    pub limited: u64,
    /// Admitted while Redis was unreachable (`open`).
    pub fail_open: u64,
    /// Refused while Redis was unreachable (`closed`).
    pub fail_closed: u64,
    /// Decided by the local limiter while Redis was unreachable (`local`).
    pub local: u64,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    borrowed: AtomicU64,
    limited: AtomicU64,
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    local: AtomicU64,
}

impl Counters {
    fn take(&self) -> Decisions {
        let t = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        Decisions {
            allowed: t(&self.allowed),
            borrowed: t(&self.borrowed),
            limited: t(&self.limited),
            fail_open: t(&self.fail_open),
            fail_closed: t(&self.fail_closed),
            local: t(&self.local),
        }
    }
}

/// One key's demand, as the lease loop reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDemand {
    /// The limit key (API key id, tenant, IP or header value).
    pub key: String,
    /// Requests since the last take (admitted or not).
    pub asked: u64,
    /// Leased tokens left; negative: spent ahead of a lease and owed.
    pub tokens: i64,
}

/// One grant of the lease loop to a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The limit key.
    pub key: String,
    /// Tokens added to the balance (the owed ones the lease paid for plus the new ones).
    pub tokens: i64,
    /// Signal the loop when the balance falls to this.
    pub refill_at: i64,
    /// How long the lease's tokens stay valid.
    pub ttl: Duration,
    /// Redis has no more tokens for this key before this long.
    pub retry_after: Duration,
}

/// A route's cluster-scoped limit in this gateway; see the module docs.
pub struct ClusterLimit {
    rate: f64,
    burst: u32,
    credit: i64,
    on_error: OnRedisError,
    /// The local limiter of the same quota: the `local` fallback, and the policy header.
    local: Arc<RateLimiter>,
    board: Arc<LeaseBoard>,
    shards: Box<[Shard]>,
    per_shard: usize,
    hasher: RandomState,
    clock: AnyClock,
    counters: Counters,
}

impl std::fmt::Debug for ClusterLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLimit")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("credit", &self.credit)
            .field("on_error", &self.on_error)
            .finish()
    }
}

impl ClusterLimit {
    /// A cluster limit of `local`'s quota holding at most `max_keys` keys.
    pub fn new(
        local: Arc<RateLimiter>,
        on_error: OnRedisError,
        board: Arc<LeaseBoard>,
        max_keys: usize,
        clock: AnyClock,
    ) -> Self {
        let q = *local.quota();
        let credit = (q.per_second() * CREDIT_SECONDS)
            .ceil()
            .clamp(1.0, f64::from(q.burst())) as i64;
        ClusterLimit {
            rate: q.per_second(),
            burst: q.burst(),
            credit,
            on_error,
            local,
            board,
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: (max_keys / SHARDS).max(1),
            hasher: RandomState::new(),
            clock,
            counters: Counters::default(),
        }
    }

    /// Sustained rate per second of the shared limit.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Shared bucket size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Tokens a key may spend ahead of its lease in this gateway (the lease slack).
    pub fn credit(&self) -> i64 {
        self.credit
    }

    /// The board this limit reports to.
    pub fn board(&self) -> &Arc<LeaseBoard> {
        &self.board
    }

    fn shard(&self, key: &str) -> &Shard {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// One request of `key`: `Ok` with the RateLimit header values, or the refusal.
    pub fn admit(&self, key: &str, route: &str) -> Result<(String, String), Rejection> {
        let now = self.clock.now_nanos();
        if !self.board.up(now) {
            return self.fallback(key, route);
        }
        let shard = self.shard(key);
        {
            let map = shard.read();
            if let Some(b) = map.get(key) {
                return self.spend(b, now, route);
            }
        }
        let mut map = shard.write();
        if !map.contains_key(key) && map.len() >= self.per_shard {
            map.retain(|_, b| !idle(b));
            if map.len() >= self.per_shard {
                // a flood of distinct keys: those beyond the cap are limited locally
                drop(map);
                return self.local_check(key, route);
            }
        }
        let b = map.entry(Box::from(key)).or_insert_with(Bucket::new);
        self.spend(b, now, route)
    }

    fn spend(&self, b: &Bucket, now: u64, route: &str) -> Result<(String, String), Rejection> {
        b.asked.fetch_add(1, Ordering::Relaxed);
        b.expire(now);
        // while Redis said its bucket is empty, asking again is pointless: no wake-up then
        let empty_until = b.empty_until.load(Ordering::Relaxed);
        match b.spend(self.credit) {
            Some(left) => {
                let c = if left >= 0 {
                    &self.counters.allowed
                } else {
                    &self.counters.borrowed
                };
                c.fetch_add(1, Ordering::Relaxed);
                if left <= b.refill_at.load(Ordering::Relaxed) && now >= empty_until {
                    self.board.signal();
                }
                Ok(self.headers(left.max(0)))
            }
            None => {
                self.counters.limited.fetch_add(1, Ordering::Relaxed);
                if now >= empty_until {
                    self.board.signal();
                }
                let wait = empty_until.saturating_sub(now);
                let mut r = reject(
                    429,
                    "rate_limited",
                    format!("cluster rate limit of route {route:?} exceeded"),
                );
                let (policy, state) = self.headers(0);
                r.headers.push(("ratelimit-policy", policy));
                r.headers.push(("ratelimit", state));
                r.headers.push((
                    "retry-after",
                    wait.div_ceil(1_000_000_000).max(1).to_string(),
                ));
                Err(r)
            }
        }
    }

    fn headers(&self, remaining: i64) -> (String, String) {
        (
            self.local.policy_header().to_owned(),
            format!("\"default\";r={remaining}"),
        )
    }

    fn fallback(&self, key: &str, route: &str) -> Result<(String, String), Rejection> {
        match self.on_error {
            OnRedisError::Open => {
                self.counters.fail_open.fetch_add(1, Ordering::Relaxed);
                Ok(self.headers(i64::from(self.burst)))
            }
            OnRedisError::Closed => {
                self.counters.fail_closed.fetch_add(1, Ordering::Relaxed);
                let mut r = reject(
                    503,
                    "rate_limit_unavailable",
                    format!("route {route:?}: the cluster rate limit cannot reach Redis"),
                );
                r.headers.push(("retry-after", "1".into()));
                Err(r)
            }
            OnRedisError::Local => self.local_check(key, route),
        }
    }

    fn local_check(&self, key: &str, route: &str) -> Result<(String, String), Rejection> {
        self.counters.local.fetch_add(1, Ordering::Relaxed);
        let d = self.local.check(key, 1);
        let headers = self.local.headers(&d);
        if d.allowed {
            return Ok(headers);
        }
        let mut r = reject(
            429,
            "rate_limited",
            format!("rate limit of route {route:?} exceeded"),
        );
        r.headers.push(("ratelimit-policy", headers.0));
        r.headers.push(("ratelimit", headers.1));
        if let Some(after) = RateLimiter::retry_after_header(&d) {
            r.headers.push(("retry-after", after));
        }
        Err(r)
    }

    /// The keys the lease loop should look at (asked since the last take, owing, or at or
    /// below their refill mark), and the decisions since the last take. Idle keys with
    /// nothing leased or owed are dropped.
    pub fn take(&self) -> (Vec<KeyDemand>, Decisions) {
        let now = self.clock.now_nanos();
        let mut out = Vec::new();
        let mut idle_seen = false;
        for shard in self.shards.iter() {
            let map = shard.read();
            for (k, b) in map.iter() {
                b.expire(now);
                let asked = b.asked.swap(0, Ordering::AcqRel);
                let tokens = b.tokens.load(Ordering::Acquire);
                if asked == 0 {
                    let n = b.idle_takes.fetch_add(1, Ordering::Relaxed) + 1;
                    idle_seen |= n >= IDLE_TAKES && tokens == 0;
                } else {
                    b.idle_takes.store(0, Ordering::Relaxed);
                }
                if asked > 0 || tokens < 0 || tokens <= b.refill_at.load(Ordering::Relaxed) {
                    if asked == 0 && tokens == 0 {
                        continue; // nothing asked, nothing owed: no lease wanted
                    }
                    out.push(KeyDemand {
                        key: k.to_string(),
                        asked,
                        tokens,
                    });
                }
            }
        }
        if idle_seen {
            for shard in self.shards.iter() {
                shard.write().retain(|_, b| !idle(b));
            }
        }
        (out, self.counters.take())
    }

    /// Adds leased tokens to keys (a key dropped meanwhile comes back).
    pub fn grant(&self, grants: &[Grant]) {
        let now = self.clock.now_nanos();
        for g in grants {
            let shard = self.shard(&g.key);
            let apply = |b: &Bucket| {
                b.expire(now);
                b.tokens.fetch_add(g.tokens, Ordering::AcqRel);
                let ttl = u64::try_from(g.ttl.as_nanos()).unwrap_or(u64::MAX);
                b.expires.store(now.saturating_add(ttl), Ordering::Release);
                b.refill_at.store(g.refill_at, Ordering::Relaxed);
                let wait = u64::try_from(g.retry_after.as_nanos()).unwrap_or(u64::MAX);
                b.empty_until
                    .store(now.saturating_add(wait), Ordering::Relaxed);
                b.idle_takes.store(0, Ordering::Relaxed);
            };
            {
                let map = shard.read();
                if let Some(b) = map.get(g.key.as_str()) {
                    apply(b);
                    continue;
                }
            }
            let mut map = shard.write();
            apply(
                map.entry(Box::from(g.key.as_str()))
                    .or_insert_with(Bucket::new),
            );
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cluster limit of a route's `rate_limit` (None for `scope: local`): `old` (the route's
/// limit of the previous snapshot, same rule) is kept with its leases.
pub fn compile(
    rule: &crate::config::RateLimit,
    local: &Arc<RateLimiter>,
    old: Option<&Arc<ClusterLimit>>,
    board: &Arc<LeaseBoard>,
    clock: &AnyClock,
) -> Result<Option<Arc<ClusterLimit>>, String> {
    let on_error = rule
        .on_redis_error
        .parse::<OnRedisError>()
        .map_err(|e| format!("on_redis_error: {e}"))?;
    match rule.scope.as_str() {
        "local" => Ok(None),
        "cluster" => Ok(Some(match old {
            Some(o) if Arc::ptr_eq(&o.local, local) => o.clone(),
            _ => Arc::new(ClusterLimit::new(
                local.clone(),
                on_error,
                board.clone(),
                crate::engine::LIMITER_MAX_KEYS,
                clock.clone(),
            )),
        })),
        other => Err(format!("scope: {other:?}: expected local or cluster")),
    }
}

/// Nothing asked for a while and nothing leased or owed: the bucket can go.
fn idle(b: &Bucket) -> bool {
    b.idle_takes.load(Ordering::Relaxed) >= IDLE_TAKES
        && b.asked.load(Ordering::Relaxed) == 0
        && b.tokens.load(Ordering::Relaxed) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::Quota;

    fn limit(rate: f64, burst: u32, on_error: OnRedisError) -> (ClusterLimit, ManualClock) {
        let clock = ManualClock::new();
        let any = AnyClock::Manual(clock.clone());
        let local = Arc::new(
            RateLimiter::new(Quota::new(rate, burst).unwrap(), 1000, any.clone()).unwrap(),
        );
        let board = Arc::new(LeaseBoard::default());
        (ClusterLimit::new(local, on_error, board, 1000, any), clock)
    }

    fn grant(key: &str, tokens: i64) -> Grant {
        Grant {
            key: key.into(),
            tokens,
            refill_at: 2,
            ttl: Duration::from_secs(1),
            retry_after: Duration::ZERO,
        }
    }

    #[test]
    fn spends_leased_tokens_then_borrows_credit_then_refuses() {
        let (c, clock) = limit(20.0, 10, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        assert_eq!(c.credit(), 1);
        c.grant(&[grant("k", 3)]);
        for _ in 0..3 {
            assert!(c.admit("k", "r").is_ok());
        }
        assert!(c.admit("k", "r").is_ok(), "one token of credit");
        let r = c.admit("k", "r").unwrap_err();
        assert_eq!((r.status, r.reason), (429, "rate_limited"));
        assert!(r.headers.iter().any(|(n, _)| *n == "retry-after"));
        let (demand, d) = c.take();
        assert_eq!(
            demand,
            vec![KeyDemand {
                key: "k".into(),
                asked: 5,
                tokens: -1
            }]
        );
        assert_eq!((d.allowed, d.borrowed, d.limited), (3, 1, 1));
        // the lease pays the debt and adds two
        c.grant(&[grant("k", 3)]);
        assert!(c.admit("k", "r").is_ok());
        assert!(c.admit("k", "r").is_ok());
        assert!(c.admit("k", "r").is_ok()); // credit again
        assert!(c.admit("k", "r").is_err());
    }

    #[test]
    fn expired_leases_are_void_but_debt_stays() {
        let (c, clock) = limit(20.0, 10, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        c.grant(&[grant("k", 5)]);
        clock.advance_secs(1.5);
        c.board.report(RedisState::Up, clock.now_nanos());
        assert!(c.admit("k", "r").is_ok()); // borrowed: the 5 are void
        assert!(c.admit("k", "r").is_err());
        assert_eq!(c.take().0[0].tokens, -1);
        clock.advance_secs(5.0);
        c.board.report(RedisState::Up, clock.now_nanos());
        assert_eq!(c.take().0[0].tokens, -1, "debt never expires");
    }

    #[test]
    fn low_balance_wakes_the_lease_loop() {
        let (c, clock) = limit(1000.0, 100, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        assert!(!c.board.wait(Duration::ZERO));
        c.grant(&[grant("k", 5)]);
        c.admit("k", "r").unwrap(); // 4 left, above 2
        assert!(!c.board.wait(Duration::ZERO));
        c.admit("k", "r").unwrap();
        c.admit("k", "r").unwrap(); // 2 left: at the mark
        assert!(c.board.wait(Duration::ZERO));
        assert!(!c.board.wait(Duration::ZERO), "one signal, taken once");
    }

    #[test]
    fn unreachable_redis_applies_on_redis_error() {
        for (mode, ok, status) in [
            (OnRedisError::Open, 100, None),
            (OnRedisError::Closed, 0, Some(503)),
            (OnRedisError::Local, 10, Some(429)),
        ] {
            let (c, clock) = limit(100.0, 10, mode);
            // never reported: down
            let got: Vec<_> = (0..100).map(|_| c.admit("k", "r")).collect();
            assert_eq!(got.iter().filter(|r| r.is_ok()).count(), ok, "{mode:?}");
            assert_eq!(
                got.iter().find_map(|r| r.as_ref().err()).map(|r| r.status),
                status
            );
            // a fresh report of Up: leases rule again
            c.board.report(RedisState::Up, clock.now_nanos());
            c.grant(&[grant("k", 1)]);
            assert!(c.admit("k", "r").is_ok());
            // a stale report counts as down
            clock.advance(STALE_AFTER_NANOS);
            assert_eq!(c.board.state(clock.now_nanos()), RedisState::Down);
            c.board.report(RedisState::Down, clock.now_nanos());
            assert_eq!(c.board.state(clock.now_nanos()), RedisState::Down);
        }
    }

    #[test]
    fn no_wake_up_while_redis_has_no_room() {
        let (c, clock) = limit(20.0, 10, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        let mut g = grant("k", 1);
        g.retry_after = Duration::from_millis(100);
        c.grant(&[g]);
        c.admit("k", "r").unwrap(); // 0 left, at the mark, but Redis is empty for 100 ms
        c.admit("k", "r").unwrap(); // credit
        assert!(c.admit("k", "r").is_err());
        assert!(!c.board.wait(Duration::ZERO));
        clock.advance_secs(0.2);
        c.board.report(RedisState::Up, clock.now_nanos());
        assert!(c.admit("k", "r").is_err());
        assert!(
            c.board.wait(Duration::ZERO),
            "room again: the refusal wakes the loop"
        );
    }

    #[test]
    fn idle_keys_are_dropped() {
        let (c, clock) = limit(100.0, 10, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        c.grant(&[grant("a", 1)]);
        c.admit("a", "r").unwrap(); // 0 left
        assert_eq!(c.len(), 1);
        for _ in 0..IDLE_TAKES + 1 {
            c.take();
        }
        assert!(c.is_empty());
    }

    #[test]
    fn concurrent_spends_never_exceed_the_grant_plus_credit() {
        let (c, clock) = limit(100.0, 10, OnRedisError::Closed);
        c.board.report(RedisState::Up, clock.now_nanos());
        c.grant(&[grant("k", 1000)]);
        let c = Arc::new(c);
        let admitted: usize = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..500).filter(|_| c.admit("k", "r").is_ok()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted as i64, 1000 + c.credit());
    }
}
