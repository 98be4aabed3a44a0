//! Priority admission: a concurrency limit with a bounded, class-ordered waiting queue.
//!
//! This is a synchronous state machine; the waiting happens in the caller (asyncio in Python).
//! - [`Admission::acquire`] admits at once while under `max_concurrency` and nobody waits (one
//!   CAS, no mutex), otherwise queues the request and returns a ticket. When the queue is full, a
//!   request of class `c` evicts the newest waiter of the lowest class below `c` (low is shed
//!   first); the evicted tickets are returned in `shed` for the caller to fail. If nothing lower
//!   waits, the request is rejected: [`Reason::Shed`] if higher classes are waiting (it lost to
//!   more important traffic), else [`Reason::QueueFull`].
//! - [`Admission::release`] frees a slot; if someone waits, the slot passes directly to the next
//!   ticket (critical first, FIFO within a class), which is returned for the caller to wake.
//! - [`Admission::cancel`] removes a waiting ticket; `false` means the ticket no longer waits:
//!   it was granted (the caller now holds a slot and must `release` it) or it was already
//!   reported as shed or expired.
//! - Tickets waiting longer than their class's `max_wait_nanos` (0 = no limit) are never granted:
//!   `acquire`/`release` skip them and [`Admission::expire`] reports them, once.
//!
//! Every ticket ends exactly once: granted by `release`, listed in `shed`, returned by `expire`,
//! or removed by a `cancel` that returned `true`.

use crate::clock::{AnyClock, Clock};
use crate::setting::{secs_to_nanos, SettingError};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Request class, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Served first, never shed by others.
    Critical = 0,
    /// Above normal traffic.
    High = 1,
    /// The default class.
    Normal = 2,
    /// Shed first under pressure.
    Low = 3,
}

impl Priority {
    /// All classes, most important first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    /// Parses "critical", "high", "normal" or "low", case-insensitively.
    fn from_str(s: &str) -> Result<Self, String> {
        for p in Priority::ALL {
            if s.eq_ignore_ascii_case(p.as_str()) {
                return Ok(p);
            }
        }
        Err(format!(
            "priority must be one of critical, high, normal, low; got {s:?}"
        ))
    }
}

/// Limits of an [`Admission`] controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Requests allowed in flight at once (>= 1).
    pub max_concurrency: u32,
    /// Requests allowed to wait, all classes together (0 = never queue).
    pub max_queue: u32,
    /// Longest wait per class, indexed by `Priority as usize`; 0 = no limit.
    pub max_wait_nanos: [u64; 4],
}

impl AdmissionConfig {
    /// Checks the fields; the error names the bad one.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.max_concurrency == 0 {
            return Err(SettingError::new("max_concurrency", "must be >= 1, got 0"));
        }
        Ok(())
    }

    /// A config with the longest wait per class in seconds (indexed like [`Priority::ALL`]):
    /// `None` or infinite means no limit; 0 means a waiter expires at once.
    pub fn with_wait_secs(
        max_concurrency: u32,
        max_queue: u32,
        max_wait: [Option<f64>; 4],
    ) -> Result<Self, SettingError> {
        let mut max_wait_nanos = [0; 4];
        for (slot, (class, secs)) in max_wait_nanos
            .iter_mut()
            .zip(Priority::ALL.iter().zip(max_wait))
        {
            *slot = match secs {
                None => 0,
                Some(s) if s == f64::INFINITY => 0,
                // 0 stands for "no limit" in the nanos field, so "expire at once" is 1 ns.
                Some(s) => secs_to_nanos(&format!("max_wait[{:?}]", class.as_str()), s)?.max(1),
            };
        }
        let config = AdmissionConfig {
            max_concurrency,
            max_queue,
            max_wait_nanos,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The queue is full of requests of this class (or there is no queue).
    QueueFull,
    /// The queue is full and holds more important requests; this one lost.
    Shed,
}

impl Reason {
    /// Snake-case name: "queue_full", "shed".
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::QueueFull => "queue_full",
            Reason::Shed => "shed",
        }
    }
}

