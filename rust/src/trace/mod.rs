//! Tracing of the data plane, recorded in the core: W3C trace context in and out, one server
//! span per request and one client span per upstream attempt, exported in OTLP/HTTP protobuf
//! batches off the request path.
//!
//! The Python OpenTelemetry SDK costs 56–123 µs per sampled span here, more than a whole
//! proxied request; a span in the core is a few hundred nanoseconds and a channel send.
//! Trace context is always continued (or created) and forwarded, sampled or not; spans are
//! recorded only for sampled traces and only when `tracing.otlp_endpoint` is set. Sampling is
//! parent-based: a sampled parent is followed, a new trace is sampled by trace-id ratio.

pub mod context;
pub mod otlp;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request};
use prost::Message;
use tokio::sync::mpsc;

use crate::config::Tracing;
use crate::proxy::body::ReqBody;
use crate::proxy::upstream::Endpoint;
pub use context::TraceContext;

/// Spans waiting for export before new ones are dropped.
const QUEUE: usize = 8192;
/// Spans per export request.
const BATCH: usize = 512;
/// Longest a span waits for its batch.
const FLUSH: Duration = Duration::from_secs(1);

/// UNIX time in nanoseconds.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Counts of the exporter, for metrics.
#[derive(Debug, Default)]
pub struct TraceCounts {
    /// Spans sent to the collector.
    pub exported: AtomicU64,
    /// Spans dropped: queue full, or the collector refused or could not be reached.
    pub dropped: AtomicU64,
}

/// The tracer of one config: sampling, and the exporter's queue (none when not exporting).
pub struct Tracer {
    settings: Tracing,
    tx: Option<mpsc::Sender<otlp::Span>>,
    /// Exporter counts.
    pub counts: Arc<TraceCounts>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("exporting", &self.tx.is_some())
            .finish()
    }
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

impl Tracer {
    /// A tracer for `settings`; with an endpoint, starts its exporter on the current runtime.
    pub fn new(settings: &Tracing) -> Result<Tracer, String> {
        let counts = Arc::new(TraceCounts::default());
        let tx = match &settings.otlp_endpoint {
            None => None,
            Some(url) => {
                let exporter = Exporter::new(url, settings, counts.clone())?;
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(exporter.run(rx));
                Some(tx)
            }
        };
        Ok(Tracer {
            settings: settings.clone(),
            tx,
            counts,
        })
    }

    /// The settings this tracer runs with.
    pub fn settings(&self) -> &Tracing {
        &self.settings
    }

    /// Whether spans are recorded at all.
    pub fn exporting(&self) -> bool {
        self.tx.is_some()
    }

    /// The trace of an incoming request: its parent (if it sent a valid `traceparent`) and the
    /// server span's own position.
    pub fn begin(&self, traceparent: Option<&HeaderValue>) -> RequestTrace {
        let parent = traceparent
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let server = match parent {
            Some(p) => p.child(),
            None => {
                let mut root = TraceContext::root(false);
                root.sampled = self.exporting()
                    && context::sample_by_ratio(&root.trace_id, self.settings.sampling_ratio);
                root
            }
        };
        RequestTrace {
            parent: parent.map(|p| p.span_id),
            server,
            start: unix_nanos(),
        }
    }

