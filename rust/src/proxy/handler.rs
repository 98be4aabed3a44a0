//! One request, from its head to the last byte of its response.
//!
//! 1. Head limits (431) and path normalisation (400).
//! 2. [`Engine::admit`]: route, auth, size, signature, rate limit, admission, endpoint.
//! 3. The body: none, buffered (small or signed: replayable), or streamed (once).
//! 4. Attempts: send, classify the outcome, retry under the agent's policy.
//! 5. The response streams back; its end finishes the request's lifecycle.
//!
//! A client that goes away drops this future, which drops the upstream request (hyper closes
//! that connection) and the in-flight request (its slot goes to the next waiter).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::balancer::Outcome;
use crate::config::limit;
use crate::engine::{reject, Decision, Engine, Rejection, RequestHead};
use crate::httpsig::{DigestCheck, RequestView};
use crate::lifecycle::InFlight;
use crate::normalize::normalize_path;
use crate::proxy::body::{Completion, ReqBody, ResBody, Streaming, UpstreamBody};
use crate::proxy::forward::{self, X_REQUEST_ID};
use crate::proxy::problem::problem;
use crate::proxy::upstream::{ErrorKind, UpstreamError};
use crate::retry::{idempotent, AttemptOutcome};
use crate::trace::{set_traceparent, unix_nanos, RequestTrace, ServerSpan, TraceContext};

/// Known-length bodies up to this size are read whole, so a retry can send them again.
const BUFFER_REQUEST: u64 = 64 * 1024;

/// What every request handler shares.
pub struct Shared {
    /// The decision engine.
    pub engine: Arc<Engine>,
    rid_prefix: String,
    rid_seq: AtomicU64,
}

impl Shared {
    /// State for one data plane.
    pub fn new(engine: Arc<Engine>) -> Self {
        // request ids: a random per-process prefix plus a counter, unique without a UUID each
        Shared {
            engine,
            rid_prefix: format!("{:016x}", fastrand::u64(..)),
            rid_seq: AtomicU64::new(0),
        }
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.rid_seq.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}{n:016x}", self.rid_prefix))
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }

    fn refuse(&self, r: &Rejection, rid: &HeaderValue) -> Response<ResBody> {
        self.engine.gateway_stats.rejected(r.status);
        problem(r, rid)
    }
}

/// The request head as the engine reads it.
struct Head<'a> {
    parts: &'a Parts,
    path: &'a str,
    authority: &'a str,
    client_ip: &'a str,
}

impl RequestView for Head<'_> {
    fn method(&self) -> &str {
        self.parts.method.as_str()
    }
    fn scheme(&self) -> &str {
        "http"
    }
    fn authority(&self) -> &str {
        self.authority
    }
    fn path(&self) -> &str {
        // signatures cover the path as the client sent it
        self.parts.uri.path()
    }
    fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }
    fn header_values(&self, name: &str, f: &mut dyn FnMut(&str)) {
        for v in self.parts.headers.get_all(name) {
            if let Ok(s) = v.to_str() {
                f(s);
            }
        }
    }
}

impl RequestHead for Head<'_> {
    fn route_path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn client_ip(&self) -> &str {
        self.client_ip
    }
    fn content_length(&self) -> Option<u64> {
        content_length(&self.parts.headers)
    }
    fn has_body(&self) -> bool {
        has_body(&self.parts.headers)
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING) || content_length(h).is_some_and(|n| n > 0)
}

fn head_size(parts: &Parts) -> usize {
    let uri = &parts.uri;
    let target = uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
        + uri.authority().map_or(0, |a| a.as_str().len() + 8);
    let mut n = parts.method.as_str().len() + target + 12;
    for (k, v) in &parts.headers {
        n += k.as_str().len() + v.len() + 4;
    }
    n
}

