//! An admitted request, owned by the core from the decision to its end.
//!
//! [`InFlight`] holds the admission slot and the endpoint of the current attempt.
//! [`InFlight::retry`] ends an attempt and picks the next endpoint under the same slot;
//! [`InFlight::finish`] takes the request by value, so it ends exactly once by construction;
//! dropping it without finishing (the client went away, a task panicked) releases the slot as
//! cancelled. Either way the freed slot passes straight to the next waiter in the queue.
//!
//! [`Queued`] is a request waiting for a slot. Waiting is a oneshot channel per ticket in the
//! pool's [`Waiters`]; every hand-over (grant, shed, give-up) happens under one lock per pool, so
//! a slot granted at the moment its waiter gives up is passed on, never lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, Notify};

use crate::admission::Admission;
use crate::balancer::Outcome;
use crate::engine::{reject, Admitted, Pool, Rejection, RouteRules, Snapshot};
use crate::proxy::upstream::Endpoint;

/// What a waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// The slot is yours.
    Slot,
    /// Evicted by a higher class.
    Shed,
}

enum Entry {
    /// Someone awaits the ticket.
    Waiting(oneshot::Sender<Signal>),
    /// Granted before its waiter registered.
    Granted,
    /// Shed before its waiter registered.
    Shed,
    /// Granted after its waiter gave up: the next grant passes the slot on.
    Abandoned,
}

/// The waiters of one pool's queue, by ticket.
#[derive(Default)]
pub struct Waiters {
    map: parking_lot::Mutex<HashMap<u64, Entry>>,
}

enum Registered {
    Slot,
    Shed,
    Wait(oneshot::Receiver<Signal>),
}

/// What a waiter that gives up is left with.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    /// A slot arrived after all: use it or release it.
    Slot,
    /// Nothing: the ticket is gone.
    Nothing,
}

impl Waiters {
    /// Hands the slot of a `release` to its ticket's waiter, passing it on while nobody takes it.
    pub fn grant(&self, admission: &Admission, mut ticket: Option<u64>) {
        while let Some(t) = ticket {
            let mut map = self.map.lock();
            match map.remove(&t) {
                Some(Entry::Waiting(tx)) => {
                    drop(map);
                    // the receiver lives as long as the entry (give-up removes the entry first)
                    if tx.send(Signal::Slot).is_ok() {
                        return;
                    }
                    ticket = admission.release();
                }
                None => {
                    map.insert(t, Entry::Granted);
                    return;
                }
                Some(Entry::Abandoned | Entry::Granted | Entry::Shed) => {
                    drop(map);
                    ticket = admission.release();
                }
            }
        }
    }

    /// Fails a ticket the admission shed for a higher class.
    pub fn shed(&self, ticket: u64) {
        let mut map = self.map.lock();
        match map.remove(&ticket) {
            Some(Entry::Waiting(tx)) => {
                let _ = tx.send(Signal::Shed);
            }
            None => {
                map.insert(ticket, Entry::Shed);
            }
            Some(_) => {}
        }
    }

    fn register(&self, ticket: u64) -> Registered {
        let mut map = self.map.lock();
        match map.remove(&ticket) {
            Some(Entry::Granted) => Registered::Slot,
            Some(Entry::Shed) => Registered::Shed,
            _ => {
                let (tx, rx) = oneshot::channel();
                map.insert(ticket, Entry::Waiting(tx));
                Registered::Wait(rx)
            }
        }
    }

