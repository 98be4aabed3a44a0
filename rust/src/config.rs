//! The data plane's part of the gateway config, exactly as the Python side validated it.
//!
//! Python validates the YAML file with pydantic (errors name the file, field and problem) and
//! hands the result over as JSON (`model_dump(mode="json")`): field names are the config file's
//! own, durations arrive in seconds, sizes in bytes and rates per second. The core owns every
//! field from here on, including the conversion into [`Duration`]s and nanoseconds. Sections the
//! core does not use (the control plane's) are ignored at the top level; inside the sections it
//! owns, an unknown field is an error, so the two sides cannot drift apart silently.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// A config the core refuses; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The whole gateway config as far as the data plane is concerned.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct GatewayConfig {
    /// Pools of endpoints, by agent name.
    #[serde(default)]
    pub agents: BTreeMap<String, Agent>,
    /// Routes, in match order of equal specificity.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// API keys and roles.
    #[serde(default)]
    pub auth: Auth,
    /// RFC 9421 verification.
    #[serde(default)]
    pub signatures: Signatures,
    /// How the listener reads requests.
    #[serde(default)]
    pub http: Http,
    /// Span export.
    #[serde(default)]
    pub tracing: Tracing,
}

impl GatewayConfig {
    /// Parses the JSON the Python side produced.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        serde_json::from_slice(bytes).map_err(|e| ConfigError(format!("config: {e}")))
    }

    /// Each route's id: the explicit one, or `<agent>:<path pattern>` (as the Python side).
    pub fn route_id(route: &Route) -> String {
        match &route.id {
            Some(id) => id.clone(),
            None => format!("{}:{}", route.agent, route.matcher.pattern()),
        }
    }
}

fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(1e9))
    } else {
        Duration::ZERO
    }
}

/// A pool of endpoints serving one agent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Endpoints: `http://`, `https://` or `unix:/path.sock`.
    pub endpoints: Vec<Endpoint>,
    /// Per-attempt timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retry policy.
    #[serde(default)]
    pub retries: Retries,
    /// Per-endpoint breaker.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// Requests in flight before queueing.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// Waiting requests before refusing.
    #[serde(default = "default_queue")]
    pub max_queue: u32,
    /// Longest wait in the queue, seconds.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: f64,
    /// `upstream` (the endpoint's authority) or `preserve` (the client's `Host`).
    #[serde(default = "default_host_header")]
    pub host_header: String,
    /// TLS settings for `https://` endpoints.
    #[serde(default)]
    pub tls: Tls,
    /// Headers set on every upstream request (secret references already resolved).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Scale from zero: with no endpoint, requests wait (holding their slot) while the runtime
    /// is asked to start one.
    #[serde(default)]
    pub activation: Option<Activation>,
}

/// How long a request waits for an agent with no endpoint to get one.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// Seconds.
    pub timeout: f64,
}

fn default_concurrency() -> u32 {
    256
}
fn default_queue() -> u32 {
    1024
}
fn default_queue_timeout() -> f64 {
    1.0
}
fn default_host_header() -> String {
    "upstream".into()
}

impl Agent {
    /// Longest wait in the admission queue.
    pub fn queue_wait(&self) -> Duration {
        secs(self.queue_timeout)
    }

    /// Whether the client's `Host` goes upstream.
    pub fn preserve_host(&self) -> bool {
        self.host_header == "preserve"
    }
}

/// One endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Base URL.
    pub url: String,
    /// Relative share of traffic.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// TLS to `https://` endpoints.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file of extra trusted CA certificates (besides the Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// Per-attempt timeouts in seconds; 0 means none.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: f64,
    /// From the request sent to the response head.
    pub first_byte: f64,
    /// Longest gap between two body chunks.
    pub idle: f64,
    /// The whole request, retries and body included.
    pub total: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 1.0,
            first_byte: 10.0,
            idle: 60.0,
            total: 0.0,
        }
    }
}

/// A timeout: `None` when the config says 0.
pub fn limit(seconds: f64) -> Option<Duration> {
    let d = secs(seconds);
    (!d.is_zero()).then_some(d)
}

/// Retry policy of an agent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Full-jitter exponential backoff.
    pub backoff: Backoff,
    /// Outcomes worth a retry.
    pub on: Vec<String>,
    /// Retries per original request, as a ratio (plus a small floor).
    pub budget: f64,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 2,
            backoff: Backoff::default(),
            on: ["connect-failure", "reset", "502", "503", "504"]
                .map(String::from)
                .to_vec(),
            budget: 0.2,
        }
    }
}

/// Backoff bounds, seconds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// First retry's cap.
    pub base: f64,
    /// Cap of every retry (and of an honoured Retry-After).
    pub max: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: 0.025,
            max: 1.0,
        }
    }
}

/// Per-endpoint breaker thresholds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Error rate (with `min_requests`) that opens it.
    pub error_rate: f64,
    /// Volume before the error rate counts.
    pub min_requests: u32,
    /// First cool-down, seconds.
    pub open_for: f64,
    /// Longest cool-down after repeated trips, seconds (default 8 × `open_for`).
    pub open_for_max: Option<f64>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            open_for: 10.0,
            open_for_max: None,
        }
    }
}