fn is_upgrade(parts: &Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.headers.contains_key(header::UPGRADE)
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ResBody> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let given = parts.headers.get(&X_REQUEST_ID).cloned();
    let rid = given.clone().unwrap_or_else(|| shared.request_id());
    let snap = shared.engine.snapshot();
    let rules = snap.http;
    let tracer = snap.tracer.clone();
    drop(snap);
    let trace = tracer.begin(parts.headers.get("traceparent"));
    let mut span = ServerSpan::start(&tracer, &trace, &parts.method, parts.uri.path());
    let refuse = |r: &Rejection, span: Option<ServerSpan>| {
        if let Some(s) = span {
            s.end(r.status, None);
        }
        shared.refuse(r, &rid)
    };
    if parts.headers.len() > rules.max_headers || head_size(&parts) > rules.max_header_bytes {
        let r = reject(
            431,
            "header_too_large",
            format!(
                "the request head exceeds {} bytes or {} fields",
                rules.max_header_bytes, rules.max_headers
            ),
        );
        return refuse(&r, span);
    }
    let path = match normalize_path(parts.uri.path(), &rules.path) {
        Ok(p) => p.into_owned(),
        Err(e) => return refuse(&reject(400, "bad_path", e.to_string()), span),
    };
    let client_ip = peer.ip().to_string();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let head = Head {
        parts: &parts,
        path: &path,
        authority: &authority,
        client_ip: &client_ip,
    };
    let flight = match shared.engine.admit(&head) {
        Decision::Go(f) => f,
        Decision::Wait(q) => match q.wait().await {
            Ok(f) => f,
            Err(r) => return refuse(&r, span),
        },
        Decision::Activate(a) => match a.wait().await {
            Ok(f) => f,
            Err(r) => return refuse(&r, span),
        },
        Decision::Reject(r) => return refuse(&r, span),
    };
    let route = flight.route();
    if let Some(s) = span.as_mut() {
        let tenant = flight
            .admitted
            .identity
            .as_ref()
            .and_then(|i| i.tenant.clone());
        s.route = Some(crate::trace::SpanRoute {
            route: route.id.clone(),
            agent: flight.pool().name.clone(),
            tenant,
        });
    }
    let upgrade = is_upgrade(&parts);
    let empty_body_length = !has_body(&parts.headers)
        && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    // the upstream's body: buffered when small or signed (and so replayable), else streamed
    let (req_body, replayable) = match read_body(&parts, body, &flight).await {
        Ok(b) => b,
        Err(r) => {
            let status = r.status;
            flight
                .route()
                .stats
                .record(status, started.elapsed().as_secs_f64());
            flight.finish(0, Outcome::Cancelled);
            if let Some(s) = span {
                s.end(status, None);
            }
            return problem(&r, &rid);
        }
    };
    let identity = flight.admitted.identity.clone();
    let fwd = forward::Upstream {
        client_ip: &client_ip,
        scheme: "http",
        request_id: if given.is_some() { None } else { Some(&rid) },
        hide_auth: route.auth_required,
        forward_proxy_auth: route.forward_proxy_auth,
        upgrade,
        empty_body_length,
        identity: identity
            .as_ref()
            .map(|i| (i.tenant.as_deref(), i.key_id.as_ref())),
    };
    let client_host = forward::request_headers(&mut parts.headers, &fwd);
    let query = parts.uri.query().map(str::to_string);
    let exchange = Exchange {
        method: parts.method.clone(),
        path,
        query,
        headers: std::mem::take(&mut parts.headers),
        client_host,
        rid,
        started,
        upgrade: upgrade.then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>()),
        trace,
        span,
    };
    exchange.run(flight, req_body, replayable).await
}

async fn read_body(
    parts: &Parts,
    body: Incoming,
    flight: &InFlight,
) -> Result<(ReqBody, bool), Rejection> {
    let route = flight.route();
    if !has_body(&parts.headers) {
        return Ok((ReqBody::Empty, true));
    }
    if route.signed {
        // checked against Content-Digest before anything goes upstream: a streamed body
        // could not be taken back
        let joined = parts
            .headers
            .get_all("content-digest")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let mut check = DigestCheck::from_header(&joined).map_err(|e| {
            reject(
                401,
                "bad_signature",
                format!("malformed Content-Digest: {e}"),
            )
        })?;
        let cap = flight.snapshot().signing_cap(route);
        let bytes = collect(body, cap).await?;
        check.update(&bytes);
        if check.finish().is_err() {
            return Err(reject(
                401,
                "bad_signature",
                "Content-Digest does not match the body",
            ));
        }
        return Ok((ReqBody::Full(Some(bytes)), true));
    }
    match content_length(&parts.headers) {
        Some(n) if n <= BUFFER_REQUEST => {
            let cap = route.max_body.map_or(n, |m| m.min(n));
            Ok((ReqBody::Full(Some(collect(body, cap).await?)), true))
        }
        _ => Ok((ReqBody::Stream(Streaming::new(body, route.max_body)), false)),
    }
}

