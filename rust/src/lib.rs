//! agentgate-core: the per-request decisions of the agentgate gateway, in pure Rust.
//!
//! One module per concern. Nothing here knows about Python; `bindings/` converts.

pub mod clock;
