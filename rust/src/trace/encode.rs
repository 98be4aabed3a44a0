//! Finished spans as the request path records them, and their OTLP/protobuf encoding.
//!
//! A [`Record`] is what a span costs on the request path: ids, timestamps, the method, the
//! request path (the one allocation), shared route labels and static error names. Span names,
//! attribute keys and status messages are only spelled out here, when the exporter encodes a
//! batch straight into its request body: no per-span message tree (the prost messages of
//! [`super::otlp`] cost ~22 allocations per span to build and free, and a second length pass
//! per nesting level to encode). The bytes are the same as prost's encoding of the
//! equivalent [`super::otlp::ExportTraceServiceRequest`] (tested below), field by field in tag
//! order with proto3 defaults left out.

use std::sync::Arc;

use http::Method;

use super::SpanRoute;

/// Span kind: the gateway's request.
const KIND_SERVER: u64 = 2;
/// Span kind: an upstream attempt.
const KIND_CLIENT: u64 = 3;
/// Status code: error.
const STATUS_ERROR: u64 = 2;

/// What only one kind of span carries.
#[derive(Debug)]
pub enum Detail {
    /// The gateway's request: its path as received.
    Server {
        /// `url.path`.
        path: Box<str>,
    },
    /// One upstream attempt.
    Client {
        /// `server.address`: the endpoint's configured URL.
        endpoint: Arc<str>,
        /// `agentgate.attempt`, from 1.
        attempt: u32,
    },
}

/// A finished span, waiting for export.
#[derive(Debug)]
pub struct Record {
    /// 16-byte trace id.
    pub trace_id: [u8; 16],
    /// 8-byte span id.
    pub span_id: [u8; 8],
    /// The parent span, if any.
    pub parent: Option<[u8; 8]>,
    /// Start, UNIX nanoseconds.
    pub start: u64,
    /// End, UNIX nanoseconds.
    pub end: u64,
    /// The request's method.
    pub method: Method,
    /// Response status (a client span without a response has none).
    pub status: Option<u16>,
    /// Why it failed, when it did (a 5xx without one reads `status <code>`).
    pub error: Option<&'static str>,
    /// Route, agent and tenant, once known.
    pub route: Option<SpanRoute>,
    /// Server or client.
    pub detail: Detail,
}

/// An attribute value.
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(Parts<'a>),
    Int(i64),
}

fn s(v: &str) -> Val<'_> {
    Val::Str(Parts([v, "", ""]))
}

/// At most three pieces of one string field, written back to back (`GET` `␠` `route`).
#[derive(Clone, Copy, Default)]
struct Parts<'a>([&'a str; 3]);

impl Parts<'_> {
    fn len(&self) -> usize {
        self.0.iter().map(|s| s.len()).sum()
    }
}

/// "503" etc., without allocating.
struct Code([u8; 5], usize);

impl Code {
    fn new(mut n: u16) -> Code {
        let mut buf = [0u8; 5];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Code(buf, i)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[self.1..]).unwrap_or("")
    }
}

const MAX_ATTRS: usize = 8;

/// A record's fields as they are encoded.
struct View<'a> {
    kind: u64,
    name: Parts<'a>,
    attrs: [(&'static str, Val<'a>); MAX_ATTRS],
    n: usize,
    /// Status message, when the span is an error.
    status: Option<Parts<'a>>,
}

impl<'a> View<'a> {
    fn push(&mut self, key: &'static str, v: Val<'a>) {
        if self.n < MAX_ATTRS {
            self.attrs[self.n] = (key, v);
            self.n += 1;
        }
    }

    fn label(&mut self, r: &'a SpanRoute) {
        self.push("http.route", s(&r.route));
        self.push("agentgate.agent", s(&r.agent));
        if let Some(t) = &r.tenant {
            self.push("agentgate.tenant", s(t));
        }
    }

    fn of(rec: &'a Record, code: &'a Code) -> View<'a> {
        let method = rec.method.as_str();
        let mut v = View {
            kind: KIND_SERVER,
            name: Parts::default(),
            attrs: [("", Val::Int(0)); MAX_ATTRS],
            n: 0,
            status: None,
        };
        // a 5xx without a stated reason is an error named after its status
        let error = match (rec.error, rec.status) {
            (Some(e), _) => Some(Parts([e, "", ""])),
            (None, Some(s)) if s >= 500 => Some(Parts(["status ", code.as_str(), ""])),
            _ => None,
        };
        match &rec.detail {
            Detail::Server { path } => {
                v.push("http.request.method", s(method));
                v.push("url.path", s(path));
                v.push(
                    "http.response.status_code",
                    Val::Int(i64::from(rec.status.unwrap_or(0))),
                );
                v.name = match &rec.route {
                    Some(r) => {
                        v.label(r);
                        Parts([method, " ", &r.route])
                    }
                    None => Parts([method, "", ""]),
                };
            }
            Detail::Client { endpoint, attempt } => {
                v.kind = KIND_CLIENT;
                v.push("http.request.method", s(method));
                v.push("server.address", s(endpoint));
                v.push("agentgate.attempt", Val::Int(i64::from(*attempt)));
                v.name = Parts(["upstream", "", ""]);
                if let Some(r) = &rec.route {
                    v.name = Parts(["upstream ", &r.agent, ""]);
                    v.label(r);
                }
                if let Some(s) = rec.status {
                    v.push("http.response.status_code", Val::Int(i64::from(s)));
                }
                if let Some(e) = error {
                    v.push("error.type", Val::Str(e));
                }
            }
        }
        v.status = error;
        v
    }
}

