//! RFC 9457 `application/problem+json` answers of the gateway's own.

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::engine::Rejection;
use crate::proxy::body::ResBody;
use crate::proxy::forward::X_REQUEST_ID;

/// Problem `type` URIs are this base plus the machine-readable reason (`rate_limited`, …).
pub const TYPE_BASE: &str = "urn:agentgate:problem:";

/// The problem response for a refusal.
pub fn problem(r: &Rejection, request_id: &HeaderValue) -> Response<ResBody> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "type": format!("{TYPE_BASE}{}", r.reason),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": r.detail,
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(ResBody::full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    for (name, value) in &r.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    resp
}
