//! Python bindings for agentgate_core::admission.

use crate::breaker::secs_to_nanos;
use crate::clock::{any_clock, ManualClock};
use agentgate_core::admission::{Admission as Core, AdmissionConfig, Decision, Priority, Reason};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Priority admission state machine; `agentgate.admission.AdmissionController` drives it.
#[pyclass(module = "agentgate._core", frozen, name = "PriorityAdmission")]
pub struct PyAdmission {
    inner: Core,
}

/// Seconds to the core's per-class limit: None = no limit; 0 becomes 1 ns (expire at once)
/// because the core reads 0 as "no limit".
fn wait_nanos(class: &str, secs: Option<f64>) -> PyResult<u64> {
    match secs {
        None => Ok(0),
        Some(s) if s == f64::INFINITY => Ok(0),
        Some(s) => Ok(secs_to_nanos(&format!("max_wait[{class:?}]"), s)?.max(1)),
    }
}

#[pymethods]
impl PyAdmission {
    /// `max_wait`: seconds per class (critical, high, normal, low); None = no limit.
    #[new]
    #[pyo3(signature = (max_concurrency, max_queue, max_wait, *, clock=None))]
    fn new(
        max_concurrency: u32,
        max_queue: u32,
        max_wait: (Option<f64>, Option<f64>, Option<f64>, Option<f64>),
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let config = AdmissionConfig {
            max_concurrency,
            max_queue,
            max_wait_nanos: [
                wait_nanos("critical", max_wait.0)?,
                wait_nanos("high", max_wait.1)?,
                wait_nanos("normal", max_wait.2)?,
                wait_nanos("low", max_wait.3)?,
            ],
        };
        let inner =
            Core::try_new(config, any_clock(clock.as_deref())).map_err(PyValueError::new_err)?;
        Ok(Self { inner })
    }

    /// (code, ticket, shed): code 0 admitted, 1 queued on `ticket`, 2 rejected queue_full,
    /// 3 rejected shed; `shed` lists evicted waiters' tickets.
    fn acquire(&self, priority: &str) -> PyResult<(u8, u64, Vec<u64>)> {
        let p: Priority = priority.parse().map_err(PyValueError::new_err)?;
        let o = self.inner.acquire(p);
        let (code, ticket) = match o.decision {
            Decision::Admit => (0, 0),
            Decision::Queued(t) => (1, t),
            Decision::Reject(Reason::QueueFull) => (2, 0),
            Decision::Reject(Reason::Shed) => (3, 0),
        };
        Ok((code, ticket, o.shed))
    }

    /// Frees a slot; returns the ticket it passed to, if any.
    fn release(&self) -> Option<u64> {
        self.inner.release()
    }

    /// True if the ticket was still waiting and is now removed; False if granted or reported.
    fn cancel(&self, ticket: u64) -> bool {
        self.inner.cancel(ticket)
    }

    /// Tickets whose class max wait passed (each reported once).
    fn expire(&self) -> Vec<u64> {
        self.inner.expire()
    }

    /// Waiting tickets per class: (critical, high, normal, low).
    fn depths(&self) -> (u32, u32, u32, u32) {
        let d = self.inner.depths();
        (d[0], d[1], d[2], d[3])
    }

    /// Slots currently held.
    #[getter]
    fn in_flight(&self) -> u32 {
        self.inner.in_flight()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAdmission>()
}