impl CircuitBreaker {
    /// The cool-down cap in force.
    pub fn open_max_secs(&self) -> f64 {
        self.open_for_max
            .unwrap_or(self.open_for * 8.0)
            .max(self.open_for)
    }
}

/// Active health check of every endpoint of a pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path probed with GET.
    pub path: String,
    /// Seconds between probes.
    pub interval: f64,
    /// Probe timeout, seconds.
    pub timeout: f64,
    /// Successes in a row that make an endpoint healthy.
    pub healthy: u32,
    /// Failures in a row that make it unhealthy.
    pub unhealthy: u32,
}

/// What a route matches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Path prefix, at a segment boundary.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Template with `{param}` and `{*rest}`.
    #[serde(default)]
    pub path_template: Option<String>,
    /// Methods; none = any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Exact or `*.example.com` host.
    #[serde(default)]
    pub host: Option<String>,
    /// Header equality conditions.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Match {
    /// The path, prefix or template, whichever the route uses.
    pub fn pattern(&self) -> &str {
        self.path_prefix
            .as_deref()
            .or(self.path.as_deref())
            .or(self.path_template.as_deref())
            .unwrap_or("")
    }
}

/// A route: a match, its agent and its per-route policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Stable id (generated from agent and pattern when absent).
    #[serde(default)]
    pub id: Option<String>,
    /// Target agent.
    pub agent: String,
    /// What the route takes.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Drop the matched prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// GCRA limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Default priority class.
    #[serde(default = "normal")]
    pub priority: String,
    /// `required` or `none`.
    #[serde(default = "none")]
    pub auth: String,
    /// Roles of which the caller needs one.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `required` (RFC 9421 Ed25519) or `none`.
    #[serde(default = "none")]
    pub signature: String,
    /// Retry POST/PATCH too.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Largest request body, bytes.
    #[serde(default)]
    pub max_body: Option<u64>,
    /// Pass `Proxy-Authorization` (and `Proxy-Authenticate` back) instead of consuming them.
    #[serde(default)]
    pub forward_proxy_auth: bool,
}

fn normal() -> String {
    "normal".into()
}
fn none() -> String {
    "none".into()
}

/// A route's GCRA limit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `ip`, `api_key`, `tenant` or `header:<name>`.
    pub key: String,
    /// Requests per second.
    pub rate: f64,
    /// Bucket size (0: the rate rounded up).
    #[serde(default)]
    pub burst: u32,
    /// `local` (this gateway) or `cluster` (shared through Redis by every gateway).
    #[serde(default = "local")]
    pub scope: String,
    /// With `cluster`: `open` (admit) or `closed` (refuse) while Redis cannot be reached.
    #[serde(default = "open")]
    pub on_redis_error: String,
}

fn local() -> String {
    "local".into()
}
fn open() -> String {
    "open".into()
}

/// API keys and roles.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Keys by their SHA-256.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Role settings.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
}

/// One API key as stored: its digest, never the secret.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Key id.
    pub id: String,
    /// `sha256:<hex>`.
    pub hash: String,
    /// Owning tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// What a role may do.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Highest `X-Priority` the role may ask for.
    #[serde(default = "normal")]
    pub max_priority: String,
}

/// RFC 9421 verification settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Signatures {
    /// Trusted Ed25519 keys.
    pub trusted_keys: Vec<TrustedKey>,
    /// Oldest accepted `created`, seconds.
    pub window: f64,
    /// Largest signed body (digested before forwarding), bytes.
    pub max_body: u64,
    /// Demand a nonce on every signature.
    pub require_nonce: bool,
    /// Nonces remembered for replay detection.
    pub nonce_cache: usize,
}

impl Default for Signatures {
    fn default() -> Self {
        Signatures {
            trusted_keys: Vec::new(),
            window: 300.0,
            max_body: 1024 * 1024,
            require_nonce: false,
            nonce_cache: 100_000,
        }
    }
}

/// A trusted verification key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// Key id signatures name.
    pub keyid: String,
    /// 32-byte Ed25519 key, base64 (standard or URL-safe) or hex.
    pub public_key: String,
}

/// How the listener reads requests: head limits and path normalisation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Request line plus header block, bytes; 431 above.
    pub max_header_bytes: u64,
    /// Header fields; 431 above.
    pub max_headers: u32,
    /// Collapse `//` into `/` before matching.
    pub merge_slashes: bool,
    /// `%2F` in a path: `keep`, `decode` or `reject`.
    pub encoded_slash: String,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            max_header_bytes: 32 * 1024,
            max_headers: 96,
            merge_slashes: true,
            encoded_slash: "decode".into(),
        }
    }
}

/// OTLP/HTTP export of the data plane's spans.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tracing {
    /// Collector base URL (`…/v1/traces` is appended); none: no spans are recorded.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled (a sampled parent is always followed).
    pub sampling_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Headers of every export request (e.g. an API key of the collector).
    pub headers: BTreeMap<String, String>,
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            service_name: "agentgate".into(),
            headers: BTreeMap::new(),
        }
    }
}
