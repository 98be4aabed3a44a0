//! Incremental HTTP/1.1 response parsing and body framing (RFC 9112).
