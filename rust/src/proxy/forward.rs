//! Header rewriting both ways (RFC 9110 §7.6): what a proxy drops, adds and keeps.
//!
//! Upstream, the client's headers go on minus the hop-by-hop fields and those named in
//! `Connection`, minus the credentials a route consumed, plus `X-Forwarded-*` and
//! `X-Request-Id`. `Proxy-Authorization` is consumed by this proxy (RFC 9110 §11.7.2, as Go's
//! `httputil.ReverseProxy` does) unless the route forwards it. The body's framing is left to
//! hyper, which derives `Content-Length` or chunked from the body it sends.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that describe one connection only, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH, // framing: hyper sets it from the body
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// The caller's tenant, as the gateway authenticated it (a client's own value is dropped).
pub static X_AGENTGATE_TENANT: HeaderName = HeaderName::from_static("x-agentgate-tenant");
/// The caller's API key id, as the gateway authenticated it.
pub static X_AGENTGATE_KEY_ID: HeaderName = HeaderName::from_static("x-agentgate-key-id");

/// Removes the fields named in `Connection` (they are hop-by-hop for this connection).
fn drop_connection_tokens(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
}

/// What forwarding one request needs to know besides its headers.
pub struct Upstream<'a> {
    /// The client's address.
    pub client_ip: &'a str,
    /// The scheme the client used.
    pub scheme: &'static str,
    /// The request id to add, when the client sent none.
    pub request_id: Option<&'a HeaderValue>,
    /// The route consumed `Authorization` / `X-API-Key`.
    pub hide_auth: bool,
    /// The route forwards `Proxy-Authorization`.
    pub forward_proxy_auth: bool,
    /// Keep `Upgrade` and `Connection: upgrade` (WebSocket passthrough).
    pub upgrade: bool,
    /// The method carries a body by definition but has none: send `Content-Length: 0`.
    pub empty_body_length: bool,
    /// The authenticated caller: tenant (if any) and key id.
    pub identity: Option<(Option<&'a str>, &'a str)>,
}

