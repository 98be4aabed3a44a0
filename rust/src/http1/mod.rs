//! HTTP/1.1 wire handling for the upstream client: request heads out, responses in.

pub mod exchange;
pub mod request;
pub mod response;

/// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, so a proxy never forwards
/// them, in either direction.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` (any case) is a hop-by-hop field.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}
