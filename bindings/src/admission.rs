//! Python bindings for agentgate_core::admission, and the `Priority` enum every module shares.

use std::collections::HashMap;

use crate::clock::{any_clock, ManualClock};
use crate::enums::{named_enum, py_enum};
use crate::errors::setting_error;
use agentgate_core::admission::{
    Admission as Core, AdmissionConfig, Decision, Priority as CorePriority, Refusal as CoreRefusal,
};
use agentgate_core::setting::int_in;
use pyo3::prelude::*;

py_enum! {
    /// A request class, most important first; `str()` gives its config name ("high").
    Priority mirrors CorePriority {
        /// Served first, never shed by others.
        Critical,
        /// Above normal traffic.
        High,
        /// The default class.
        Normal,
        /// Shed first under pressure.
        Low,
    }
}
named_enum!(Priority, CorePriority);

py_enum! {
    /// Why a request ended without a slot.
    Refusal mirrors CoreRefusal {
        /// Refused on arrival: the queue is full (or there is none).
        QueueFull,
        /// Refused on arrival, or evicted while waiting, for more important requests.
        Shed,
        /// Waited longer than its class's max wait.
        Timeout,
    }
}

#[pymethods]
impl Refusal {
    /// "queue_full", "shed" or "timeout".
    fn __str__(&self) -> &'static str {
        CoreRefusal::from(*self).as_str()
    }
}

/// What `PriorityAdmission.acquire` decided.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct AcquireOutcome {
    /// The caller holds a slot now and must release it.
    admitted: bool,
    /// The ticket to wait on when queued, else None.
    ticket: Option<u64>,
    /// Why it was refused (QueueFull or Shed), else None.
    refusal: Option<Refusal>,
    /// Tickets of lower-class waiters evicted to make room: the caller fails them as shed.
    shed: Vec<u64>,
}

#[pymethods]
impl AcquireOutcome {
    fn __repr__(&self) -> String {
        format!(
            "AcquireOutcome(admitted={}, ticket={}, refusal={}, shed={:?})",
            if self.admitted { "True" } else { "False" },
            self.ticket.map_or("None".into(), |t| t.to_string()),
            self.refusal
                .map_or("None".into(), |r| format!("Refusal.{r:?}")),
            self.shed
        )
    }
}

/// Priority admission state machine; `agentgate.admission.AdmissionController` drives it.
#[pyclass(module = "agentgate._core", frozen, name = "PriorityAdmission")]
pub struct PyAdmission {
    inner: Core,
}

#[pymethods]
impl PyAdmission {
    /// `max_wait`: seconds per class; a class left out, None or inf has no limit.
    #[new]
    #[pyo3(signature = (max_concurrency, max_queue, max_wait, *, clock=None))]
    fn new(
        max_concurrency: i64,
        max_queue: i64,
        max_wait: HashMap<Priority, Option<f64>>,
        clock: Option<PyRef<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let u32_range = 0..=i64::from(u32::MAX);
        let max_concurrency =
            int_in("max_concurrency", max_concurrency, u32_range.clone()).map_err(setting_error)?;
        let max_queue = int_in("max_queue", max_queue, u32_range).map_err(setting_error)?;
        let waits = CorePriority::ALL.map(|p| max_wait.get(&p.into()).copied().flatten());
        let config = AdmissionConfig::with_wait_secs(max_concurrency, max_queue, waits)
            .map_err(setting_error)?;
        let inner = Core::try_new(config, any_clock(clock.as_deref())).map_err(setting_error)?;
        Ok(Self { inner })
    }

    /// Takes a slot, queues on a ticket, or refuses; also lists the waiters it evicted.
    fn acquire(&self, priority: Priority) -> AcquireOutcome {
        let o = self.inner.acquire(priority.into());
        let (admitted, ticket, refusal) = match o.decision {
            Decision::Admit => (true, None, None),
            Decision::Queued(t) => (false, Some(t), None),
            Decision::Reject(r) => (false, None, Some(CoreRefusal::from(r).into())),
        };
        AcquireOutcome {
            admitted,
            ticket,
            refusal,
            shed: o.shed,
        }
    }

    /// Frees a slot; returns the ticket it passed to, if any.
    fn release(&self) -> Option<u64> {
        self.inner.release()
    }

    /// True if the ticket was still waiting and is now removed; False if granted or reported.
    fn cancel(&self, ticket: u64) -> bool {
        self.inner.cancel(ticket)
    }

    /// Tickets whose class max wait passed (each reported once): refused with Timeout.
    fn expire(&self) -> Vec<u64> {
        self.inner.expire()
    }

    /// Waiting tickets per class.
    fn depths(&self) -> HashMap<Priority, u32> {
        by_priority(self.inner.depths())
    }

    /// Slots currently held.
    #[getter]
    fn in_flight(&self) -> u32 {
        self.inner.in_flight()
    }
}

/// Per-class counts the core indexes like `Priority::ALL`, keyed by `Priority`.
pub fn by_priority(counts: [u32; 4]) -> HashMap<Priority, u32> {
    CorePriority::ALL
        .into_iter()
        .map(|p| (p.into(), counts[p as usize]))
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Priority>()?;
    m.add_class::<Refusal>()?;
    m.add_class::<AcquireOutcome>()?;
    m.add_class::<PyAdmission>()
}
