//! Python bindings for agentgate_core::http1::exchange: an asyncio Protocol for one pooled
//! upstream connection that answers small complete responses itself.
//!
//! Glue only: `Exchange` decides; this file converts and calls the Python objects (transport,
//! future, granian proto, idle list). Python code is never called while the object is
//! mutably borrowed, since transports may call back into the protocol synchronously (e.g.
//! `pause_writing` from inside `write`).

use crate::http1::{name_str, Http1ResponseHead, Http1ResponseParser};
use agentgate_core::http1::exchange::{Body, Error as ExchangeError, Exchange, Step};
use agentgate_core::http1::response::{ResponseHead, ResponseParser};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// Default cap of a body answered from a buffer (bytes).
const DEFAULT_MAX_BUFFER: usize = 256 * 1024;

/// An asyncio Protocol for one upstream connection; see `send` for the outcome contract.
#[pyclass(module = "agentgate._core")]
pub struct Http1Connection {
    idle: Py<PyList>,
    max_buffer: usize,
    transport: Option<Py<PyAny>>,
    exchange: Option<Exchange>,
    fut: Option<Py<PyAny>>,
    proto: Option<Py<PyAny>>,
    request_id: Option<Py<PyString>>,
    extra: Option<Py<PyAny>>,
    /// This connection appended itself to `idle` and was not taken by a `send` since.
    in_idle: bool,
    handed_over: bool,
    closed: bool,
    write_paused: bool,
    /// Bytes arrived since the last `send` (a reset without any is the keep-alive race).
    got_bytes: bool,
    /// Bytes received after a handover, before Python swapped its own protocol in.
    pending: Vec<u8>,
    timer: Option<Py<PyAny>>,
    timer_at: f64,
    due: Option<f64>,
    event_loop: Option<Py<PyAny>>,
}

/// The parts of a request in flight that its outcome is delivered with.
struct Waiter {
    fut: Py<PyAny>,
    proto: Option<Py<PyAny>>,
    request_id: Option<Py<PyString>>,
    extra: Option<Py<PyAny>>,
}

impl Http1Connection {
    /// Ends the current request on this side: takes what its outcome is delivered to.
    fn take_waiter(&mut self) -> Option<Waiter> {
        self.exchange = None;
        self.due = None;
        let proto = self.proto.take();
        let request_id = self.request_id.take();
        let extra = self.extra.take();
        self.fut.take().map(|fut| Waiter {
            fut,
            proto,
            request_id,
            extra,
        })
    }

    fn cancel_timer(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(timer) = self.timer.take() {
            timer.bind(py).call_method0(intern!(py, "cancel"))?;
        }
        Ok(())
    }
}

/// `fut.set_result(value)` unless the future is already done (e.g. cancelled).
fn resolve(fut: &Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
    let py = fut.py();
    if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        fut.call_method1(intern!(py, "set_result"), (value,))?;
    }
    Ok(())
}

/// ("error", kind, message) delivered to the waiter, if any.
fn resolve_error(
    py: Python<'_>,
    waiter: Option<Waiter>,
    kind: &str,
    message: &str,
) -> PyResult<()> {
    if let Some(w) = waiter {
        let value = (intern!(py, "error"), PyString::new(py, kind), message).into_pyobject(py)?;
        resolve(w.fut.bind(py), value.into_any())?;
    }
    Ok(())
}

/// Removes `conn` from `idle` when it is there (the pool may have taken it already).
fn leave_idle(conn: &Bound<'_, Http1Connection>, idle: &Bound<'_, PyList>) -> PyResult<()> {
    let py = conn.py();
    match idle.call_method1(intern!(py, "remove"), (conn,)) {
        Err(e) if e.is_instance_of::<PyValueError>(py) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The body as a bytes object: `data` itself when the body is all of it, else one copy.
fn body_bytes<'py>(
    py: Python<'py>,
    body: &Body,
    data: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = data.as_bytes();
    if let Some(r) = body.single() {
        if r.start == 0 && r.end == bytes.len() {
            return Ok(data.clone());
        }
    }
    PyBytes::new_with(py, body.len(), |buf| {
        body.copy_into(bytes, buf);
        Ok(())
    })
}

/// The client's response headers: forwarded fields, a request id unless the upstream sent
/// one, then the caller's extra fields (RateLimit).
fn client_headers<'py>(
    py: Python<'py>,
    head: &ResponseHead,
    request_id: Option<&Py<PyString>>,
    extra: Option<&Py<PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (name, value) in &head.forward {
        list.append((name_str(py, name), PyString::new(py, value)))?;
    }
    if !head.has_request_id {
        if let Some(rid) = request_id {
            list.append((intern!(py, "x-request-id"), rid.bind(py)))?;
        }
    }
    if let Some(extra) = extra {
        let extra = extra.bind(py);
        if !extra.is_none() {
            for item in extra.try_iter()? {
                list.append(item?)?;
            }
        }
    }
    Ok(list)
}