fn varint_len(v: u64) -> usize {
    // 7 bits per byte, at least one byte
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// A length-delimited field of `n` bytes (one-byte tag).
fn delimited_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn put_delimited(buf: &mut Vec<u8>, tag: u8, n: usize) {
    buf.push(tag);
    put_varint(buf, n as u64);
}

fn any_len(v: Val<'_>) -> usize {
    match v {
        Val::Str(p) => delimited_len(p.len()),
        Val::Int(i) => 1 + varint_len(i as u64),
    }
}

fn kv_len(key: &str, v: Val<'_>) -> usize {
    delimited_len(key.len()) + delimited_len(any_len(v))
}

/// `KeyValue { key = 1, value = 2: AnyValue { string_value = 1 | int_value = 3 } }`.
fn put_kv(buf: &mut Vec<u8>, key: &str, v: Val<'_>) {
    put_delimited(buf, 0x0a, key.len());
    buf.extend_from_slice(key.as_bytes());
    put_delimited(buf, 0x12, any_len(v));
    match v {
        Val::Str(p) => {
            put_delimited(buf, 0x0a, p.len());
            for part in p.0 {
                buf.extend_from_slice(part.as_bytes());
            }
        }
        Val::Int(i) => {
            buf.push(0x18);
            put_varint(buf, i as u64);
        }
    }
}

fn status_len(msg: &Parts<'_>) -> usize {
    let m = msg.len();
    (if m > 0 { delimited_len(m) } else { 0 }) + 1 + varint_len(STATUS_ERROR)
}

impl View<'_> {
    /// The encoded `Span` message, without its own tag and length.
    fn len(&self, rec: &Record) -> usize {
        let mut n = delimited_len(16) + delimited_len(8);
        if rec.parent.is_some() {
            n += delimited_len(8);
        }
        let name = self.name.len();
        if name > 0 {
            n += delimited_len(name);
        }
        n += 1 + varint_len(self.kind);
        if rec.start != 0 {
            n += 9;
        }
        if rec.end != 0 {
            n += 9;
        }
        for (k, v) in &self.attrs[..self.n] {
            n += delimited_len(kv_len(k, *v));
        }
        if let Some(s) = &self.status {
            n += delimited_len(status_len(s));
        }
        n
    }

    fn put(&self, rec: &Record, buf: &mut Vec<u8>) {
        put_delimited(buf, 0x0a, 16);
        buf.extend_from_slice(&rec.trace_id);
        put_delimited(buf, 0x12, 8);
        buf.extend_from_slice(&rec.span_id);
        if let Some(p) = &rec.parent {
            put_delimited(buf, 0x22, 8);
            buf.extend_from_slice(p);
        }
        let name = self.name.len();
        if name > 0 {
            put_delimited(buf, 0x2a, name);
            for part in self.name.0 {
                buf.extend_from_slice(part.as_bytes());
            }
        }
        buf.push(0x30);
        put_varint(buf, self.kind);
        if rec.start != 0 {
            buf.push(0x39);
            buf.extend_from_slice(&rec.start.to_le_bytes());
        }
        if rec.end != 0 {
            buf.push(0x41);
            buf.extend_from_slice(&rec.end.to_le_bytes());
        }
        for (k, v) in &self.attrs[..self.n] {
            put_delimited(buf, 0x4a, kv_len(k, *v));
            put_kv(buf, k, *v);
        }
        if let Some(s) = &self.status {
            put_delimited(buf, 0x7a, status_len(s));
            let m = s.len();
            if m > 0 {
                put_delimited(buf, 0x12, m);
                for part in s.0 {
                    buf.extend_from_slice(part.as_bytes());
                }
            }
            buf.push(0x18);
            put_varint(buf, STATUS_ERROR);
        }
    }
}

fn record_len(rec: &Record) -> usize {
    let code = Code::new(rec.status.unwrap_or(0));
    View::of(rec, &code).len(rec)
}

