//! Upstream request heads: the forwarded header block, encoded once in Rust.