fn close(py: Python<'_>, transport: Option<Py<PyAny>>, abort: bool) -> PyResult<()> {
    if let Some(t) = transport {
        let name = if abort {
            intern!(py, "abort")
        } else {
            intern!(py, "close")
        };
        t.bind(py).call_method0(name)?;
    }
    Ok(())
}

/// A failed exchange: deliver the error and abort the connection (it is out of sync).
fn fail(conn: &Bound<'_, Http1Connection>, kind: &str, message: &str) -> PyResult<()> {
    let py = conn.py();
    let (waiter, transport) = {
        let mut this = conn.borrow_mut();
        this.closed = true;
        this.cancel_timer(py)?;
        (
            this.take_waiter(),
            this.transport.as_ref().map(|t| t.clone_ref(py)),
        )
    };
    resolve_error(py, waiter, kind, message)?;
    close(py, transport, true)
}

fn respond(
    conn: &Bound<'_, Http1Connection>,
    data: &Bound<'_, PyBytes>,
    head: Box<ResponseHead>,
    body: Body,
    reusable: bool,
) -> PyResult<()> {
    let py = conn.py();
    let (waiter, transport, idle) = {
        let mut this = conn.borrow_mut();
        let waiter = this.take_waiter();
        if reusable {
            this.in_idle = true;
        } else {
            this.closed = true;
        }
        (
            waiter,
            this.transport.as_ref().map(|t| t.clone_ref(py)),
            this.idle.clone_ref(py),
        )
    };
    if let Some(w) = waiter {
        let fut = w.fut.bind(py);
        if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            let outcome = match w.proto {
                Some(proto) => {
                    let headers =
                        client_headers(py, &head, w.request_id.as_ref(), w.extra.as_ref())?;
                    let body = body_bytes(py, &body, data)?;
                    proto
                        .bind(py)
                        .call_method1(intern!(py, "response_bytes"), (head.status, headers, body))
                        .map(|_| head.status.into_pyobject(py).map(|s| s.into_any()))
                }
                None => Ok(head.status.into_pyobject(py).map(|s| s.into_any())),
            };
            let value = match outcome {
                Ok(status) => status?,
                Err(e) => (intern!(py, "error"), intern!(py, "respond"), e.to_string())
                    .into_pyobject(py)?
                    .into_any(),
            };
            fut.call_method1(intern!(py, "set_result"), (value,))?;
        }
    }
    if reusable {
        idle.bind(py).append(conn)?;
        Ok(())
    } else {
        close(py, transport, false)
    }
}

#[allow(clippy::too_many_arguments)]
fn handover(
    conn: &Bound<'_, Http1Connection>,
    data: &Bound<'_, PyBytes>,
    head: ResponseHead,
    body: Body,
    done: bool,
    reusable: bool,
    parser: ResponseParser,
) -> PyResult<()> {
    let py = conn.py();
    let waiter = {
        let mut this = conn.borrow_mut();
        this.handed_over = true;
        this.cancel_timer(py)?;
        this.take_waiter()
    };
    let Some(w) = waiter else { return Ok(()) };
    let head = Bound::new(py, Http1ResponseHead::from_core(py, head)?)?;
    let body = if body.is_empty() {
        None
    } else {
        Some(body_bytes(py, &body, data)?)
    };
    let parser = Bound::new(py, Http1ResponseParser::from_core(parser))?;
    let value = PyTuple::new(
        py,
        [
            intern!(py, "handover").clone().into_any(),
            head.into_any(),
            body.into_pyobject(py)?.into_any(),
            pyo3::types::PyBool::new(py, done).to_owned().into_any(),
            pyo3::types::PyBool::new(py, reusable).to_owned().into_any(),
            parser.into_any(),
        ],
    )?;
    resolve(w.fut.bind(py), value.into_any())
}

fn error_message(e: &ExchangeError) -> (&'static str, String) {
    match e {
        ExchangeError::Reset(_) => ("reset", e.to_string()),
        ExchangeError::Protocol(_) | ExchangeError::Finished => ("protocol", e.to_string()),
    }
}

