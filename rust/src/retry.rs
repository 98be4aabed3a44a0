//! The retry policy of an agent, in one place: how many attempts, after which outcomes, for
//! which methods, within which budget, after how long.
//!
//! The budget follows Finagle's and tower's `retry::budget`: every original request deposits
//! `ratio` tokens, every retry withdraws one, and a small floor lets a quiet agent retry at
//! all. Under a wide outage the budget runs dry and retries stop multiplying the load.
//! Backoff is "full jitter" (AWS architecture blog): uniform in `[0, min(max, base·2^n)]`.
//! An upstream's `Retry-After` is honoured when it fits under `max`; a longer one ends the
//! retries and the upstream's answer goes to the client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::config::{self, ConfigError};

/// One outcome of an upstream attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The connection could not be made (refused, unreachable, TLS handshake).
    ConnectFailure,
    /// The connection broke before a response head arrived.
    Reset,
    /// Connect, first-byte or idle timeout.
    Timeout,
    /// A response head arrived with this status.
    Status(u16),
}

/// The retryable outcomes a policy names (`on:` in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    connect_failure: bool,
    reset: bool,
    timeout: bool,
    any_5xx: bool,
    statuses: [bool; 6], // 429, 500, 502, 503, 504, other listed
}

const STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

impl RetryOn {
    /// From the config's names: `connect-failure`, `reset`, `timeout`, `5xx` or a status.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut on = RetryOn::default();
        for n in names {
            match n.as_str() {
                "connect-failure" => on.connect_failure = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.any_5xx = true,
                s => {
                    let code: u16 = s
                        .parse()
                        .map_err(|_| format!("unknown retry outcome {s:?}"))?;
                    let i = STATUSES
                        .iter()
                        .position(|&c| c == code)
                        .ok_or_else(|| format!("status {code} cannot be retried"))?;
                    on.statuses[i] = true;
                }
            }
        }
        Ok(on)
    }

    /// Whether `outcome` is worth another attempt.
    pub fn matches(&self, outcome: AttemptOutcome) -> bool {
        match outcome {
            AttemptOutcome::ConnectFailure => self.connect_failure,
            AttemptOutcome::Reset => self.reset,
            AttemptOutcome::Timeout => self.timeout,
            AttemptOutcome::Status(s) => {
                (self.any_5xx && (500..600).contains(&s))
                    || STATUSES
                        .iter()
                        .position(|&c| c == s)
                        .is_some_and(|i| self.statuses[i])
            }
        }
    }
}

/// Methods that may be repeated without asking (RFC 9110 §9.2.2).
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// Token budget shared by every request to one agent, across all worker threads.
#[derive(Debug)]
pub struct RetryBudget {
    // milli-tokens: integer atomics instead of a float under a lock
    tokens: AtomicI64,
    ratio_milli: i64,
    cap_milli: i64,
}

const MILLI: i64 = 1000;

impl RetryBudget {
    /// A budget of `ratio` retries per request, starting at (and never below a refill to) the
    /// floor of 10 retries, capped at 100 or the floor.
    pub fn new(ratio: f64) -> Self {
        let floor = 10 * MILLI;
        RetryBudget {
            tokens: AtomicI64::new(floor),
            ratio_milli: (ratio.clamp(0.0, 1.0) * MILLI as f64).round() as i64,
            cap_milli: 100 * MILLI,
        }
    }