/// Why a request ended without a slot, as its caller reports it: refused on arrival
/// ([`Reason`]) or, after waiting, its class's max wait passed ([`Admission::expire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Refused on arrival: the queue is full of requests of this class (or there is none).
    QueueFull,
    /// Refused on arrival, or evicted while waiting, in favour of more important requests.
    Shed,
    /// Waited longer than its class's max wait.
    Timeout,
}

impl Refusal {
    /// Snake-case name: "queue_full", "shed", "timeout".
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::Shed => "shed",
            Refusal::Timeout => "timeout",
        }
    }
}

impl From<Reason> for Refusal {
    fn from(r: Reason) -> Self {
        match r {
            Reason::QueueFull => Refusal::QueueFull,
            Reason::Shed => Refusal::Shed,
        }
    }
}

/// What happened to an acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The caller holds a slot now and must `release` it.
    Admit,
    /// The caller waits on this ticket (woken by `release`, or ended by shed/expire/cancel).
    Queued(u64),
    /// Refused.
    Reject(Reason),
}

/// Result of [`Admission::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireOutcome {
    /// The decision for this request.
    pub decision: Decision,
    /// Tickets of lower-class waiters evicted to make room; the caller must fail them.
    pub shed: Vec<u64>,
}

struct Queues {
    classes: [VecDeque<(u64, u64)>; 4],
    len: usize,
    expired: Vec<u64>,
}

/// A thread-safe priority admission controller; see the module docs.
pub struct Admission {
    config: AdmissionConfig,
    clock: AnyClock,
    in_flight: AtomicU32,
    // Queued tickets plus acquirers about to queue: a release that sees 0 need not look at the
    // queue (see `acquire` for why this cannot lose a wake-up).
    waiting: AtomicU32,
    next_ticket: AtomicU64,
    queues: Mutex<Queues>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("in_flight", &self.in_flight())
            .field("depths", &self.depths())
            .finish()
    }
}

impl Admission {
    /// A controller; a `max_concurrency` of 0 is raised to 1. Use [`Admission::try_new`] to
    /// reject invalid configs instead.
    pub fn new(mut config: AdmissionConfig, clock: AnyClock) -> Self {
        config.max_concurrency = config.max_concurrency.max(1);
        Self {
            config,
            clock,
            in_flight: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            next_ticket: AtomicU64::new(1),
            queues: Mutex::new(Queues {
                classes: Default::default(),
                len: 0,
                expired: Vec::new(),
            }),
        }
    }