    /// Stops waiting on `ticket`; says whether a slot is owned after all.
    fn give_up(
        &self,
        admission: &Admission,
        ticket: u64,
        rx: Option<&mut oneshot::Receiver<Signal>>,
    ) -> Owned {
        let mut map = self.map.lock();
        match map.remove(&ticket) {
            Some(Entry::Granted) => Owned::Slot,
            Some(Entry::Shed | Entry::Abandoned) => Owned::Nothing,
            Some(Entry::Waiting(_)) | None => {
                if let Some(rx) = rx {
                    match rx.try_recv() {
                        Ok(Signal::Slot) => return Owned::Slot,
                        Ok(Signal::Shed) => return Owned::Nothing,
                        Err(_) => {}
                    }
                }
                if admission.cancel(ticket) {
                    Owned::Nothing
                } else {
                    // granted by a release whose hand-over has not reached this map yet
                    map.insert(ticket, Entry::Abandoned);
                    Owned::Nothing
                }
            }
        }
    }

    /// Tickets with an entry (waiting or in hand-over), for tests and stats.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when no ticket has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An admitted request: holds a slot of its pool and, during an attempt, an endpoint.
pub struct InFlight {
    snap: Arc<Snapshot>,
    /// What the decision found out (route, identity, priority, RateLimit headers …).
    pub admitted: Admitted,
    pool: Arc<Pool>,
    endpoint: Option<usize>,
    attempt: u32,
    slot: bool,
}

impl InFlight {
    pub(crate) fn new(snap: Arc<Snapshot>, admitted: Admitted, pool: Arc<Pool>, e: usize) -> Self {
        InFlight {
            snap,
            admitted,
            pool,
            endpoint: Some(e),
            attempt: 1,
            slot: true,
        }
    }

    /// A request decided under `snap` that goes to `pool` of a later config (activation).
    pub(crate) fn with_pool(
        snap: Arc<Snapshot>,
        admitted: Admitted,
        pool: Arc<Pool>,
        e: usize,
    ) -> Self {
        Self::new(snap, admitted, pool, e)
    }

    /// The matched route.
    pub fn route(&self) -> &RouteRules {
        // the snapshot is the one the decision used, so the index is valid
        &self.snap.routes()[self.admitted.route]
    }

    /// The snapshot the request was decided under.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// The agent's pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The endpoint of the current attempt.
    pub fn endpoint(&self) -> Option<&Arc<Endpoint>> {
        self.endpoint.and_then(|e| self.pool.endpoints.get(e))
    }

    /// The current attempt's number, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Ends the current attempt with its outcome and picks an endpoint for the next one; the
    /// slot stays held. A refusal (no endpoint left) ends nothing more: `finish` still follows.
    pub fn retry(&mut self, latency_nanos: u64, outcome: Outcome) -> Result<(), Rejection> {
        self.end_attempt(latency_nanos, outcome);
        self.pool.stats.retry();
        let e = self.pool.pick()?;
        self.endpoint = Some(e);
        self.attempt += 1;
        Ok(())
    }

    /// Ends the request: the last attempt's outcome goes to the balancer and breaker, and the
    /// slot to the next waiter.
    pub fn finish(mut self, latency_nanos: u64, outcome: Outcome) {
        self.end(latency_nanos, outcome);
    }

    fn end_attempt(&mut self, latency_nanos: u64, outcome: Outcome) {
        if let Some(e) = self.endpoint.take() {
            let _ = self.pool.balancer.finish(e, latency_nanos, outcome);
        }
    }

    fn end(&mut self, latency_nanos: u64, outcome: Outcome) {
        self.end_attempt(latency_nanos, outcome);
        if self.slot {
            self.slot = false;
            let next = self.pool.admission.release();
            self.pool.waiters.grant(&self.pool.admission, next);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.end(0, Outcome::Cancelled);
    }
}

/// Where a request that found no endpoint looks for the next config, and whom it tells.
pub type Board = (Arc<ArcSwap<Snapshot>>, Arc<Activations>);

/// Scale from zero: the agents requests wait for, and the signal that a new config is in.
#[derive(Default)]
pub struct Activations {
    wanted: parking_lot::Mutex<Vec<Arc<str>>>,
    asked: parking_lot::Condvar,
    /// Notified on every config swap.
    pub changed: Notify,
}

impl Activations {
    /// Asks for an endpoint of `agent` (the runtime starts a replica).
    pub fn ask(&self, agent: &Arc<str>) {
        let mut w = self.wanted.lock();
        if !w.iter().any(|a| a == agent) {
            w.push(agent.clone());
        }
        self.asked.notify_all();
    }