/// Rewrites the client's request headers in place into the upstream's, except `Host` (set per
/// attempt, since a retry may go to another endpoint). Returns the client's `Host`.
pub fn request_headers(h: &mut HeaderMap, f: &Upstream<'_>) -> Option<HeaderValue> {
    let upgrade = if f.upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    drop_connection_tokens(h);
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
    if !f.forward_proxy_auth {
        h.remove(header::PROXY_AUTHORIZATION);
    }
    if f.hide_auth {
        h.remove(header::AUTHORIZATION);
        h.remove(&X_API_KEY);
    }
    // only the gateway says who the caller is
    h.remove(&X_AGENTGATE_TENANT);
    h.remove(&X_AGENTGATE_KEY_ID);
    if let Some((tenant, key_id)) = f.identity {
        if let Some(v) = tenant.and_then(|t| HeaderValue::from_str(t).ok()) {
            h.insert(X_AGENTGATE_TENANT.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(key_id) {
            h.insert(X_AGENTGATE_KEY_ID.clone(), v);
        }
    }
    let host = h.remove(header::HOST);
    // X-Forwarded-For: the previous hops, then this client
    let xff = {
        let mut prior = String::new();
        for v in h.get_all(&X_FORWARDED_FOR) {
            if let Ok(s) = v.to_str() {
                prior.push_str(s);
                prior.push_str(", ");
            }
        }
        prior.push_str(f.client_ip);
        prior
    };
    h.remove(&X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(f.scheme),
    );
    if let Some(host) = &host {
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(id) = f.request_id {
        h.insert(X_REQUEST_ID.clone(), id.clone());
    }
    if f.empty_body_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    if let Some(u) = upgrade {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    host
}

/// Rewrites the upstream's response headers in place for the client.
pub fn response_headers(
    h: &mut HeaderMap,
    request_id: &HeaderValue,
    forward_proxy_auth: bool,
    upgrade: bool,
) {
    let upgrade_value = if upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    drop_connection_tokens(h);
    for name in &HOP_BY_HOP[..HOP_BY_HOP.len() - 1] {
        // Content-Length stays: it frames the response to the client as it framed ours
        h.remove(name);
    }
    if !forward_proxy_auth {
        h.remove(header::PROXY_AUTHENTICATE);
    }
    if !h.contains_key(&X_REQUEST_ID) {
        h.insert(X_REQUEST_ID.clone(), request_id.clone());
    }
    if let Some(u) = upgrade_value {
        h.insert(header::UPGRADE, u);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The upstream request target: the endpoint's prefix, the path minus `strip` bytes (kept
/// rooted), and the query.
pub fn target(prefix: &str, path: &str, strip: usize, query: Option<&str>) -> String {
    let rest = path.get(strip..).unwrap_or("");
    let mut out = String::with_capacity(prefix.len() + rest.len() + 2 + query.map_or(0, str::len));
    out.push_str(prefix);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `Retry-After` as a delay: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(h: &HeaderMap) -> Option<std::time::Duration> {
    let v = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn up<'a>(rid: Option<&'a HeaderValue>) -> Upstream<'a> {
        Upstream {
            client_ip: "10.0.0.9",
            scheme: "http",
            request_id: rid,
            hide_auth: true,
            forward_proxy_auth: false,
            upgrade: false,
            empty_body_length: false,
            identity: None,
        }
    }

    #[test]
    fn identity_comes_from_the_gateway_only() {
        let mut h = map(&[
            ("x-agentgate-tenant", "spoofed"),
            ("x-agentgate-key-id", "k0"),
        ]);
        request_headers(&mut h, &up(None));
        assert!(!h.contains_key("x-agentgate-tenant") && !h.contains_key("x-agentgate-key-id"));
        let mut h = map(&[("x-agentgate-tenant", "spoofed")]);
        let mut f = up(None);
        f.identity = Some((Some("acme"), "k1"));
        request_headers(&mut h, &f);
        assert_eq!(h["x-agentgate-tenant"], "acme");
        assert_eq!(h["x-agentgate-key-id"], "k1");
    }

    #[test]
    fn hop_by_hop_connection_tokens_and_credentials_go() {
        let mut h = map(&[
            ("host", "gw:8000"),
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "x"),
            ("proxy-authorization", "Basic abc"),
            ("authorization", "Bearer k"),
            ("x-api-key", "k"),
            ("x-forwarded-for", "1.1.1.1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("x-custom", "v"),
        ]);
        let rid = HeaderValue::from_static("r-1");
        let host = request_headers(&mut h, &up(Some(&rid)));
        assert_eq!(host.unwrap(), "gw:8000");
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "authorization",
            "x-api-key",
            "transfer-encoding",
            "content-length",
            "host",
        ] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(h["x-custom"], "v");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw:8000");
        assert_eq!(h["x-request-id"], "r-1");
    }

    #[test]
    fn proxy_authorization_forwarded_when_the_route_says_so() {
        let mut h = map(&[("proxy-authorization", "Basic abc")]);
        let mut f = up(None);
        f.forward_proxy_auth = true;
        request_headers(&mut h, &f);
        assert_eq!(h["proxy-authorization"], "Basic abc");
        let mut r = map(&[("proxy-authenticate", "Basic"), ("content-length", "3")]);
        response_headers(&mut r, &HeaderValue::from_static("x"), false, false);
        assert!(!r.contains_key("proxy-authenticate"));
        assert_eq!(r["content-length"], "3");
        let mut r = map(&[("proxy-authenticate", "Basic")]);
        response_headers(&mut r, &HeaderValue::from_static("x"), true, false);
        assert!(r.contains_key("proxy-authenticate"));
    }

    #[test]
    fn response_keeps_upstream_request_id() {
        let mut r = map(&[("x-request-id", "up"), ("connection", "close")]);
        response_headers(&mut r, &HeaderValue::from_static("gw"), false, false);
        assert_eq!(r["x-request-id"], "up");
        assert!(!r.contains_key("connection"));
    }

    #[test]
    fn targets() {
        assert_eq!(target("", "/agents/echo/hi", 12, Some("x=1")), "/hi?x=1");
        assert_eq!(target("", "/agents/echo", 12, None), "/");
        assert_eq!(target("/base", "/a", 0, None), "/base/a");
        assert_eq!(target("", "/a", 0, Some("")), "/a?");
    }

    #[test]
    fn retry_after_forms() {
        let h = map(&[("retry-after", "7")]);
        assert_eq!(retry_after(&h), Some(std::time::Duration::from_secs(7)));
        let h = map(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&h), Some(std::time::Duration::ZERO));
        let h = map(&[("retry-after", "soon")]);
        assert_eq!(retry_after(&h), None);
    }
}
