//! Bodies both ways: what goes upstream (empty, buffered, or the client's stream under a size
//! cap) and what goes back (the gateway's own answers, or the upstream's stream under an idle
//! timeout that ends the request's lifecycle when the last byte is out).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::balancer::Outcome;
use crate::lifecycle::InFlight;
use crate::trace::ServerSpan;
use crate::usage::{Usage, UsageScan};

/// A request body that cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Over the route's `max_body`.
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    /// Reading from the client failed.
    #[error("{0}")]
    Client(String),
}

/// The client's body as it streams upstream, counted against the route's cap.
pub struct Streaming {
    inner: Incoming,
    seen: u64,
    cap: Option<u64>,
}

impl Streaming {
    /// Wraps the client's body.
    pub fn new(inner: Incoming, cap: Option<u64>) -> Self {
        Streaming {
            inner,
            seen: 0,
            cap,
        }
    }
}

/// What goes upstream as a request body.
pub enum ReqBody {
    /// No body.
    Empty,
    /// A buffered body (replayable: a retry sends it again).
    Full(Option<Bytes>),
    /// The client's body, streamed once.
    Stream(Streaming),
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(s) => match Pin::new(&mut s.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        s.seen += d.len() as u64;
                        if let Some(cap) = s.cap {
                            if s.seen > cap {
                                return Poll::Ready(Some(Err(BodyError::TooLarge(cap))));
                            }
                        }
                    }
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Ready(Some(Err(e))) => {
                    Poll::Ready(Some(Err(BodyError::Client(e.to_string()))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(s) => s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::Stream(s) => s.inner.size_hint(),
        }
    }
}

/// Ends a proxied request when its response body ends: counts it and finishes its lifecycle.
pub struct Completion {
    flight: Option<InFlight>,
    status: u16,
    started: Instant,
    upstream_nanos: u64,
    span: Option<ServerSpan>,
    /// Usage the response's headers stated, or a scanner of its body.
    usage: Option<Usage>,
    scan: Option<Box<UsageScan>>,
}

impl Completion {
    /// For a response of `status` whose head came `upstream_nanos` after the attempt started.
    pub fn new(
        flight: InFlight,
        status: u16,
        started: Instant,
        upstream_nanos: u64,
        span: Option<ServerSpan>,
    ) -> Self {
        Completion {
            flight: Some(flight),
            status,
            started,
            upstream_nanos,
            span,
            usage: None,
            scan: None,
        }
    }

    /// Reads token usage from the response: its headers, or else its body as it streams.
    pub fn track_usage(&mut self, headers: &http::HeaderMap) {
        self.usage = crate::usage::from_headers(headers);
        if self.usage.is_none() {
            self.scan = UsageScan::for_response(headers).map(Box::new);
        }
    }

    fn saw(&mut self, chunk: &[u8]) {
        if let Some(s) = self.scan.as_mut() {
            s.feed(chunk);
        }
    }

    fn end(&mut self, status: u16, outcome: Outcome) {
        let usage = self
            .usage
            .take()
            .or_else(|| self.scan.take().and_then(|s| s.finish()));
        if let (Some(u), Some(f)) = (usage, self.flight.as_ref()) {
            let tenant = f.admitted.identity.as_ref().and_then(|i| i.tenant.clone());
            f.pool().stats.usage(tenant, &u);
        }
        if let Some(f) = self.flight.take() {
            f.route()
                .stats
                .record(status, self.started.elapsed().as_secs_f64());
            f.finish(self.upstream_nanos, outcome);
        }
        if let Some(span) = self.span.take() {
            let error = match (status, outcome) {
                (499, _) => Some("client went away"),
                (_, Outcome::Failure) if status < 500 => Some("upstream stream broke"),
                _ => None,
            };
            span.end(status, error);
        }
    }

    /// The whole body went out.
    pub fn done(&mut self) {
        let outcome = if self.status >= 500 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        self.end(self.status, outcome);
    }

    /// The upstream stream broke or stalled after the head went out.
    pub fn fail(&mut self) {
        self.end(self.status, Outcome::Failure);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // dropped before the end: the client went away (499, not the upstream's fault)
        self.end(499, Outcome::Cancelled);
    }
}

/// An error that cuts the client's response stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamCut {
    /// The upstream sent nothing for `timeouts.idle`.
    #[error("upstream idle timeout")]
    Idle,
    /// The request ran past `timeouts.total`.
    #[error("upstream total timeout")]
    Total,
    /// The upstream connection broke mid-body.
    #[error("upstream stream broke: {0}")]
    Broken(String),
}

/// The upstream's response body on its way to the client.
pub struct UpstreamBody {
    inner: Incoming,
    idle: Option<Duration>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    deadline: Option<Pin<Box<Sleep>>>,
    completion: Completion,
}

impl UpstreamBody {
    /// Streams `inner`, ending `completion` with it.
    pub fn new(
        inner: Incoming,
        idle: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
        completion: Completion,
    ) -> Self {
        UpstreamBody {
            inner,
            idle,
            idle_timer: None,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            completion,
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper drops a body it knows is complete (empty, or a HEAD answer) without polling it
        if self.inner.is_end_stream() {
            self.completion.done();
        }
    }
}

/// What goes back to the client.
pub enum ResBody {
    /// The gateway's own answer (problem+json), or nothing.
    Full(Option<Bytes>),
    /// The upstream's body.
    Upstream(Box<UpstreamBody>),
}

impl ResBody {
    /// An in-memory body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        ResBody::Full(Some(b.into()))
    }

    /// No body.
    pub fn empty() -> Self {
        ResBody::Full(None)
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        let u = match self.get_mut() {
            ResBody::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResBody::Upstream(u) => u,
        };
        match Pin::new(&mut u.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    u.completion.saw(d);
                }
                if u.inner.is_end_stream() {
                    // a known-length body ends with its last bytes: hyper will not poll again
                    u.completion.done();
                } else if let (Some(t), Some(idle)) = (u.idle_timer.as_mut(), u.idle) {
                    t.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                u.completion.fail();
                Poll::Ready(Some(Err(StreamCut::Broken(e.to_string()))))
            }
            Poll::Ready(None) => {
                u.completion.done();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(d) = u.deadline.as_mut() {
                    if d.as_mut().poll(cx).is_ready() {
                        u.completion.fail();
                        return Poll::Ready(Some(Err(StreamCut::Total)));
                    }
                }
                if let Some(idle) = u.idle {
                    // the timer exists only once the body had to wait: small bodies never pay
                    let t = u
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if t.as_mut().poll(cx).is_ready() {
                        u.completion.fail();
                        return Poll::Ready(Some(Err(StreamCut::Idle)));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Full(b) => b.is_none(),
            ResBody::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}
