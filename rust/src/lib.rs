//! agentgate-core: the per-request decisions of the agentgate gateway, in pure Rust.
//!
//! One module per concern. Nothing here knows about Python; `bindings/` converts.

pub mod admission;
pub mod balancer;
pub mod breaker;
pub mod clock;
pub mod cluster_limit;
pub mod config;
pub mod engine;
pub mod histogram;
pub mod httpsig;
pub mod lifecycle;
pub mod limiter;
pub mod names;
pub mod normalize;
pub mod policy;
pub mod proxy;
pub mod retry;
pub mod rollup;
pub mod router;
pub mod sandbox;
pub mod setting;
pub mod signature;
pub mod sketch;
pub mod stats;
pub mod trace;
pub mod usage;
