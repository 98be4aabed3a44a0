//! HTTP/1.1 wire handling for the upstream client: request heads out, responses in.

pub mod exchange;
pub mod request;
pub mod response;