#[pymethods]
impl Http1Connection {
    #[new]
    #[pyo3(signature = (idle, max_buffer = DEFAULT_MAX_BUFFER))]
    fn new(idle: Bound<'_, PyList>, max_buffer: usize) -> Self {
        Http1Connection {
            idle: idle.unbind(),
            max_buffer,
            transport: None,
            exchange: None,
            fut: None,
            proto: None,
            request_id: None,
            extra: None,
            in_idle: false,
            handed_over: false,
            got_bytes: false,
            closed: false,
            write_paused: false,
            pending: Vec::new(),
            timer: None,
            timer_at: 0.0,
            due: None,
            event_loop: None,
        }
    }

    /// asyncio: the connection is up; keep the transport.
    fn connection_made(&mut self, transport: Bound<'_, PyAny>) {
        self.transport = Some(transport.unbind());
    }

    /// asyncio: one received segment, fed to the exchange in flight.
    fn data_received(slf: &Bound<'_, Self>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let py = slf.py();
        let step = {
            let mut this = slf.borrow_mut();
            if this.handed_over {
                this.pending.extend_from_slice(data.as_bytes());
                return Ok(());
            }
            this.got_bytes = true;
            match this.exchange.as_mut() {
                Some(ex) => ex.feed(data.as_bytes()),
                None => {
                    if this.closed {
                        return Ok(());
                    }
                    // Unsolicited bytes on an idle connection: its stream can no longer be
                    // trusted.
                    this.closed = true;
                    let was_idle = std::mem::take(&mut this.in_idle);
                    let transport = this.transport.as_ref().map(|t| t.clone_ref(py));
                    let idle = this.idle.clone_ref(py);
                    drop(this);
                    if was_idle {
                        leave_idle(slf, idle.bind(py))?;
                    }
                    return close(py, transport, true);
                }
            }
        };
        match step {
            Ok(Step::NeedMore) => Ok(()),
            Ok(Step::Respond {
                head,
                body,
                reusable,
            }) => respond(slf, data, head, body, reusable),
            Ok(Step::Handover {
                head,
                body,
                done,
                reusable,
                parser,
            }) => handover(slf, data, *head, body, done, reusable, *parser),
            Err(e) => {
                let (kind, message) = error_message(&e);
                fail(slf, kind, &message)
            }
        }
    }

    /// asyncio: the upstream sent EOF; let the transport close (connection_lost decides).
    fn eof_received(&self) -> Option<bool> {
        None
    }

    /// asyncio: the connection is gone; a request in flight fails with "reset".
    fn connection_lost(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let mut this = slf.borrow_mut();
        this.closed = true;
        this.cancel_timer(py)?;
        if this.handed_over {
            // Python reads `closed` after swapping its protocol in; the transport stays its.
            return Ok(());
        }
        this.transport = None;
        let outcome = this.exchange.as_mut().map(Exchange::eof);
        if let Some(result) = outcome {
            let waiter = this.take_waiter();
            drop(this);
            let mut message = match result {
                Err(e) => error_message(&e).1,
                Ok(_) => "upstream closed the connection".to_owned(),
            };
            if let Some(exc) = exc {
                if !exc.is_none() {
                    message.push_str(": ");
                    message.push_str(&exc.str()?.to_cow()?);
                }
            }
            return resolve_error(py, waiter, "reset", &message);
        }
        let was_idle = std::mem::take(&mut this.in_idle);
        let idle = this.idle.clone_ref(py);
        drop(this);
        if was_idle {
            leave_idle(slf, idle.bind(py))?;
        }
        Ok(())
    }

    /// asyncio: the transport's write buffer is full.
    fn pause_writing(&mut self) {
        self.write_paused = true;
    }

    /// asyncio: the transport's write buffer drained.
    fn resume_writing(&mut self) {
        self.write_paused = false;
    }