    /// A controller, or the validation error.
    pub fn try_new(config: AdmissionConfig, clock: AnyClock) -> Result<Self, SettingError> {
        config.validate()?;
        Ok(Self::new(config, clock))
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    #[inline]
    fn try_take(&self) -> bool {
        let max = self.config.max_concurrency;
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v < max).then_some(v + 1)
            })
            .is_ok()
    }

    /// Asks for a slot for a request of class `p`.
    pub fn acquire(&self, p: Priority) -> AcquireOutcome {
        if self.waiting.load(Ordering::SeqCst) == 0 && self.try_take() {
            return AcquireOutcome {
                decision: Decision::Admit,
                shed: Vec::new(),
            };
        }
        let now = self.clock.now_nanos();
        let mut q = self.queues.lock();
        // Announce the intent to wait before the last look at in_flight: a concurrent release
        // either frees the slot before this look (we take it) or sees waiting > 0 afterwards and
        // comes for the queue, which it can only read once we have queued.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.try_take() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return AcquireOutcome {
                decision: Decision::Admit,
                shed: Vec::new(),
            };
        }
        let max_queue = self.config.max_queue as usize;
        if q.len >= max_queue {
            self.purge_expired(&mut q, now);
        }
        let mut shed = Vec::new();
        if q.len >= max_queue {
            let victim = (p.index() + 1..4)
                .rev()
                .find_map(|c| q.classes.get_mut(c).and_then(|d| d.pop_back()));
            match victim {
                Some((t, _)) if max_queue > 0 => {
                    q.len -= 1;
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    shed.push(t);
                }
                _ => {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    let higher = q.classes.iter().take(p.index()).any(|d| !d.is_empty());
                    let reason = if higher {
                        Reason::Shed
                    } else {
                        Reason::QueueFull
                    };
                    return AcquireOutcome {
                        decision: Decision::Reject(reason),
                        shed,
                    };
                }
            }
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = q.classes.get_mut(p.index()) {
            d.push_back((ticket, now));
        }
        q.len += 1;
        AcquireOutcome {
            decision: Decision::Queued(ticket),
            shed,
        }
    }

    /// Moves waiters that exceeded their class's max wait to the expired list.
    fn purge_expired(&self, q: &mut Queues, now: u64) {
        let Queues {
            classes,
            len,
            expired,
        } = q;
        for (d, &max_wait) in classes.iter_mut().zip(self.config.max_wait_nanos.iter()) {
            if max_wait == 0 {
                continue;
            }
            while let Some(&(t, at)) = d.front() {
                if now.saturating_sub(at) < max_wait {
                    break;
                }
                d.pop_front();
                *len -= 1;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                expired.push(t);
            }
        }
    }

    /// Frees a slot. If a ticket waits, the slot passes to it and the ticket is returned: the
    /// caller wakes that waiter, which now holds the slot.
    pub fn release(&self) -> Option<u64> {
        if self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_err()
        {
            // More releases than slots: a caller bug; nothing to hand over.
            return None;
        }
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let now = self.clock.now_nanos();
        let mut q = self.queues.lock();
        self.purge_expired(&mut q, now);
        let c = q.classes.iter().position(|d| !d.is_empty())?;
        // Someone may have taken the freed slot meanwhile; then their release hands it over.
        if !self.try_take() {
            return None;
        }
        let (t, _) = q.classes.get_mut(c)?.pop_front()?;
        q.len -= 1;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(t)
    }

    /// Removes a waiting ticket. `true`: it was waiting (or expired and not yet reported) and is
    /// gone. `false`: it was granted (the caller must `release`) or already reported.
    pub fn cancel(&self, ticket: u64) -> bool {
        let mut q = self.queues.lock();
        for c in 0..4 {
            let Some(d) = q.classes.get_mut(c) else {
                continue;
            };
            if let Some(pos) = d.iter().position(|&(t, _)| t == ticket) {
                d.remove(pos);
                q.len -= 1;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
        }
        if let Some(pos) = q.expired.iter().position(|&t| t == ticket) {
            q.expired.swap_remove(pos);
            return true;
        }
        false
    }

    /// Tickets whose class max wait has passed, removed from the queue; each is reported once.
    pub fn expire(&self) -> Vec<u64> {
        let now = self.clock.now_nanos();
        let mut q = self.queues.lock();
        self.purge_expired(&mut q, now);
        std::mem::take(&mut q.expired)
    }

    /// Waiting tickets per class, most important first.
    pub fn depths(&self) -> [u32; 4] {
        let q = self.queues.lock();
        let mut out = [0u32; 4];
        for (o, d) in out.iter_mut().zip(q.classes.iter()) {
            *o = u32::try_from(d.len()).unwrap_or(u32::MAX);
        }
        out
    }

    /// Slots currently held.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use Priority::*;

    const SEC: u64 = 1_000_000_000;

    fn mk(conc: u32, queue: u32, waits: [u64; 4]) -> (Admission, ManualClock) {
        let clock = ManualClock::new();
        let cfg = AdmissionConfig {
            max_concurrency: conc,
            max_queue: queue,
            max_wait_nanos: waits,
        };
        (
            Admission::try_new(cfg, AnyClock::Manual(clock.clone())).unwrap(),
            clock,
        )
    }

    fn queued(a: &Admission, p: Priority) -> u64 {
        match a.acquire(p).decision {
            Decision::Queued(t) => t,
            d => panic!("expected queued, got {d:?}"),
        }
    }

    #[test]
    fn parse_priority() {
        assert_eq!("CRITICAL".parse::<Priority>(), Ok(Critical));
        assert_eq!("Low".parse::<Priority>(), Ok(Low));
        let e = "urgent".parse::<Priority>().unwrap_err();
        assert!(e.contains("urgent") && e.contains("critical"), "{e}");
        let cfg = AdmissionConfig {
            max_concurrency: 0,
            max_queue: 1,
            max_wait_nanos: [0; 4],
        };
        let e = Admission::try_new(cfg, AnyClock::default()).unwrap_err();
        assert_eq!(e.field, "max_concurrency");
    }

    #[test]
    fn waits_in_seconds() {
        let c = AdmissionConfig::with_wait_secs(
            4,
            8,
            [None, Some(f64::INFINITY), Some(0.0), Some(0.5)],
        )
        .unwrap();
        assert_eq!(c.max_wait_nanos, [0, 0, 1, 500_000_000]);
        let e = AdmissionConfig::with_wait_secs(4, 8, [None, None, Some(-1.0), None]).unwrap_err();
        assert_eq!(e.field, "max_wait[\"normal\"]");
        let e = AdmissionConfig::with_wait_secs(0, 8, [None; 4]).unwrap_err();
        assert_eq!(e.field, "max_concurrency");
        assert_eq!(Refusal::from(Reason::Shed).as_str(), "shed");
    }

    #[test]
    fn admits_up_to_the_limit_then_queues() {
        let (a, _) = mk(2, 10, [0; 4]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        assert_eq!(a.acquire(Low).decision, Decision::Admit);
        let t = queued(&a, Normal);
        assert_eq!(a.in_flight(), 2);
        assert_eq!(a.depths(), [0, 0, 1, 0]);
        assert_eq!(a.release(), Some(t));
        assert_eq!(a.in_flight(), 2, "the slot passed to the waiter");
        assert_eq!(a.release(), None);
        assert_eq!(a.release(), None);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.release(), None, "extra release does not underflow");
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn service_order_is_class_first_then_fifo() {
        let (a, _) = mk(1, 10, [0; 4]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        let l1 = queued(&a, Low);
        let n1 = queued(&a, Normal);
        let c1 = queued(&a, Critical);
        let n2 = queued(&a, Normal);
        let h1 = queued(&a, High);
        let c2 = queued(&a, Critical);
        let order: Vec<u64> = (0..6).map(|_| a.release().unwrap()).collect();
        assert_eq!(order, vec![c1, c2, h1, n1, n2, l1]);
        assert_eq!(a.release(), None);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn full_queue_sheds_lowest_class_newest_first() {
        let (a, _) = mk(1, 3, [0; 4]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        let _l1 = queued(&a, Low);
        let l2 = queued(&a, Low);
        let _h1 = queued(&a, High);
        // Full: a normal request evicts the newest low waiter.
        let o = a.acquire(Normal);
        assert!(matches!(o.decision, Decision::Queued(_)));
        assert_eq!(o.shed, vec![l2]);
        assert_eq!(a.depths(), [0, 1, 1, 1]);
        // A low request has nothing lower to evict; higher classes wait → Shed.
        let o = a.acquire(Low);
        assert_eq!(o.decision, Decision::Reject(Reason::Shed));
        assert!(o.shed.is_empty());
        // Critical evicts low before normal.
        let o = a.acquire(Critical);
        assert_eq!(o.shed.len(), 1);
        assert_eq!(a.depths(), [1, 1, 1, 0]);
        let o = a.acquire(Critical);
        assert_eq!(a.depths(), [2, 1, 0, 0]);
        assert_eq!(o.shed.len(), 1);
        // High can only evict normal/low: none left, and critical waits → Shed.
        assert_eq!(a.acquire(High).decision, Decision::Reject(Reason::Shed));
    }

    #[test]
    fn full_queue_of_own_class_is_queue_full() {
        let (a, _) = mk(1, 2, [0; 4]);
        assert_eq!(a.acquire(Critical).decision, Decision::Admit);
        queued(&a, Critical);
        queued(&a, Critical);
        assert_eq!(
            a.acquire(Critical).decision,
            Decision::Reject(Reason::QueueFull)
        );
        let (a, _) = mk(1, 0, [0; 4]);
        assert_eq!(a.acquire(Low).decision, Decision::Admit);
        assert_eq!(
            a.acquire(Critical).decision,
            Decision::Reject(Reason::QueueFull)
        );
    }

    #[test]
    fn max_wait_per_class_expires() {
        let (a, clock) = mk(1, 10, [0, 2 * SEC, SEC, SEC / 2]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        let c = queued(&a, Critical);
        let h = queued(&a, High);
        let n = queued(&a, Normal);
        let l = queued(&a, Low);
        clock.advance(SEC / 2);
        assert_eq!(a.expire(), vec![l]);
        assert_eq!(a.expire(), Vec::<u64>::new(), "reported once");
        clock.advance(SEC / 2);
        assert_eq!(a.expire(), vec![n]);
        clock.advance(SEC);
        assert_eq!(a.expire(), vec![h]);
        clock.advance(1000 * SEC);
        assert!(a.expire().is_empty(), "critical has no limit");
        assert_eq!(a.release(), Some(c));
    }

    #[test]
    fn release_skips_expired_and_cancel_reports_them() {
        let (a, clock) = mk(1, 10, [0, 0, SEC, 0]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        let n1 = queued(&a, Normal);
        clock.advance(SEC);
        let n2 = queued(&a, Normal);
        assert_eq!(a.release(), Some(n2), "n1 expired, skipped");
        assert!(a.cancel(n1), "expired but unreported: cancel ends it");
        assert!(a.expire().is_empty(), "and expire does not report it again");
    }

    #[test]
    fn cancel_semantics() {
        let (a, _) = mk(1, 10, [0; 4]);
        assert_eq!(a.acquire(Normal).decision, Decision::Admit);
        let t1 = queued(&a, Normal);
        let t2 = queued(&a, Normal);
        assert!(a.cancel(t1));
        assert!(!a.cancel(t1), "already cancelled");
        assert_eq!(a.release(), Some(t2));
        assert!(!a.cancel(t2), "granted: caller must release");
        assert_eq!(a.in_flight(), 1);
        assert_eq!(a.release(), None);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn no_lost_wakeups_under_threads() {
        let (a, _) = mk(3, 1000, [0; 4]);
        let a = Arc::new(a);
        let granted = Arc::new(Mutex::new(HashSet::new()));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let a = a.clone();
                let granted = granted.clone();
                std::thread::spawn(move || {
                    let p = Priority::ALL[i % 4];
                    let mut queued = Vec::new();
                    for _ in 0..2000 {
                        match a.acquire(p).decision {
                            Decision::Admit => {
                                assert!(a.in_flight() <= 3);
                                if let Some(t) = a.release() {
                                    granted.lock().insert(t);
                                }
                            }
                            Decision::Queued(t) => queued.push(t),
                            Decision::Reject(r) => panic!("unexpected reject {r:?}"),
                        }
                        // Serve granted tickets on behalf of their (simulated) waiters.
                        let mine: Vec<u64> = queued
                            .iter()
                            .copied()
                            .filter(|t| granted.lock().remove(t))
                            .collect();
                        for t in mine {
                            queued.retain(|&q| q != t);
                            if let Some(n) = a.release() {
                                granted.lock().insert(n);
                            }
                        }
                    }
                    queued
                })
            })
            .collect();
        let mut left: Vec<u64> = Vec::new();
        for h in handles {
            left.extend(h.join().unwrap());
        }
        // Drain: every remaining waiter must eventually be granted by releases.
        loop {
            let g: Vec<u64> = granted.lock().drain().collect();
            if g.is_empty() {
                break;
            }
            for t in g {
                left.retain(|&q| q != t);
                if let Some(n) = a.release() {
                    granted.lock().insert(n);
                }
            }
        }
        assert!(left.is_empty(), "{} waiters never woken", left.len());
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.depths(), [0; 4]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire(u8),
        Release,
        Cancel(usize),
        Expire,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u8..4).prop_map(Op::Acquire),
            3 => Just(Op::Release),
            1 => (0usize..64).prop_map(Op::Cancel),
            1 => Just(Op::Expire),
            1 => (0u64..3 * SEC).prop_map(Op::Advance),
        ]
    }

    #[derive(Debug, PartialEq)]
    enum End {
        Granted,
        Shed,
        Expired,
        Cancelled,
    }

    proptest! {
        #[test]
        fn every_ticket_ends_once_and_limits_hold(
            ops in proptest::collection::vec(op(), 1..300),
            conc in 1u32..4,
            queue in 0u32..6,
        ) {
            let (a, clock) = mk(conc, queue, [0, 2 * SEC, SEC, SEC / 2]);
            let mut held: u32 = 0;
            let mut waiting: Vec<u64> = Vec::new();
            let mut ended: HashMap<u64, End> = HashMap::new();
            let end = |ended: &mut HashMap<u64, End>, t: u64, e: End| -> Result<(), TestCaseError> {
                prop_assert!(ended.insert(t, e).is_none(), "ticket {} ended twice", t);
                Ok(())
            };
            for o in ops {
                match o {
                    Op::Acquire(p) => {
                        let out = a.acquire(Priority::ALL[p as usize]);
                        for t in out.shed {
                            prop_assert!(waiting.contains(&t));
                            waiting.retain(|&w| w != t);
                            end(&mut ended, t, End::Shed)?;
                        }
                        match out.decision {
                            Decision::Admit => held += 1,
                            Decision::Queued(t) => waiting.push(t),
                            Decision::Reject(_) => {}
                        }
                    }
                    Op::Release if held > 0 => {
                        held -= 1;
                        if let Some(t) = a.release() {
                            prop_assert!(waiting.contains(&t));
                            waiting.retain(|&w| w != t);
                            end(&mut ended, t, End::Granted)?;
                            held += 1;
                        }
                    }
                    Op::Cancel(i) if !waiting.is_empty() => {
                        let t = waiting[i % waiting.len()];
                        prop_assert!(a.cancel(t));
                        waiting.retain(|&w| w != t);
                        end(&mut ended, t, End::Cancelled)?;
                    }
                    Op::Expire => {
                        for t in a.expire() {
                            prop_assert!(waiting.contains(&t));
                            waiting.retain(|&w| w != t);
                            end(&mut ended, t, End::Expired)?;
                        }
                    }
                    Op::Advance(n) => clock.advance(n),
                    _ => {}
                }
                prop_assert!(a.in_flight() <= conc);
                prop_assert_eq!(a.in_flight(), held);
                let d = a.depths();
                prop_assert!(d.iter().sum::<u32>() as usize <= waiting.len());
                prop_assert!(d.iter().sum::<u32>() <= queue);
                if !waiting.is_empty() && d.iter().sum::<u32>() > 0 {
                    prop_assert_eq!(held, conc, "waiters while a slot is free");
                }
            }
            // Drain: release everything; every waiter ends exactly once.
            clock.advance(1000 * SEC);
            while held > 0 {
                held -= 1;
                if let Some(t) = a.release() {
                    end(&mut ended, t, End::Granted)?;
                    waiting.retain(|&w| w != t);
                    held += 1;
                }
            }
            for t in a.expire() {
                waiting.retain(|&w| w != t);
                end(&mut ended, t, End::Expired)?;
            }
            // Critical tickets have no max wait: they were granted while draining.
            prop_assert!(waiting.is_empty(), "never ended: {:?}", waiting);
            prop_assert_eq!(a.in_flight(), 0);
        }
    }
}