/// The parts of an export request that do not change: its resource and scope, encoded once.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `ResourceSpans.resource` as a whole field.
    resource: Vec<u8>,
    /// `ScopeSpans.scope` as a whole field.
    scope: Vec<u8>,
}

impl Envelope {
    /// The envelope of an exporter whose resource is `service.name = service`.
    pub fn new(service: &str, scope: &str, version: &str) -> Envelope {
        let attr = kv_len("service.name", s(service));
        let res = delimited_len(attr);
        let mut resource = Vec::with_capacity(delimited_len(res));
        put_delimited(&mut resource, 0x0a, res);
        put_delimited(&mut resource, 0x0a, attr);
        put_kv(&mut resource, "service.name", s(service));
        let mut inner = Vec::new();
        if !scope.is_empty() {
            put_delimited(&mut inner, 0x0a, scope.len());
            inner.extend_from_slice(scope.as_bytes());
        }
        if !version.is_empty() {
            put_delimited(&mut inner, 0x12, version.len());
            inner.extend_from_slice(version.as_bytes());
        }
        let mut scope = Vec::with_capacity(delimited_len(inner.len()));
        put_delimited(&mut scope, 0x0a, inner.len());
        scope.extend_from_slice(&inner);
        Envelope { resource, scope }
    }

    /// One `ExportTraceServiceRequest` carrying `spans` (one resource, one scope); `lens` is
    /// scratch space kept by the caller between batches.
    pub fn encode(&self, spans: &[Record], lens: &mut Vec<usize>) -> Vec<u8> {
        lens.clear();
        lens.extend(spans.iter().map(record_len));
        let spans_len: usize = lens.iter().map(|n| delimited_len(*n)).sum();
        let ss = self.scope.len() + spans_len;
        let rs = self.resource.len() + delimited_len(ss);
        let mut buf = Vec::with_capacity(delimited_len(rs));
        put_delimited(&mut buf, 0x0a, rs);
        buf.extend_from_slice(&self.resource);
        put_delimited(&mut buf, 0x12, ss);
        buf.extend_from_slice(&self.scope);
        for (rec, n) in spans.iter().zip(lens.iter()) {
            put_delimited(&mut buf, 0x12, *n);
            let code = Code::new(rec.status.unwrap_or(0));
            View::of(rec, &code).put(rec, &mut buf);
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::super::otlp;
    use super::*;
    use prost::Message;

    /// The message tree the exporter built before it encoded records directly: the contract.
    fn message(rec: &Record) -> otlp::Span {
        let method = rec.method.as_str().to_string();
        let label = |attrs: &mut Vec<otlp::KeyValue>, r: &SpanRoute| {
            attrs.push(otlp::KeyValue::str("http.route", r.route.to_string()));
            attrs.push(otlp::KeyValue::str("agentgate.agent", r.agent.to_string()));
            if let Some(t) = &r.tenant {
                attrs.push(otlp::KeyValue::str("agentgate.tenant", t.to_string()));
            }
        };
        let (name, kind, attrs, error) = match &rec.detail {
            Detail::Server { path } => {
                let status = rec.status.unwrap_or(0);
                let mut attrs = vec![
                    otlp::KeyValue::str("http.request.method", method.clone()),
                    otlp::KeyValue::str("url.path", path.to_string()),
                    otlp::KeyValue::int("http.response.status_code", i64::from(status)),
                ];
                let name = match &rec.route {
                    Some(r) => {
                        label(&mut attrs, r);
                        format!("{} {}", method, r.route)
                    }
                    None => method.clone(),
                };
                let error = rec
                    .error
                    .map(str::to_string)
                    .or_else(|| (status >= 500).then(|| format!("status {status}")));
                (name, otlp::KIND_SERVER, attrs, error)
            }
            Detail::Client { endpoint, attempt } => {
                let mut attrs = vec![
                    otlp::KeyValue::str("http.request.method", method.clone()),
                    otlp::KeyValue::str("server.address", endpoint.to_string()),
                    otlp::KeyValue::int("agentgate.attempt", i64::from(*attempt)),
                ];
                let mut name = "upstream".to_string();
                if let Some(r) = &rec.route {
                    name = format!("upstream {}", r.agent);
                    label(&mut attrs, r);
                }
                if let Some(s) = rec.status {
                    attrs.push(otlp::KeyValue::int(
                        "http.response.status_code",
                        i64::from(s),
                    ));
                }
                let error = rec.error.map(str::to_string).or_else(|| {
                    rec.status
                        .filter(|s| *s >= 500)
                        .map(|s| format!("status {s}"))
                });
                if let Some(e) = &error {
                    attrs.push(otlp::KeyValue::str("error.type", e.clone()));
                }
                (name, otlp::KIND_CLIENT, attrs, error)
            }
        };
        otlp::Span {
            trace_id: rec.trace_id.to_vec(),
            span_id: rec.span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: rec.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind,
            start_time_unix_nano: rec.start,
            end_time_unix_nano: rec.end,
            attributes: attrs,
            status: error.map(|message| otlp::Status {
                message,
                code: otlp::STATUS_ERROR,
            }),
        }
    }

    fn request(service: &str, spans: Vec<otlp::Span>) -> otlp::ExportTraceServiceRequest {
        otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(otlp::Resource {
                    attributes: vec![otlp::KeyValue::str("service.name", service)],
                }),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(otlp::InstrumentationScope {
                        name: "agentgate".into(),
                        version: "1.2.3".into(),
                    }),
                    spans,
                }],
            }],
        }
    }

    fn route(tenant: Option<&str>) -> SpanRoute {
        SpanRoute {
            route: "chat".into(),
            agent: "gpt".into(),
            tenant: tenant.map(Into::into),
        }
    }

    fn records() -> Vec<Record> {
        let mut out = Vec::new();
        let long_path: Box<str> = format!("/{}", "p".repeat(300)).into();
        let methods = [
            Method::GET,
            Method::POST,
            Method::from_bytes(b"PROPFIND").expect("method"),
        ];
        let routes = [None, Some(route(None)), Some(route(Some("acme")))];
        let statuses = [None, Some(200), Some(404), Some(503), Some(599)];
        let errors = [None, Some("reset"), Some("")];
        let mut i = 0u64;
        for method in &methods {
            for r in &routes {
                for status in statuses {
                    for error in errors {
                        for client in [false, true] {
                            i += 1;
                            let detail = if client {
                                Detail::Client {
                                    endpoint: "http://127.0.0.1:9000".into(),
                                    attempt: 1 + (i % 3) as u32,
                                }
                            } else {
                                Detail::Server {
                                    path: if i.is_multiple_of(7) {
                                        long_path.clone()
                                    } else {
                                        "/v1/chat".into()
                                    },
                                }
                            };
                            if !client && status.is_none() {
                                continue; // a server span always has its status
                            }
                            out.push(Record {
                                trace_id: (u128::from(i) << 64 | 0xabc).to_be_bytes(),
                                span_id: (i * 7919).to_be_bytes(),
                                parent: i.is_multiple_of(2).then(|| (i + 1).to_be_bytes()),
                                start: if i.is_multiple_of(11) {
                                    0
                                } else {
                                    1_700_000_000_000 + i
                                },
                                end: 1_700_000_000_500 + i * 1000,
                                method: method.clone(),
                                status,
                                error,
                                route: r.clone(),
                                detail,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn bytes_are_prosts_encoding_of_the_same_spans() {
        let recs = records();
        let env = Envelope::new("gw", "agentgate", "1.2.3");
        let mut lens = Vec::new();
        for n in [0, 1, 2, recs.len()] {
            let ours = env.encode(&recs[..n], &mut lens);
            let theirs = request("gw", recs[..n].iter().map(message).collect()).encode_to_vec();
            assert_eq!(ours, theirs, "{n} spans");
        }
        // one span at a time, so a mismatch names its record
        for rec in &recs {
            let ours = env.encode(std::slice::from_ref(rec), &mut lens);
            let theirs = request("gw", vec![message(rec)]).encode_to_vec();
            assert_eq!(ours, theirs, "{rec:?}");
        }
    }

    #[test]
    fn decodes_as_the_spans_recorded() {
        let recs = records();
        let env = Envelope::new("svc", "agentgate", "1.2.3");
        let body = env.encode(&recs, &mut Vec::new());
        let req = otlp::ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), recs.len());
        let client = recs
            .iter()
            .zip(spans)
            .find(|(r, _)| {
                matches!(r.detail, Detail::Client { .. }) && r.route.is_some() && r.error.is_none()
            })
            .map(|(_, s)| s)
            .expect("a client span");
        assert_eq!(client.name, "upstream gpt");
        assert_eq!(client.kind, otlp::KIND_CLIENT);
        let server_503 = recs
            .iter()
            .zip(spans)
            .find(|(r, _)| {
                matches!(r.detail, Detail::Server { .. })
                    && r.status == Some(503)
                    && r.error.is_none()
            })
            .map(|(_, s)| s)
            .expect("a 503");
        let status = server_503.status.as_ref().expect("an error status");
        assert_eq!(status.message, "status 503");
        assert_eq!(status.code, otlp::STATUS_ERROR);
    }

    #[test]
    fn varint_lengths() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(b.len(), prost::encoding::encoded_len_varint(v), "{v}");
        }
        for n in [0u16, 7, 42, 200, 503, 65535] {
            assert_eq!(Code::new(n).as_str(), n.to_string());
        }
    }
}