    /// Called once per original request.
    pub fn deposit(&self) {
        if self.ratio_milli == 0 {
            return;
        }
        let mut cur = self.tokens.load(Ordering::Relaxed);
        loop {
            let next = (cur + self.ratio_milli).min(self.cap_milli);
            if next == cur {
                return;
            }
            match self
                .tokens
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Takes one retry if the budget has one.
    pub fn withdraw(&self) -> bool {
        let mut cur = self.tokens.load(Ordering::Relaxed);
        loop {
            if cur < MILLI {
                return false;
            }
            match self.tokens.compare_exchange_weak(
                cur,
                cur - MILLI,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Retries left, for stats.
    pub fn available(&self) -> f64 {
        self.tokens.load(Ordering::Relaxed) as f64 / MILLI as f64
    }
}

/// An agent's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Outcomes worth a retry.
    pub on: RetryOn,
    /// Backoff cap of the first retry.
    pub base: Duration,
    /// Backoff cap of every retry, and the longest Retry-After honoured.
    pub max: Duration,
    /// Budget ratio.
    pub budget_ratio: f64,
}

/// Why no further attempt is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The outcome is not in `on`.
    NotRetryable,
    /// Every attempt is used.
    Exhausted,
    /// POST/PATCH on a route without `retry_non_idempotent`.
    NotIdempotent,
    /// The body was streamed and cannot be sent again.
    BodyConsumed,
    /// Retry-After asks for longer than `backoff.max`, or the total deadline is too near.
    TooLate,
    /// The agent's retry budget is empty.
    Budget,
}

impl RetryPolicy {
    /// From the config, validated.
    pub fn from_config(r: &config::Retries) -> Result<Self, ConfigError> {
        let on = RetryOn::parse(&r.on).map_err(|e| ConfigError(format!("retries.on: {e}")))?;
        if r.backoff.base > r.backoff.max {
            return Err(ConfigError(
                "retries.backoff.base: base must not exceed max".into(),
            ));
        }
        Ok(RetryPolicy {
            attempts: r.attempts,
            on,
            base: Duration::from_secs_f64(r.backoff.base.max(0.0)),
            max: Duration::from_secs_f64(r.backoff.max.max(0.0)),
            budget_ratio: r.budget,
        })
    }

    /// The delay before retry number `retry` (1 = the first retry): full jitter, where `unit`
    /// is a uniform sample in `[0, 1)`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        let cap = (self.base.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(cap * unit.clamp(0.0, 1.0))
    }

    /// Decides whether attempt number `attempt` (1 = the first) may be followed by another, and
    /// after how long. Withdraws from `budget` only when everything else allows the retry.
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        &self,
        attempt: u32,
        outcome: AttemptOutcome,
        method_ok: bool,
        replayable: bool,
        retry_after: Option<Duration>,
        time_left: Option<Duration>,
        budget: &RetryBudget,
        unit: f64,
    ) -> Result<Duration, Stop> {
        if !self.on.matches(outcome) {
            return Err(Stop::NotRetryable);
        }
        if attempt > self.attempts {
            return Err(Stop::Exhausted);
        }
        if !method_ok {
            return Err(Stop::NotIdempotent);
        }
        if !replayable {
            return Err(Stop::BodyConsumed);
        }
        let mut delay = self.backoff(attempt, unit);
        if let Some(after) = retry_after {
            if after > self.max {
                return Err(Stop::TooLate);
            }
            delay = delay.max(after);
        }
        if time_left.is_some_and(|left| delay >= left) {
            return Err(Stop::TooLate);
        }
        if !budget.withdraw() {
            return Err(Stop::Budget);
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from_config(&config::Retries::default()).unwrap()
    }

    #[test]
    fn retry_on_names() {
        let on = RetryOn::parse(&["reset".into(), "503".into()]).unwrap();
        assert!(on.matches(AttemptOutcome::Reset));
        assert!(on.matches(AttemptOutcome::Status(503)));
        assert!(!on.matches(AttemptOutcome::Status(502)));
        assert!(!on.matches(AttemptOutcome::Timeout));
        let on = RetryOn::parse(&["5xx".into()]).unwrap();
        assert!(on.matches(AttemptOutcome::Status(599)));
        assert!(!on.matches(AttemptOutcome::Status(429)));
        assert!(RetryOn::parse(&["404".into()]).is_err());
        assert!(RetryOn::parse(&["sometimes".into()]).is_err());
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let p = policy(); // base 25 ms, max 1 s
        for retry in 1..12u32 {
            let cap = (0.025 * 2f64.powi(retry as i32 - 1)).min(1.0);
            for i in 0..=100 {
                let unit = f64::from(i) / 100.0;
                let d = p.backoff(retry, unit).as_secs_f64();
                assert!(d >= 0.0 && d <= cap + 1e-9, "retry {retry}: {d} > {cap}");
            }
            assert!(p.backoff(retry, 0.0).is_zero());
            assert!((p.backoff(retry, 1.0).as_secs_f64() - cap).abs() < 1e-9);
        }
    }

    #[test]
    fn budget_runs_out_and_refills_from_requests() {
        let b = RetryBudget::new(0.5);
        let mut taken = 0;
        while b.withdraw() {
            taken += 1;
        }
        assert_eq!(taken, 10); // the floor
        assert!(!b.withdraw());
        b.deposit();
        assert!(!b.withdraw()); // half a token
        b.deposit();
        assert!(b.withdraw());
        let none = RetryBudget::new(0.0);
        for _ in 0..1000 {
            none.deposit();
        }
        assert_eq!(none.available(), 10.0);
    }

    #[test]
    fn budget_is_capped() {
        let b = RetryBudget::new(1.0);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.available(), 100.0);
    }

    #[test]
    fn next_checks_in_order_and_spends_only_when_allowed() {
        let p = policy();
        let b = RetryBudget::new(0.0);
        let reset = AttemptOutcome::Reset;
        assert_eq!(
            p.next(
                1,
                AttemptOutcome::Status(404),
                true,
                true,
                None,
                None,
                &b,
                0.5
            ),
            Err(Stop::NotRetryable)
        );
        assert_eq!(
            p.next(3, reset, true, true, None, None, &b, 0.5),
            Err(Stop::Exhausted)
        );
        assert_eq!(
            p.next(1, reset, false, true, None, None, &b, 0.5),
            Err(Stop::NotIdempotent)
        );
        assert_eq!(
            p.next(1, reset, true, false, None, None, &b, 0.5),
            Err(Stop::BodyConsumed)
        );
        let long = Some(Duration::from_secs(5));
        assert_eq!(
            p.next(
                1,
                AttemptOutcome::Status(503),
                true,
                true,
                long,
                None,
                &b,
                0.5
            ),
            Err(Stop::TooLate)
        );
        assert_eq!(b.available(), 10.0, "refusals spend nothing");
        let short = Some(Duration::from_millis(300));
        assert_eq!(
            p.next(
                1,
                AttemptOutcome::Status(503),
                true,
                true,
                short,
                None,
                &b,
                0.0
            ),
            Ok(Duration::from_millis(300))
        );
        let near = Some(Duration::from_millis(100));
        assert_eq!(
            p.next(
                1,
                AttemptOutcome::Status(503),
                true,
                true,
                short,
                near,
                &b,
                0.0
            ),
            Err(Stop::TooLate)
        );
        for _ in 0..9 {
            assert!(p.next(1, reset, true, true, None, None, &b, 0.0).is_ok());
        }
        assert_eq!(
            p.next(1, reset, true, true, None, None, &b, 0.0),
            Err(Stop::Budget)
        );
    }
}