    /// Sends one encoded request and starts its exchange; the outcome goes to `fut`.
    ///
    /// `fut` gets the status (int) after `proto.response_bytes(...)` answered the client, or
    /// ("handover", head, body or None, done, reusable, parser), or ("error", kind, message).
    #[pyo3(signature = (data, is_head, fut, proto, request_id, extra = None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyBytes>,
        is_head: bool,
        fut: Bound<'_, PyAny>,
        proto: Bound<'_, PyAny>,
        request_id: Bound<'_, PyString>,
        extra: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let transport = {
            let mut this = slf.borrow_mut();
            if this.handed_over {
                return Err(PyValueError::new_err(
                    "connection was handed over to another protocol",
                ));
            }
            let Some(transport) = this.transport.as_ref().map(|t| t.clone_ref(py)) else {
                return Err(PyValueError::new_err("connection is closed (no transport)"));
            };
            if this.closed {
                return Err(PyValueError::new_err("connection is closed"));
            }
            if this.exchange.is_some() {
                return Err(PyValueError::new_err(
                    "connection is busy with another request",
                ));
            }
            this.exchange = Some(Exchange::new(is_head, this.max_buffer));
            this.fut = Some(fut.unbind());
            this.proto = Some(proto.unbind());
            this.request_id = Some(request_id.unbind());
            this.extra = extra.map(Bound::unbind);
            this.in_idle = false;
            this.got_bytes = false;
            transport
        };
        if let Err(e) = transport
            .bind(py)
            .call_method1(intern!(py, "write"), (data,))
        {
            let mut this = slf.borrow_mut();
            this.take_waiter();
            this.closed = true;
            drop(this);
            close(py, Some(transport), true)?;
            return Err(e);
        }
        Ok(())
    }

    /// Sets the first-byte deadline (loop time); one lazy `loop.call_at` timer per connection.
    #[pyo3(name = "arm")]
    fn arm_py(slf: &Bound<'_, Self>, when: f64, event_loop: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let old = {
            let mut this = slf.borrow_mut();
            this.due = Some(when);
            let reuse = this.timer.is_some() && this.timer_at <= when;
            this.event_loop = Some(event_loop.clone().unbind());
            if reuse {
                return Ok(());
            }
            this.timer_at = when;
            this.timer.take()
        };
        if let Some(timer) = old {
            timer.bind(py).call_method0(intern!(py, "cancel"))?;
        }
        let handle = event_loop.call_method1(
            intern!(py, "call_at"),
            (when, slf.getattr(intern!(py, "expire"))?),
        )?;
        slf.borrow_mut().timer = Some(handle.unbind());
        Ok(())
    }

    /// Ends the deadline (a running timer notices when it fires).
    fn disarm(&mut self) {
        self.due = None;
    }

    /// Timer callback: fail a request still waiting for its response once the deadline passed.
    fn expire(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (due, event_loop) = {
            let mut this = slf.borrow_mut();
            this.timer = None;
            match (this.due, this.event_loop.as_ref()) {
                (Some(due), Some(l)) => (due, l.clone_ref(py)),
                _ => return Ok(()),
            }
        };
        let event_loop = event_loop.bind(py);
        let now: f64 = event_loop.call_method0(intern!(py, "time"))?.extract()?;
        if due > now {
            // The deadline moved on since this timer started: follow it with the same timer.
            let handle = event_loop.call_method1(
                intern!(py, "call_at"),
                (due, slf.getattr(intern!(py, "expire"))?),
            )?;
            let mut this = slf.borrow_mut();
            this.timer = Some(handle.unbind());
            this.timer_at = due;
            return Ok(());
        }
        let waiting_head = {
            let mut this = slf.borrow_mut();
            this.due = None;
            match this.exchange.as_ref() {
                Some(ex) => ex.waiting_head(),
                None => return Ok(()),
            }
        };
        let message = if waiting_head {
            "upstream first byte timeout"
        } else {
            "upstream idle timeout"
        };
        fail(slf, "timeout", message)
    }

    /// The request was cancelled (client gone): close the connection, deliver nothing.
    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (transport, was_idle, idle) = {
            let mut this = slf.borrow_mut();
            if this.handed_over {
                return Ok(());
            }
            this.take_waiter();
            this.closed = true;
            this.cancel_timer(py)?;
            (
                this.transport.as_ref().map(|t| t.clone_ref(py)),
                std::mem::take(&mut this.in_idle),
                this.idle.clone_ref(py),
            )
        };
        if was_idle {
            leave_idle(slf, idle.bind(py))?;
        }
        close(py, transport, true)
    }

    /// Bytes received after a handover and before Python swapped its protocol in (or None).
    fn take_pending<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.pending.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.pending);
        Some(PyBytes::new(py, &data))
    }

    /// A request is in flight on this connection.
    #[getter]
    fn busy(&self) -> bool {
        self.exchange.is_some()
    }

    /// Bytes arrived since the last `send`.
    #[getter]
    fn got_bytes(&self) -> bool {
        self.got_bytes
    }

    /// The connection is lost, aborted, or closed after a non-reusable response.
    #[getter]
    fn closed(&self) -> bool {
        self.closed || self.transport.is_none()
    }

    /// The last response was handed over to Python (the transport belongs to its protocol).
    #[getter]
    fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// The transport's write buffer is above its high-water mark.
    #[getter]
    fn write_paused(&self) -> bool {
        self.write_paused
    }

    /// The transport, or None before connection_made / after connection_lost.
    #[getter]
    fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport.as_ref().map(|t| t.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "Http1Connection(busy={}, closed={}, handed_over={})",
            self.exchange.is_some(),
            self.closed || self.transport.is_none(),
            self.handed_over
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Http1Connection>()
}