    /// Queues a finished span (dropped, and counted, when the queue is full).
    pub fn record(&self, span: otlp::Span) {
        if let Some(tx) = &self.tx {
            if tx.try_send(span).is_err() {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One request's place in its trace.
#[derive(Debug, Clone, Copy)]
pub struct RequestTrace {
    /// The caller's span, when it sent a trace context.
    pub parent: Option<[u8; 8]>,
    /// The gateway's server span.
    pub server: TraceContext,
    /// When the request arrived, UNIX nanoseconds.
    pub start: u64,
}

impl RequestTrace {
    /// The `traceparent` for an upstream attempt whose span is `attempt`.
    pub fn outgoing(attempt: &TraceContext) -> HeaderValue {
        HeaderValue::from_str(&attempt.header()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// A span of this trace (`parent`: the server span's id for an attempt).
    #[allow(clippy::too_many_arguments)]
    pub fn span(
        &self,
        ctx: &TraceContext,
        parent: Option<[u8; 8]>,
        name: String,
        kind: i32,
        start: u64,
        attributes: Vec<otlp::KeyValue>,
        error: Option<String>,
    ) -> otlp::Span {
        otlp::Span {
            trace_id: ctx.trace_id.to_vec(),
            span_id: ctx.span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: unix_nanos(),
            attributes,
            status: error.map(|message| otlp::Status {
                message,
                code: otlp::STATUS_ERROR,
            }),
        }
    }
}

/// Sets the upstream `traceparent` on a forwarded request's headers.
pub fn set_traceparent(h: &mut http::HeaderMap, attempt: &TraceContext) {
    h.insert(TRACEPARENT.clone(), RequestTrace::outgoing(attempt));
}

/// The exporter: batches spans and posts them to `<endpoint>/v1/traces`.
struct Exporter {
    endpoint: Arc<Endpoint>,
    path: String,
    headers: http::HeaderMap,
    resource: otlp::Resource,
    counts: Arc<TraceCounts>,
}

impl Exporter {
    fn new(url: &str, settings: &Tracing, counts: Arc<TraceCounts>) -> Result<Self, String> {
        let base = url.trim_end_matches('/');
        let (scheme_host, path) = match base.split_once("://") {
            Some((scheme, rest)) => match rest.find('/') {
                Some(i) => (format!("{scheme}://{}", &rest[..i]), rest[i..].to_string()),
                None => (base.to_string(), String::new()),
            },
            None => return Err(format!("tracing.otlp_endpoint: not a URL: {url:?}")),
        };
        let path = if path.ends_with("/v1/traces") {
            path
        } else {
            format!("{path}/v1/traces")
        };
        let endpoint = Endpoint::new(&scheme_host, &crate::config::Tls::default())
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("tracing.headers.{k}: not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("tracing.headers.{k}: not a header value"))?;
            headers.insert(name, value);
        }
        Ok(Exporter {
            endpoint: Arc::new(endpoint),
            path,
            headers,
            resource: otlp::Resource {
                attributes: vec![otlp::KeyValue::str(
                    "service.name",
                    settings.service_name.clone(),
                )],
            },
            counts,
        })
    }

    async fn run(self, mut rx: mpsc::Receiver<otlp::Span>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = match rx.recv().await {
                Some(s) => s,
                None => return, // the tracer is gone (config replaced)
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + FLUSH;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(s)) => batch.push(s),
                    Ok(None) | Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            if self.export(std::mem::take(&mut batch)).await {
                self.counts.exported.fetch_add(n, Ordering::Relaxed);
            } else {
                self.counts.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    async fn export(&self, spans: Vec<otlp::Span>) -> bool {
        let body = otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(otlp::InstrumentationScope {
                        name: "agentgate".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    }),
                    spans,
                }],
            }],
        }
        .encode_to_vec();
        let body = Bytes::from(body);
        // one retry: a collector restart should not lose a batch, a dead one must not pile up
        for _ in 0..2 {
            let mut req = Request::new(ReqBody::Full(Some(body.clone())));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = match self.path.parse() {
                Ok(u) => u,
                Err(_) => return false,
            };
            let h = req.headers_mut();
            h.clone_from(&self.headers);
            h.insert(header::HOST, self.endpoint.authority.clone());
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            let t = Some(Duration::from_secs(5));
            if let Ok(resp) = self.endpoint.send(req, t, t).await {
                let ok = resp.status().is_success();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                if ok {
                    return true;
                }
            }
        }
        false
    }
}

/// Where a request went: what its spans are named and labelled with.
#[derive(Debug, Clone)]
pub struct SpanRoute {
    /// Route id.
    pub route: Arc<str>,
    /// Agent (pool) name.
    pub agent: Arc<str>,
    /// The caller's tenant, when it authenticated.
    pub tenant: Option<Arc<str>>,
}

impl SpanRoute {
    fn label(&self, attrs: &mut Vec<otlp::KeyValue>) {
        attrs.push(otlp::KeyValue::str("http.route", self.route.to_string()));
        attrs.push(otlp::KeyValue::str(
            "agentgate.agent",
            self.agent.to_string(),
        ));
        if let Some(t) = &self.tenant {
            attrs.push(otlp::KeyValue::str("agentgate.tenant", t.to_string()));
        }
    }
}

/// The gateway's span of one sampled request, ended with the request.
pub struct ServerSpan {
    tracer: Arc<Tracer>,
    trace: RequestTrace,
    method: String,
    path: String,
    /// Route id, agent and tenant, once known.
    pub route: Option<SpanRoute>,
}

impl ServerSpan {
    /// A span for a request, when its trace is sampled and spans are exported.
    pub fn start(
        tracer: &Arc<Tracer>,
        trace: &RequestTrace,
        method: &str,
        path: &str,
    ) -> Option<Self> {
        (trace.server.sampled && tracer.exporting()).then(|| ServerSpan {
            tracer: tracer.clone(),
            trace: *trace,
            method: method.to_string(),
            path: path.to_string(),
            route: None,
        })
    }

    /// Records the span with the response status (an error for 5xx or a cut stream).
    pub fn end(self, status: u16, error: Option<String>) {
        let mut attrs = vec![
            otlp::KeyValue::str("http.request.method", self.method.clone()),
            otlp::KeyValue::str("url.path", self.path.clone()),
            otlp::KeyValue::int("http.response.status_code", i64::from(status)),
        ];
        let name = match &self.route {
            Some(r) => {
                r.label(&mut attrs);
                format!("{} {}", self.method, r.route)
            }
            None => self.method.clone(),
        };
        let error = error.or_else(|| (status >= 500).then(|| format!("status {status}")));
        let span = self.trace.span(
            &self.trace.server,
            self.trace.parent,
            name,
            otlp::KIND_SERVER,
            self.trace.start,
            attrs,
            error,
        );
        self.tracer.record(span);
    }

    /// Records one upstream attempt as a client span under this one.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt(
        &self,
        ctx: &TraceContext,
        start: u64,
        endpoint: &str,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
    ) {
        let mut attrs = vec![
            otlp::KeyValue::str("http.request.method", self.method.clone()),
            otlp::KeyValue::str("server.address", endpoint.to_string()),
            otlp::KeyValue::int("agentgate.attempt", i64::from(attempt)),
        ];
        let mut name = "upstream".to_string();
        if let Some(r) = &self.route {
            name = format!("upstream {}", r.agent);
            r.label(&mut attrs);
        }
        if let Some(s) = status {
            attrs.push(otlp::KeyValue::int(
                "http.response.status_code",
                i64::from(s),
            ));
        }
        let error = error.or_else(|| status.filter(|s| *s >= 500).map(|s| format!("status {s}")));
        if let Some(e) = &error {
            attrs.push(otlp::KeyValue::str("error.type", e.clone()));
        }
        let span = self.trace.span(
            ctx,
            Some(self.trace.server.span_id),
            name,
            otlp::KIND_CLIENT,
            start,
            attrs,
            error,
        );
        self.tracer.record(span);
    }
}
