//! Injectable monotonic clocks, so time-based behaviour is tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A monotonic clock reading nanoseconds since an arbitrary, fixed origin.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin; never decreases.
    fn now_nanos(&self) -> u64;
}

/// The real monotonic clock (shared origin across the process).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        // Starts at 1s so that "zero" can mean "never" in atomics without ambiguity.
        origin().elapsed().as_nanos() as u64 + 1_000_000_000
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A manual clock starting at 1 s.
    pub fn new() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(1_000_000_000)),
        }
    }
    /// Moves the clock forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
    /// Moves the clock forward by `secs` seconds (fractional allowed).
    pub fn advance_secs(&self, secs: f64) {
        self.advance((secs * 1e9) as u64);
    }
    /// Moves the clock forward by `secs` seconds, refusing a negative or non-finite amount.
    pub fn try_advance_secs(&self, secs: f64) -> Result<(), crate::setting::SettingError> {
        self.advance(crate::setting::secs_to_nanos("seconds", secs)?);
        Ok(())
    }
    /// Sets the clock; a value in the past is ignored (monotonic).
    pub fn set(&self, nanos: u64) {
        self.nanos.fetch_max(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// A shareable clock handle: the real clock or a manual one.
#[derive(Debug, Clone)]
pub enum AnyClock {
    System(SystemClock),
    Manual(ManualClock),
}

impl Default for AnyClock {
    fn default() -> Self {
        AnyClock::System(SystemClock)
    }
}

impl Clock for AnyClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        match self {
            AnyClock::System(c) => c.now_nanos(),
            AnyClock::Manual(c) => c.now_nanos(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_by_bad_seconds_is_refused() {
        let c = ManualClock::new();
        let t = c.now_nanos();
        c.try_advance_secs(0.5).unwrap();
        assert_eq!(c.now_nanos(), t + 500_000_000);
        assert_eq!(c.try_advance_secs(-1.0).unwrap_err().field, "seconds");
        assert!(c.try_advance_secs(f64::NAN).is_err());
        assert_eq!(c.now_nanos(), t + 500_000_000);
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new();
        let t0 = c.now_nanos();
        c.advance(5);
        assert_eq!(c.now_nanos(), t0 + 5);
        c.set(0);
        assert_eq!(c.now_nanos(), t0 + 5);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let a = SystemClock.now_nanos();
        let b = SystemClock.now_nanos();
        assert!(b >= a);
        assert!(a >= 1_000_000_000);
    }
}