    /// The agents asked for since the last call, waiting up to `timeout` for one (a blocking
    /// call for a thread of its own).
    pub fn take(&self, timeout: Duration) -> Vec<Arc<str>> {
        let mut w = self.wanted.lock();
        if w.is_empty() {
            let _ = self.asked.wait_for(&mut w, timeout);
        }
        std::mem::take(&mut *w)
    }
}

/// A request holding a slot of an agent with no endpoint, waiting for the runtime to start one.
pub struct Activating {
    snap: Arc<Snapshot>,
    admitted: Option<Admitted>,
    pool: Arc<Pool>,
    board: Board,
}

impl Activating {
    pub(crate) fn new(
        snap: Arc<Snapshot>,
        admitted: Admitted,
        pool: Arc<Pool>,
        current: Arc<ArcSwap<Snapshot>>,
        activations: Arc<Activations>,
    ) -> Self {
        Activating {
            snap,
            admitted: Some(admitted),
            pool,
            board: (current, activations),
        }
    }

    /// Waits (at most the agent's `activation.timeout`) for a config in which the agent has an
    /// endpoint, then picks one. Dropping the future releases the slot.
    pub async fn wait(mut self) -> Result<InFlight, Rejection> {
        let limit = self
            .pool
            .config
            .activation
            .as_ref()
            .map_or(0.0, |a| a.timeout);
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(limit.max(0.0));
        let (current, activations) = self.board.clone();
        activations.ask(&self.pool.name);
        loop {
            // interest first, then the look: a swap in between still wakes us
            let notified = activations.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snap = current.load_full();
            match snap.pool_named(&self.pool.name).cloned() {
                None => return Err(reject(503, "no_endpoint", "agent no longer configured")),
                Some(p) if !p.endpoints.is_empty() => {
                    if !Arc::ptr_eq(&p.admission, &self.pool.admission) {
                        // its limits changed meanwhile: the slot held is in the old queue
                        let acquired = p.admission.acquire(self.admitted_priority());
                        if acquired.decision != crate::admission::Decision::Admit {
                            for t in acquired.shed {
                                p.waiters.shed(t);
                            }
                            if let crate::admission::Decision::Queued(t) = acquired.decision {
                                if !p.admission.cancel(t) {
                                    // granted just now: hand it on
                                    p.waiters.grant(&p.admission, p.admission.release());
                                }
                            }
                            return Err(reject(
                                503,
                                "queue_full",
                                "the agent was reconfigured while it started",
                            ));
                        }
                        self.release();
                        self.pool = p.clone();
                    }
                    let admitted = self.admitted.take();
                    let pool = p;
                    return match (pool.pick(), admitted) {
                        (Ok(e), Some(a)) => Ok(InFlight::with_pool(self.snap.clone(), a, pool, e)),
                        (Err(r), a) => {
                            self.admitted = a;
                            Err(r)
                        }
                        (Ok(_), None) => Err(reject(503, "no_endpoint", "activation ended")),
                    };
                }
                Some(_) => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(reject(
                    503,
                    "activation_timeout",
                    format!(
                        "agent {:?}: no replica became ready within {limit}s",
                        self.pool.name.as_ref()
                    ),
                ));
            }
        }
    }

    fn admitted_priority(&self) -> crate::admission::Priority {
        self.admitted
            .as_ref()
            .map_or(crate::admission::Priority::Normal, |a| a.priority)
    }