async fn collect(mut body: Incoming, cap: u64) -> Result<Bytes, Rejection> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| reject(400, "bad_request", format!("request body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            if (buf.len() + d.len()) as u64 > cap {
                return Err(reject(
                    413,
                    "too_large",
                    format!("body exceeds {cap} bytes"),
                ));
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(buf.freeze())
}

/// One admitted request's attempts.
struct Exchange {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    client_host: Option<HeaderValue>,
    rid: HeaderValue,
    started: Instant,
    upgrade: Option<Option<hyper::upgrade::OnUpgrade>>,
    trace: RequestTrace,
    span: Option<ServerSpan>,
}

fn outcome_of(kind: ErrorKind) -> AttemptOutcome {
    match kind {
        ErrorKind::ConnectFailure => AttemptOutcome::ConnectFailure,
        ErrorKind::ConnectTimeout
        | ErrorKind::FirstByteTimeout
        | ErrorKind::IdleTimeout
        | ErrorKind::TotalTimeout => AttemptOutcome::Timeout,
        _ => AttemptOutcome::Reset,
    }
}

fn failure(e: &UpstreamError) -> Rejection {
    match e.kind {
        ErrorKind::ConnectTimeout => reject(504, "upstream_timeout", "upstream connect timeout"),
        ErrorKind::FirstByteTimeout => {
            reject(504, "upstream_timeout", "upstream first byte timeout")
        }
        ErrorKind::IdleTimeout => reject(504, "upstream_timeout", "upstream idle timeout"),
        ErrorKind::TotalTimeout => reject(504, "upstream_timeout", "upstream total timeout"),
        ErrorKind::ConnectFailure => reject(
            502,
            "upstream_connect_failure",
            format!("connect failed: {}", e.detail),
        ),
        ErrorKind::Reset => reject(502, "upstream_reset", "upstream closed the connection"),
        ErrorKind::Protocol => reject(502, "upstream_error", e.detail.clone()),
        ErrorKind::BodyTooLarge => reject(413, "too_large", e.detail.clone()),
        ErrorKind::ClientBody => reject(400, "bad_request", e.detail.clone()),
    }
}

impl Exchange {
    fn request(
        &self,
        flight: &InFlight,
        body: ReqBody,
        headers: HeaderMap,
        attempt: &TraceContext,
    ) -> Request<ReqBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        let ep = flight.endpoint();
        let prefix = ep.map_or("", |e| e.prefix.as_str());
        let target = forward::target(
            prefix,
            &self.path,
            flight.admitted.strip,
            self.query.as_deref(),
        );
        *req.uri_mut() = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
        *req.headers_mut() = headers;
        let host = if flight.pool().config.preserve_host() {
            self.client_host.clone()
        } else {
            ep.map(|e| e.authority.clone())
        };
        if let Some(h) = host {
            req.headers_mut().insert(header::HOST, h);
        }
        for (k, v) in &flight.pool().headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        // always forwarded, sampled or not, so the agent continues the same trace
        set_traceparent(req.headers_mut(), attempt);
        req
    }

    async fn run(
        mut self,
        mut flight: InFlight,
        mut body: ReqBody,
        replayable: bool,
    ) -> Response<ResBody> {
        let pool = flight.pool().clone();
        let t = &pool.config.timeouts;
        let (connect, first_byte, idle) = (limit(t.connect), limit(t.first_byte), limit(t.idle));
        let deadline = limit(t.total).map(|d| tokio::time::Instant::from_std(self.started + d));
        let method_ok = idempotent(self.method.as_str()) || flight.route().retry_non_idempotent;
        let mut stale_retried = false;
        loop {
            let Some(ep) = flight.endpoint().cloned() else {
                return self.give_up(flight, &reject(503, "no_endpoint", "no endpoint"));
            };
            // a replayable request keeps its body and headers for a retry; a streamed one
            // goes once
            let (this_body, headers) = match &body {
                ReqBody::Full(b) => (ReqBody::Full(b.clone()), self.headers.clone()),
                ReqBody::Empty => (ReqBody::Empty, self.headers.clone()),
                ReqBody::Stream(_) => (
                    std::mem::replace(&mut body, ReqBody::Empty),
                    std::mem::take(&mut self.headers),
                ),
            };
            let attempt_ctx = self.trace.server.child();
            let attempt_start = self.span.as_ref().map(|_| unix_nanos());
            let req = self.request(&flight, this_body, headers, &attempt_ctx);
            let t0 = Instant::now();
            let sent = ep.send(req, connect, first_byte);
            let res = match deadline {
                Some(d) => tokio::time::timeout_at(d, sent).await.unwrap_or_else(|_| {
                    Err(UpstreamError::new(
                        ErrorKind::TotalTimeout,
                        "upstream total timeout",
                    ))
                }),
                None => sent.await,
            };
            let latency = t0.elapsed();
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            let time_left =
                deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            if let (Some(s), Some(t)) = (&self.span, attempt_start) {
                let (status, error) = match &res {
                    Ok(r) => (Some(r.status().as_u16()), None),
                    Err(e) => (None, Some(e.kind.as_str())),
                };
                s.attempt(&attempt_ctx, t, &ep.url, flight.attempt(), status, error);
            }
            match res {
                Ok(resp) => {
                    pool.stats.upstream(latency.as_secs_f64());
                    let status = resp.status().as_u16();
                    if status >= 500 || status == 429 {
                        let next = pool.retry.next(
                            flight.attempt(),
                            AttemptOutcome::Status(status),
                            method_ok,
                            replayable,
                            forward::retry_after(resp.headers()),
                            time_left,
                            &pool.budget,
                            fastrand::f64(),
                        );
                        if let Ok(delay) = next {
                            let outcome = if status >= 500 {
                                Outcome::Failure
                            } else {
                                Outcome::Success
                            };
                            drop(resp);
                            if let Err(r) = flight.retry(nanos, outcome) {
                                return self.give_up(flight, &r);
                            }
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    return self.respond(flight, resp, nanos, idle, deadline);
                }
                Err(e) => {
                    if e.stale && replayable && !stale_retried {
                        // the kept-alive connection was closed under us: try a fresh one
                        stale_retried = true;
                        continue;
                    }
                    if matches!(e.kind, ErrorKind::BodyTooLarge | ErrorKind::ClientBody) {
                        let r = failure(&e);
                        flight
                            .route()
                            .stats
                            .record(r.status, self.started.elapsed().as_secs_f64());
                        flight.finish(nanos, Outcome::Cancelled);
                        self.end_span(r.status, Some(e.kind.as_str()));
                        return problem(&r, &self.rid);
                    }
                    let next = pool.retry.next(
                        flight.attempt(),
                        outcome_of(e.kind),
                        method_ok,
                        replayable,
                        None,
                        time_left,
                        &pool.budget,
                        fastrand::f64(),
                    );
                    match next {
                        Ok(delay) => {
                            if let Err(r) = flight.retry(nanos, Outcome::Failure) {
                                return self.give_up(flight, &r);
                            }
                            tokio::time::sleep(delay).await;
                        }
                        Err(_) => {
                            let r = failure(&e);
                            flight
                                .route()
                                .stats
                                .record(r.status, self.started.elapsed().as_secs_f64());
                            flight.finish(nanos, Outcome::Failure);
                            self.end_span(r.status, Some(e.kind.as_str()));
                            return problem(&r, &self.rid);
                        }
                    }
                }
            }
        }
    }

    /// No endpoint for a retry: the request ends with the gateway's refusal.
    fn give_up(&mut self, flight: InFlight, r: &Rejection) -> Response<ResBody> {
        flight
            .route()
            .stats
            .record(r.status, self.started.elapsed().as_secs_f64());
        flight.finish(0, Outcome::Cancelled);
        self.end_span(r.status, None);
        problem(r, &self.rid)
    }

    fn end_span(&mut self, status: u16, error: Option<&'static str>) {
        if let Some(s) = self.span.take() {
            s.end(status, error);
        }
    }

    fn respond(
        mut self,
        flight: InFlight,
        resp: Response<Incoming>,
        nanos: u64,
        idle: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
    ) -> Response<ResBody> {
        let route = flight.route();
        let (mut head, body) = resp.into_parts();
        let switching = head.status == StatusCode::SWITCHING_PROTOCOLS;
        forward::response_headers(
            &mut head.headers,
            &self.rid,
            route.forward_proxy_auth,
            switching && self.upgrade.is_some(),
        );
        if let Some((policy, state)) = &flight.admitted.ratelimit {
            if let (Ok(p), Ok(s)) = (HeaderValue::from_str(policy), HeaderValue::from_str(state)) {
                head.headers.insert("ratelimit-policy", p);
                head.headers.insert("ratelimit", s);
            }
        }
        let status = head.status.as_u16();
        if switching {
            let upstream = head.extensions.remove::<hyper::upgrade::OnUpgrade>();
            if let (Some(Some(client)), Some(upstream)) = (self.upgrade.take(), upstream) {
                self.end_span(101, None);
                tunnel(client, upstream, flight, self.started);
                return Response::from_parts(head, ResBody::empty());
            }
        }
        let mut completion = Completion::new(flight, status, self.started, nanos, self.span.take());
        if status < 300 {
            completion.track_usage(&head.headers);
        }
        let body = UpstreamBody::new(body, idle, deadline, completion);
        Response::from_parts(head, ResBody::Upstream(Box::new(body)))
    }
}

/// Copies bytes both ways between an upgraded client and upstream (WebSocket), holding the
/// request's slot until either side closes.
fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    flight: InFlight,
    started: Instant,
) {
    tokio::spawn(async move {
        let ok = match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let mut c = hyper_util::rt::TokioIo::new(c);
                let mut u = hyper_util::rt::TokioIo::new(u);
                tokio::io::copy_bidirectional(&mut c, &mut u).await.is_ok()
            }
            Err(_) => false,
        };
        flight
            .route()
            .stats
            .record(101, started.elapsed().as_secs_f64());
        flight.finish(
            0,
            if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        );
    });
}
