//! Upstream request heads: the forwarded header block, encoded once in Rust.
//!
//! The gateway forwards a client's request with the same headers minus those that describe only
//! the client's connection (RFC 9110 §7.6.1), plus `X-Forwarded-*` and `X-Request-Id`. Building
//! that block here, in one pass over the headers, replaces several Python loops per request.
//! The request line and the `Host` line of the chosen endpoint are added by the caller, since a
//! retry may go to another endpoint with the same block.

use thiserror::Error;

use super::is_hop_by_hop;
use super::response::parse_content_length;

/// What the route, the agent and the client connection say about forwarding one request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// Request method (decides the framing of a request without a body).
    pub method: &'a str,
    /// Client address, appended to `X-Forwarded-For`.
    pub client_ip: &'a str,
    /// Scheme the client used, sent as `X-Forwarded-Proto`.
    pub scheme: &'a str,
    /// Host the client asked for ("" if none), sent as `X-Forwarded-Host`.
    pub host: &'a str,
    /// A request id to add; `None` when the client sent its own `X-Request-Id`.
    pub request_id: Option<&'a str>,
    /// Send the client's `Host` instead of the endpoint's.
    pub preserve_host: bool,
    /// Drop `Authorization` and `X-API-Key` (the gateway consumed them).
    pub hide_auth: bool,
}

/// How the request body goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (the block carries the `Content-Length` line).
    Length(u64),
    /// Chunked (the block carries `Transfer-Encoding: chunked`).
    Chunked,
}

/// The forwarded header lines (`name: value\r\n` each) and the body framing they announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Header lines, without the request line, the endpoint's `Host` and the final CRLF.
    pub bytes: Vec<u8>,
    /// Body framing.
    pub framing: Framing,
    /// The block carries a `Host` line (the client's, when `preserve_host`).
    pub has_host: bool,
}

/// A request header that cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeadError {
    /// A name that is not an RFC 9110 token.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// A value holding CR, LF or NUL (header injection).
    #[error("invalid value in header {0:?}")]
    Value(String),
    /// A Content-Length that is not one non-negative integer.
    #[error("invalid content-length {0:?}")]
    ContentLength(String),
}

/// Methods whose requests carry a body by definition: without one they get `Content-Length: 0`.
const BODY_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_value(name: &str, value: &str) -> Result<(), HeadError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HeadError::Value(name.to_string()));
    }
    Ok(())
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Builds the forwarded header block for `headers` (names in any case) under `f`.
///
/// Drops hop-by-hop fields and those named in `Connection`, the client's `Host` (unless
/// preserved) and, when asked, the credentials; extends `X-Forwarded-For`; adds
/// `X-Forwarded-Proto`, `X-Forwarded-Host` and the request id; decides the framing from
/// `Content-Length` / `Transfer-Encoding` as the client sent them.
pub fn forward_block<'h, I>(headers: I, f: &Forwarding<'_>) -> Result<HeaderBlock, HeadError>
where
    I: IntoIterator<Item = (&'h str, &'h str)>,
    I::IntoIter: Clone,
{
    let iter = headers.into_iter();
    // First pass: what decides the rest (Connection tokens, framing, the old X-Forwarded-For).
    let mut connection: Vec<&str> = Vec::new();
    let mut chunked = false;
    let mut length: Option<&str> = None;
    let mut xff: Vec<&str> = Vec::new();
    let mut size = 64 + f.client_ip.len() + f.host.len() * 2;
    for (name, value) in iter.clone() {
        size += name.len() + value.len() + 4;
        if name.eq_ignore_ascii_case("connection") {
            connection.extend(value.split(',').map(|t| t.trim_matches([' ', '\t'])));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some_and(|l| l != value) {
                return Err(HeadError::ContentLength(value.to_string()));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff.push(value);
        }
    }
    let framing = if chunked {
        // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length; the body is re-chunked.
        Framing::Chunked
    } else if let Some(v) = length {
        Framing::Length(
            parse_content_length(v.as_bytes())
                .map_err(|_| HeadError::ContentLength(v.to_string()))?,
        )
    } else {
        Framing::Empty
    };

    let mut out = Vec::with_capacity(size);
    let mut has_host = false;
    for (name, value) in iter {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(HeadError::Name(name.to_string()));
        }
        check_value(name, value)?;
        // the client's Host is replaced by the endpoint's (or re-added when preserved)
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || (chunked && name.eq_ignore_ascii_case("content-length"))
            || (f.hide_auth
                && (name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("x-api-key")))
            || connection.iter().any(|t| name.eq_ignore_ascii_case(t))
        {
            continue;
        }
        push_line(&mut out, name, value);
    }
    check_value("x-forwarded-for", f.client_ip)?;
    out.extend_from_slice(b"x-forwarded-for: ");
    for v in &xff {
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(f.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    check_value("x-forwarded-proto", f.scheme)?;
    push_line(&mut out, "x-forwarded-proto", f.scheme);
    if !f.host.is_empty() {
        check_value("host", f.host)?;
        push_line(&mut out, "x-forwarded-host", f.host);
        if f.preserve_host {
            push_line(&mut out, "host", f.host);
            has_host = true;
        }
    }
    if let Some(id) = f.request_id {
        check_value("x-request-id", id)?;
        push_line(&mut out, "x-request-id", id);
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty if BODY_METHODS.contains(&f.method) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        _ => {}
    }
    Ok(HeaderBlock {
        bytes: out,
        framing,
        has_host,
    })
}

/// Characters RFC 3986 allows unencoded in a path (unreserved, sub-delims, `:`, `@`, `/`).
fn path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)
}