    fn release(&mut self) {
        let pool = &self.pool;
        pool.waiters
            .grant(&pool.admission, pool.admission.release());
    }
}

impl Drop for Activating {
    fn drop(&mut self) {
        // still holding the slot unless it became an InFlight
        if self.admitted.is_some() {
            self.release();
        }
    }
}

/// A request waiting in its pool's priority queue.
pub struct Queued {
    snap: Arc<Snapshot>,
    admitted: Option<Admitted>,
    pool: Arc<Pool>,
    ticket: u64,
    board: Board,
}

/// Gives up on a ticket when the wait ends without a slot (timeout, or the future dropped).
struct Wait<'a> {
    pool: &'a Pool,
    ticket: u64,
    rx: Option<oneshot::Receiver<Signal>>,
    armed: bool,
}

impl Wait<'_> {
    fn give_up(&mut self) -> Owned {
        self.armed = false;
        self.pool
            .waiters
            .give_up(&self.pool.admission, self.ticket, self.rx.as_mut())
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if self.armed && self.give_up() == Owned::Slot {
            let next = self.pool.admission.release();
            self.pool.waiters.grant(&self.pool.admission, next);
        }
    }
}

fn shed(pool: &Pool) -> Rejection {
    reject(
        503,
        "shed",
        format!(
            "agent {:?}: shed under load in favour of higher priorities",
            pool.name.as_ref()
        ),
    )
}

impl Queued {
    pub(crate) fn new(
        snap: Arc<Snapshot>,
        admitted: Admitted,
        pool: Arc<Pool>,
        t: u64,
        board: Board,
    ) -> Self {
        Queued {
            snap,
            admitted: Some(admitted),
            pool,
            ticket: t,
            board,
        }
    }

    /// Waits for a slot (at most the agent's `queue_timeout`), then picks an endpoint.
    /// Dropping the future gives the ticket up.
    pub async fn wait(mut self) -> Result<InFlight, Rejection> {
        // from here on the wait below owns the ticket: dropping `self` must not withdraw it again
        let admitted = self.admitted.take();
        let pool = self.pool.clone();
        let mut w = Wait {
            pool: &pool,
            ticket: self.ticket,
            rx: None,
            armed: true,
        };
        let got = match pool.waiters.register(self.ticket) {
            Registered::Slot => true,
            Registered::Shed => false,
            Registered::Wait(rx) => {
                let rx = w.rx.insert(rx);
                match tokio::time::timeout(pool.queue_wait, rx).await {
                    Ok(Ok(Signal::Slot)) => true,
                    Ok(Ok(Signal::Shed)) => false,
                    Ok(Err(_)) | Err(_) => {
                        if w.give_up() == Owned::Nothing {
                            pool.stats.shed();
                            return Err(reject(
                                503,
                                "queue_timeout",
                                format!(
                                    "agent {:?}: no capacity within the queue timeout",
                                    pool.name.as_ref()
                                ),
                            ));
                        }
                        true
                    }
                }
            }
        };
        w.armed = false;
        drop(w);
        if !got {
            return Err(shed(&pool)); // counted when the admission shed it
        }
        let Some(admitted) = admitted else {
            // unreachable: `admitted` is only taken here; hand the slot on regardless
            pool.waiters
                .grant(&pool.admission, pool.admission.release());
            return Err(shed(&pool));
        };
        match pool.pick() {
            Ok(e) => Ok(InFlight::new(self.snap.clone(), admitted, pool.clone(), e)),
            Err(_) if pool.endpoints.is_empty() && pool.config.activation.is_some() => {
                let (current, activations) = self.board.clone();
                Activating::new(self.snap.clone(), admitted, pool, current, activations)
                    .wait()
                    .await
            }
            Err(r) => {
                pool.waiters
                    .grant(&pool.admission, pool.admission.release());
                Err(r)
            }
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        // never waited: withdraw the ticket (a wait() that ran took `admitted` already)
        if self.admitted.is_some() {
            let pool = &self.pool;
            if pool.waiters.give_up(&pool.admission, self.ticket, None) == Owned::Slot {
                pool.waiters
                    .grant(&pool.admission, pool.admission.release());
            }
        }
    }
}