/// The upstream request target: `path` minus its first `strip` bytes (kept rooted),
/// percent-encoded again where needed (servers hand over decoded paths), then `?query`.
pub fn upstream_target(path: &str, strip: usize, query: &str) -> String {
    let rest = path.get(strip..).unwrap_or("");
    let rest = if strip == 0 { path } else { rest };
    let mut out = String::with_capacity(rest.len() + query.len() + 2);
    if !rest.starts_with('/') {
        out.push('/');
    }
    for &b in rest.as_bytes() {
        if path_safe(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd<'a>() -> Forwarding<'a> {
        Forwarding {
            method: "GET",
            client_ip: "10.0.0.9",
            scheme: "http",
            host: "gw.example",
            request_id: Some("rid-1"),
            preserve_host: false,
            hide_auth: false,
        }
    }

    fn block(h: &[(&str, &str)], f: &Forwarding<'_>) -> (String, Framing) {
        let b = forward_block(h.iter().copied(), f).unwrap();
        (String::from_utf8(b.bytes).unwrap(), b.framing)
    }

    #[test]
    fn keeps_end_to_end_headers_and_adds_forwarding() {
        let (s, fr) = block(&[("accept", "*/*"), ("host", "gw.example")], &fwd());
        assert_eq!(
            s,
            "accept: */*\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: gw.example\r\nx-request-id: rid-1\r\n"
        );
        assert_eq!(fr, Framing::Empty);
    }

    #[test]
    fn drops_hop_by_hop_and_connection_tokens() {
        let h = [
            ("Connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "s"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-connection", "x"),
            ("trailer", "x"),
            ("x-kept", "1"),
        ];
        let (s, _) = block(&h, &fwd());
        assert!(s.starts_with("x-kept: 1\r\nx-forwarded-for"), "{s}");
    }

    #[test]
    fn extends_x_forwarded_for_and_hides_auth() {
        let mut f = fwd();
        f.hide_auth = true;
        f.request_id = None;
        let h = [
            ("x-forwarded-for", "1.1.1.1"),
            ("authorization", "Bearer k"),
            ("X-API-Key", "k"),
            ("x-forwarded-for", "2.2.2.2"),
        ];
        let (s, _) = block(&h, &f);
        assert_eq!(
            s,
            "x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: gw.example\r\n"
        );
    }

    #[test]
    fn preserve_host_sends_the_client_host() {
        let mut f = fwd();
        f.preserve_host = true;
        let b = forward_block([("host", "gw.example")], &f).unwrap();
        assert!(b.has_host);
        assert!(String::from_utf8(b.bytes)
            .unwrap()
            .contains("\r\nhost: gw.example\r\n"));
        assert!(
            !forward_block([("host", "gw.example")], &fwd())
                .unwrap()
                .has_host
        );
    }

    #[test]
    fn framing_follows_the_client() {
        let (s, fr) = block(&[("content-length", "12")], &fwd());
        assert_eq!(fr, Framing::Length(12));
        assert!(s.starts_with("content-length: 12\r\n"));
        let (s, fr) = block(&[("content-length", "12, 12")], &fwd());
        assert_eq!(fr, Framing::Length(12));
        assert!(s.starts_with("content-length: 12, 12\r\n"));
        let (s, fr) = block(
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            &fwd(),
        );
        assert_eq!(fr, Framing::Chunked);
        assert!(!s.contains("content-length"));
        assert!(s.ends_with("transfer-encoding: chunked\r\n"));
        let mut f = fwd();
        f.method = "POST";
        let (s, fr) = block(&[], &f);
        assert_eq!(fr, Framing::Empty);
        assert!(s.ends_with("content-length: 0\r\n"));
    }

    #[test]
    fn refuses_what_cannot_be_forwarded() {
        let f = fwd();
        for cl in ["", "-1", "1x", "1, 2", "99999999999999999999"] {
            assert!(
                matches!(
                    forward_block([("content-length", cl)], &f),
                    Err(HeadError::ContentLength(_))
                ),
                "{cl:?}"
            );
        }
        assert!(matches!(
            forward_block([("content-length", "1"), ("content-length", "2")], &f),
            Err(HeadError::ContentLength(_))
        ));
        assert!(matches!(
            forward_block([("x-a", "v\r\nx-injected: 1")], &f),
            Err(HeadError::Value(_))
        ));
        assert!(matches!(
            forward_block([("bad name", "v")], &f),
            Err(HeadError::Name(_))
        ));
        let mut f2 = fwd();
        f2.request_id = Some("a\nb");
        assert!(forward_block([], &f2).is_err());
    }

    #[test]
    fn targets_are_stripped_and_requoted() {
        assert_eq!(upstream_target("/agents/echo/x", 12, "a=1"), "/x?a=1");
        assert_eq!(upstream_target("/agents/echo", 12, ""), "/");
        assert_eq!(upstream_target("/a b/ü", 0, ""), "/a%20b/%C3%BC");
        assert_eq!(upstream_target("/100%", 0, ""), "/100%25");
        assert_eq!(upstream_target("/x", 99, ""), "/");
        assert_eq!(upstream_target("/agents/echoX", 12, ""), "/X");
        assert_eq!(
            upstream_target("/ok/-._~!$&'()*+,;=:@", 0, ""),
            "/ok/-._~!$&'()*+,;=:@"
        );
    }
}
