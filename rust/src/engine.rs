//! The per-request decision of the gateway in one call: route, authenticate, pick the priority,
//! rate-limit, take an admission slot and pick an endpoint.
//!
//! The control plane compiles an [`EngineSpec`] into a [`Snapshot`] and swaps it in atomically
//! ([`Engine::replace`]); requests in flight keep the snapshot they started with. Stateful parts
//! (limiters, balancers with their breakers and latency estimates, admission queues) are carried
//! over to the new snapshot when their configuration did not change, so a reload never resets a
//! tripped breaker or hands out a fresh rate-limit budget.
//!
//! A request moves through the engine like this:
//!
//! 1. [`Engine::admit`] → [`Admit::Rejected`] (a problem for the client), [`Admit::Proceed`]
//!    (a slot is held and an endpoint is picked) or [`Admit::Queued`] (the pool is full: the
//!    caller parks the request under the ticket).
//! 2. A queued request is woken by the ticket that [`Engine::finish`] (or [`Engine::release`])
//!    returns; it then calls [`Engine::pick`]. Tickets that waited too long come back from
//!    [`Engine::expire`]; ones shed for higher classes come back in `shed` of an admit.
//! 3. A retry calls [`Engine::pick`] again after `finish`-ing the failed attempt with
//!    `keep_slot = true`.
//! 4. [`Engine::finish`] releases the endpoint (latency, outcome → balancer and breaker) and,
//!    unless kept, the admission slot.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::admission::{
    Admission, AdmissionConfig, Decision as AcquireDecision, Priority, Reason as RejectReason,
};
use crate::balancer::{Balancer, EndpointSpec, Outcome, Unavailable};
use crate::breaker::BreakerConfig;
use crate::clock::AnyClock;
use crate::http1::request::{forward_block, upstream_target, Forwarding, HeaderBlock};
use crate::limiter::{Quota, RateLimiter};
use crate::router::{PathMatch, RouteSpec, RouteTable};
use crate::stats::{Latency, LatencyDelta, Recorder, RouteDelta, RouteStats};

const MS: u64 = 1_000_000;

/// Everything the engine needs, as the control plane compiled it from the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Endpoint pools by agent name.
    pub agents: Vec<AgentSpec>,
    /// Routes in config order.
    pub routes: Vec<RouteRule>,
    /// API keys (only their SHA-256 digests).
    #[serde(default)]
    pub api_keys: Vec<ApiKeySpec>,
    /// Highest priority class a role may ask for with `X-Priority`.
    #[serde(default)]
    pub role_max_priority: HashMap<String, String>,
    /// Keys kept per rate limiter before idle ones are evicted.
    #[serde(default = "default_max_keys")]
    pub limiter_max_keys: usize,
}

fn default_max_keys() -> usize {
    100_000
}

/// One agent: a pool of endpoints with its breaker and admission settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Agent name routes refer to.
    pub name: String,
    /// Endpoints (id is the base URL).
    pub endpoints: Vec<EndpointEntry>,
    /// Breaker applied to every endpoint.
    #[serde(default)]
    pub breaker: BreakerEntry,
    /// Concurrent requests before queueing.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// Waiting requests before rejecting or shedding.
    #[serde(default = "default_queue")]
    pub max_queue: u32,
    /// Max wait per class in ms: critical, high, normal, low.
    #[serde(default = "default_waits")]
    pub max_wait_ms: [u64; 4],
    /// Decay of the latency estimate, ms.
    #[serde(default = "default_decay")]
    pub ewma_decay_ms: u64,
    /// Forward the client's `Host` instead of the endpoint's.
    #[serde(default)]
    pub preserve_host: bool,
}

fn default_concurrency() -> u32 {
    256
}
fn default_queue() -> u32 {
    1024
}
fn default_waits() -> [u64; 4] {
    [5_000, 2_000, 1_000, 500]
}
fn default_decay() -> u64 {
    10_000
}

/// One endpoint of an agent.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointEntry {
    /// Base URL, also the endpoint's id.
    pub url: String,
    /// Relative share of traffic.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Breaker settings in config units (ms).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerEntry {
    /// Consecutive failures that trip; 0 = off.
    pub consecutive_failures: u32,
    /// Error rate that trips; 0 = off.
    pub error_rate: f64,
    /// Window volume before the error rate counts.
    pub min_requests: u32,
    /// Sliding window, ms.
    pub window_ms: u64,
    /// Base cool-down, ms.
    pub open_ms: u64,
    /// Cool-down cap, ms.
    pub max_open_ms: u64,
    /// Probes admitted in half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerEntry {
    fn default() -> Self {
        let d = BreakerConfig::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            error_rate: d.error_rate,
            min_requests: d.min_requests,
            window_ms: d.window_nanos / MS,
            open_ms: d.open_nanos / MS,
            max_open_ms: d.max_open_nanos / MS,
            half_open_probes: d.half_open_probes,
        }
    }
}

impl BreakerEntry {
    fn config(&self) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: self.consecutive_failures,
            error_rate: self.error_rate,
            min_requests: self.min_requests,
            window_nanos: self.window_ms.saturating_mul(MS),
            open_nanos: self.open_ms.saturating_mul(MS),
            max_open_nanos: self.max_open_ms.max(self.open_ms).saturating_mul(MS),
            ..BreakerConfig::default()
        }
    }
}

/// One route of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Route id (generated by the control plane when the config has none).
    pub id: String,
    /// Exact or wildcard host.
    #[serde(default)]
    pub host: Option<String>,
    /// Allowed methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix (segment boundary).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path template with `{param}` / `{*rest}`.
    #[serde(default)]
    pub path_template: Option<String>,
    /// Header equality conditions.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Target agent name.
    pub agent: String,
    /// Remove the matched prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Rate limit for this route.
    #[serde(default)]
    pub rate_limit: Option<RateLimitRule>,
    /// Default priority class.
    #[serde(default = "normal")]
    pub priority: String,
    /// API key required.
    #[serde(default)]
    pub auth_required: bool,
    /// Roles of which the caller needs one (empty = any authenticated caller).
    #[serde(default)]
    pub roles: Vec<String>,
}

fn normal() -> String {
    "normal".to_string()
}

/// A route's rate limit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// `ip`, `api_key`, `tenant` or `header:<name>`.
    pub key: String,
    /// Requests per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// An API key as stored: digest, owner and roles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Key id (what logs and limits see, never the secret).
    pub id: String,
    /// Lowercase hex SHA-256 of the secret.
    pub sha256: String,
    /// Owning tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A spec that cannot be compiled; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

enum LimitKey {
    Ip,
    ApiKey,
    Tenant,
    Header(Box<str>),
}

struct CompiledRoute {
    agent: usize,
    methods: Box<[Box<str>]>,
    strip_prefix: bool,
    priority: Priority,
    auth_required: bool,
    roles: Box<[Box<str>]>,
    limit: Option<(LimitKey, Arc<RateLimiter>, RateLimitRule)>,
    stats: Arc<RouteStats>,
}

/// A pool: its endpoints and the stateful parts shared across snapshots.
pub struct Pool {
    /// Agent name.
    pub name: Arc<str>,
    /// Endpoint base URLs, by balancer index.
    pub urls: Box<[Arc<str>]>,
    /// Balancer (with one breaker per endpoint).
    pub balancer: Arc<Balancer>,
    /// Admission control of the pool.
    pub admission: Arc<Admission>,
    /// Time to response headers of the pool's upstream attempts.
    pub upstream: Arc<Latency>,
    spec: AgentSpec,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Key id.
    pub key_id: Arc<str>,
    /// Tenant, if any.
    pub tenant: Option<Arc<str>>,
    /// Roles.
    pub roles: Box<[Box<str>]>,
    max_priority: Priority,
}

/// A compiled, immutable configuration.
pub struct Snapshot {
    table: RouteTable,
    // The same routes with method conditions dropped, consulted only after a miss: a hit there
    // means the path exists but not for this method (405 instead of 404).
    any_method: Option<RouteTable>,
    routes: Box<[CompiledRoute]>,
    /// Pools by agent index.
    pub pools: Box<[Pool]>,
    keys: HashMap<[u8; 32], Identity>,
    needs_headers: bool,
}

/// The request head as the engine needs it.
pub struct RequestHead<'a, H: Fn(&str) -> Option<&'a str>> {
    /// Method.
    pub method: &'a str,
    /// Host (with or without port).
    pub host: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Client address, for `ip` rate-limit keys.
    pub client_ip: &'a str,
    /// Header lookup by lowercase name.
    pub header: H,
}

/// Why a request is refused, with what the problem response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable reason (problem `type` suffix).
    pub reason: &'static str,
    /// Human detail.
    pub detail: String,
    /// Extra response headers (RateLimit, Retry-After).
    pub headers: Vec<(&'static str, String)>,
}

/// What the caller forwards with.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Route index in the config.
    pub route: usize,
    /// Agent (pool) index.
    pub agent: usize,
    /// Endpoint index inside the pool (meaningless while queued).
    pub endpoint: usize,
    /// Bytes of the path to drop before forwarding (strip_prefix).
    pub strip: usize,
    /// Priority class the request runs in.
    pub priority: Priority,
    /// The caller, when a key was presented and valid.
    pub identity: Option<Identity>,
    /// RateLimit-Policy and RateLimit values, when the route is limited.
    pub ratelimit: Option<(String, String)>,
    /// The route consumed the credentials: they are not forwarded.
    pub hide_auth: bool,
    /// The agent gets the client's `Host`.
    pub preserve_host: bool,
    /// Where the request's outcome and upstream times are counted.
    pub stats: Recorder,
}

/// The decision of [`Engine::admit`].
pub enum Admit {
    /// Go ahead: a slot is held and `endpoint` is picked.
    Proceed(Admitted),
    /// Wait under the ticket for a slot, then call [`Engine::pick`].
    Queued(Admitted, u64),
    /// Refuse.
    Rejected(Rejection),
}

/// [`Engine::admit`]'s decision plus the side effects on other waiting requests.
pub struct AdmitOutcome {
    /// This request's decision.
    pub decision: Admit,
    /// Tickets shed to make room: the caller fails them (503).
    pub shed: Vec<u64>,
    /// A ticket that was handed a slot this request could not use: the caller wakes it.
    pub granted: Option<u64>,
    /// Agent (pool) index of the matched route, which `shed` and `granted` tickets belong to.
    pub agent: Option<usize>,
}

impl From<Rejection> for AdmitOutcome {
    fn from(r: Rejection) -> Self {
        AdmitOutcome {
            decision: Admit::Rejected(r),
            shed: Vec::new(),
            granted: None,
            agent: None,
        }
    }
}

/// The client-side facts [`Engine::admit_forward`] needs beyond the routing head.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// Scheme the client used.
    pub scheme: &'a str,
    /// Query string without `?` ("" if none).
    pub query: &'a str,
    /// Request id to add upstream; `None` when the client sent one.
    pub request_id: Option<&'a str>,
}

/// How an admitted request goes upstream: header block (framing included) and target.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Forwarded header lines.
    pub block: HeaderBlock,
    /// Path (stripped, re-encoded) plus query.
    pub target: String,
}

/// The decision engine: an atomically swappable snapshot.
pub struct Engine {
    current: ArcSwap<Snapshot>,
    clock: AnyClock,
    // Counters of routes and agents a reload removed, until their last counts are taken.
    retired: parking_lot::Mutex<Vec<Retired>>,
}

enum Retired {
    Route(Arc<str>, Arc<str>, Arc<RouteStats>),
    Agent(Arc<str>, Arc<Latency>),
}

/// Counts taken by [`Engine::take_stats`]: only routes and agents with something new.
#[derive(Debug, Default)]
pub struct StatsDelta {
    /// (agent, route id, counts) per route.
    pub routes: Vec<(Arc<str>, Arc<str>, RouteDelta)>,
    /// (agent, upstream latency) per agent.
    pub upstream: Vec<(Arc<str>, LatencyDelta)>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn reject(status: u16, reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection {
        status,
        reason,
        detail: detail.into(),
        headers: Vec::new(),
    }
}

fn unavailable(u: Unavailable, agent: &str) -> Rejection {
    let reason = match u {
        Unavailable::Empty => "no_endpoint",
        Unavailable::NoHealthy => "no_healthy_endpoint",
        Unavailable::AllOpen => "circuit_open",
    };
    reject(503, reason, format!("agent {agent:?}: {u}"))
}

impl Snapshot {
    /// Compiles a spec, reusing stateful parts of `previous` whose configuration is unchanged.
    pub fn compile(
        spec: EngineSpec,
        previous: Option<&Snapshot>,
        clock: &AnyClock,
    ) -> Result<Snapshot, SpecError> {
        // Indexes of the previous snapshot's stateful parts, so carrying them over stays linear
        // in the number of agents and routes (a reload happens on every agent created).
        let old_pools: HashMap<&str, &Pool> = previous
            .map(|p| p.pools.iter().map(|x| (x.name.as_ref(), x)).collect())
            .unwrap_or_default();
        let old_limits: HashMap<&str, (&RateLimitRule, &Arc<RateLimiter>)> = previous
            .map(|p| {
                p.routes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| match (&r.limit, p.table.id(i)) {
                        (Some((_, l, rule)), Some(id)) => Some((id.as_ref(), (rule, l))),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Counters carry over per (agent, route id), like the metric labels they feed.
        let old_stats: HashMap<(&str, &str), &Arc<RouteStats>> = previous
            .map(|p| {
                p.routes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        let id = p.table.id(i)?;
                        let agent = p.pools.get(r.agent)?;
                        Some(((agent.name.as_ref(), id.as_ref()), &r.stats))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut pools = Vec::with_capacity(spec.agents.len());
        for (i, a) in spec.agents.iter().enumerate() {
            if by_name.insert(a.name.as_str(), i).is_some() {
                return Err(SpecError(format!(
                    "agents[{i}]: duplicate agent {:?}",
                    a.name
                )));
            }
            pools.push(Self::pool(
                i,
                a,
                old_pools.get(a.name.as_str()).copied(),
                clock,
            )?);
        }
        let mut specs = Vec::with_capacity(spec.routes.len());
        let mut routes = Vec::with_capacity(spec.routes.len());
        for (i, r) in spec.routes.iter().enumerate() {
            let at = |field: &str, msg: String| {
                SpecError(format!("routes[{i}] ({:?}).{field}: {msg}", r.id))
            };
            let path = match (&r.path, &r.path_prefix, &r.path_template) {
                (Some(p), None, None) => PathMatch::Exact(p.clone()),
                (None, Some(p), None) => PathMatch::Prefix(p.clone()),
                (None, None, Some(p)) => PathMatch::Template(p.clone()),
                _ => {
                    return Err(at(
                        "match",
                        "exactly one of path, path_prefix, path_template".into(),
                    ))
                }
            };
            let agent = *by_name
                .get(r.agent.as_str())
                .ok_or_else(|| at("agent", format!("unknown agent {:?}", r.agent)))?;
            let priority = r
                .priority
                .parse::<Priority>()
                .map_err(|e| at("priority", e))?;
            let limit = match &r.rate_limit {
                None => None,
                Some(rl) => {
                    let key = match rl.key.as_str() {
                        "ip" => LimitKey::Ip,
                        "api_key" => LimitKey::ApiKey,
                        "tenant" => LimitKey::Tenant,
                        k => match k.strip_prefix("header:") {
                            Some(h) if !h.is_empty() => {
                                LimitKey::Header(h.to_ascii_lowercase().into())
                            }
                            _ => {
                                return Err(at(
                                    "rate_limit.key",
                                    format!("{k:?}: expected ip, api_key, tenant or header:<name>"),
                                ))
                            }
                        },
                    };
                    let reused = old_limits
                        .get(r.id.as_str())
                        .filter(|(rule, _)| *rule == rl)
                        .map(|(_, l)| Arc::clone(l));
                    let limiter = match reused {
                        Some(l) => l,
                        None => {
                            let quota = Quota::new(rl.per_second, rl.burst)
                                .map_err(|e| at("rate_limit", e.to_string()))?;
                            Arc::new(
                                RateLimiter::new(quota, spec.limiter_max_keys, clock.clone())
                                    .map_err(|e| at("rate_limit", e.to_string()))?,
                            )
                        }
                    };
                    Some((key, limiter, rl.clone()))
                }
            };
            specs.push(RouteSpec {
                id: r.id.clone(),
                host: r.host.clone(),
                methods: r.methods.clone(),
                path,
                headers: r.headers.clone(),
            });
            routes.push(CompiledRoute {
                agent,
                methods: r
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase().into())
                    .collect(),
                strip_prefix: r.strip_prefix,
                priority,
                auth_required: r.auth_required,
                roles: r.roles.iter().map(|s| s.as_str().into()).collect(),
                limit,
                stats: old_stats
                    .get(&(r.agent.as_str(), r.id.as_str()))
                    .map_or_else(Arc::default, |s| Arc::clone(s)),
            });
        }
        let table = RouteTable::compile(&specs).map_err(|e| {
            SpecError(format!(
                "routes[{}] ({:?}).{}: {}",
                e.index, e.id, e.field, e.message
            ))
        })?;
        let any_method = if specs.iter().any(|s| !s.methods.is_empty()) {
            let loose: Vec<RouteSpec> = specs
                .iter()
                .map(|s| RouteSpec {
                    methods: Vec::new(),
                    ..s.clone()
                })
                .collect();
            Some(RouteTable::compile(&loose).map_err(|e| {
                SpecError(format!(
                    "routes[{}] ({:?}).{}: {}",
                    e.index, e.id, e.field, e.message
                ))
            })?)
        } else {
            None
        };
        let mut role_caps = HashMap::new();
        for (role, p) in &spec.role_max_priority {
            let p = p
                .parse::<Priority>()
                .map_err(|e| SpecError(format!("role_max_priority.{role}: {e}")))?;
            role_caps.insert(role.as_str(), p);
        }
        let mut keys = HashMap::with_capacity(spec.api_keys.len());
        for (i, k) in spec.api_keys.iter().enumerate() {
            let digest = hex32(&k.sha256.to_ascii_lowercase()).ok_or_else(|| {
                SpecError(format!(
                    "api_keys[{i}] ({:?}).sha256: expected 64 hex digits",
                    k.id
                ))
            })?;
            // Without a role cap a caller may only ask for its route's default or lower.
            let max_priority = k
                .roles
                .iter()
                .filter_map(|r| role_caps.get(r.as_str()).copied())
                .min()
                .unwrap_or(Priority::Low);
            let ident = Identity {
                key_id: k.id.as_str().into(),
                tenant: k.tenant.as_deref().map(Into::into),
                roles: k.roles.iter().map(|s| s.as_str().into()).collect(),
                max_priority,
            };
            if keys.insert(digest, ident).is_some() {
                return Err(SpecError(format!(
                    "api_keys[{i}] ({:?}): duplicate key digest",
                    k.id
                )));
            }
        }
        let needs_headers = table.needs_headers()
            || routes
                .iter()
                .any(|r| matches!(r.limit, Some((LimitKey::Header(_), _, _))));
        Ok(Snapshot {
            table,
            any_method,
            routes: routes.into(),
            pools: pools.into(),
            keys,
            needs_headers,
        })
    }

    fn pool(
        i: usize,
        a: &AgentSpec,
        old: Option<&Pool>,
        clock: &AnyClock,
    ) -> Result<Pool, SpecError> {
        if a.endpoints.is_empty() {
            return Err(SpecError(format!(
                "agents[{i}] ({:?}).endpoints: at least one endpoint",
                a.name
            )));
        }
        let same_endpoints = old.is_some_and(|o| {
            o.spec.endpoints == a.endpoints
                && o.spec.breaker == a.breaker
                && o.spec.ewma_decay_ms == a.ewma_decay_ms
        });
        let balancer = match old {
            Some(o) if same_endpoints => o.balancer.clone(),
            _ => {
                let eps = a
                    .endpoints
                    .iter()
                    .map(|e| EndpointSpec {
                        id: e.url.clone(),
                        weight: e.weight,
                        breaker: a.breaker.config(),
                    })
                    .collect();
                Arc::new(
                    Balancer::try_new(eps, a.ewma_decay_ms.saturating_mul(MS), clock.clone())
                        .map_err(|e| SpecError(format!("agents[{i}] ({:?}): {e}", a.name)))?,
                )
            }
        };
        let same_admission = old.is_some_and(|o| {
            o.spec.max_concurrency == a.max_concurrency
                && o.spec.max_queue == a.max_queue
                && o.spec.max_wait_ms == a.max_wait_ms
        });
        let admission = match old {
            Some(o) if same_admission => o.admission.clone(),
            _ => {
                if a.max_concurrency == 0 {
                    return Err(SpecError(format!(
                        "agents[{i}] ({:?}).max_concurrency: must be >= 1",
                        a.name
                    )));
                }
                let config = AdmissionConfig {
                    max_concurrency: a.max_concurrency,
                    max_queue: a.max_queue,
                    max_wait_nanos: a.max_wait_ms.map(|ms| ms.saturating_mul(MS)),
                };
                Arc::new(Admission::new(config, clock.clone()))
            }
        };
        Ok(Pool {
            name: a.name.as_str().into(),
            urls: a.endpoints.iter().map(|e| e.url.as_str().into()).collect(),
            balancer,
            admission,
            upstream: old.map_or_else(Arc::default, |o| o.upstream.clone()),
            spec: a.clone(),
        })
    }

    fn miss<'a, H>(&self, req: &RequestHead<'a, H>) -> Rejection
    where
        H: Fn(&str) -> Option<&'a str>,
    {
        let loose = self
            .any_method
            .as_ref()
            .and_then(|t| t.lookup(req.method, req.host, req.path, &req.header));
        match loose.and_then(|m| self.routes.get(m.index)) {
            Some(route) => {
                let mut r = reject(
                    405,
                    "method_not_allowed",
                    format!("method {} not allowed for {}", req.method, req.path),
                );
                r.headers.push(("allow", route.methods.join(", ")));
                r
            }
            None => reject(
                404,
                "no_route",
                format!("no route for {} {}", req.method, req.path),
            ),
        }
    }

    /// Route id by index.
    pub fn route_id(&self, index: usize) -> Option<&Arc<str>> {
        self.table.id(index)
    }

    /// Whether lookups need header values beyond auth and priority.
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// Identity for a presented API key secret.
    pub fn authenticate(&self, secret: &str) -> Option<&Identity> {
        // Digest then hash lookup: the timing depends on the digest, not on how much of the
        // secret matched, so there is no prefix-guessing oracle.
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.keys.get(&digest)
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

impl Engine {
    /// An engine from a spec.
    pub fn new(spec: EngineSpec, clock: AnyClock) -> Result<Engine, SpecError> {
        let snap = Snapshot::compile(spec, None, &clock)?;
        Ok(Engine {
            current: ArcSwap::from_pointee(snap),
            clock,
            retired: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Compiles `spec` and swaps it in; on error the running snapshot stays.
    pub fn replace(&self, spec: EngineSpec) -> Result<(), SpecError> {
        let old = self.current.load_full();
        let snap = Snapshot::compile(spec, Some(&old), &self.clock)?;
        // by address: a reload must stay linear in routes and agents
        let kept_routes: std::collections::HashSet<*const RouteStats> =
            snap.routes.iter().map(|r| Arc::as_ptr(&r.stats)).collect();
        let kept_agents: std::collections::HashSet<*const Latency> = snap
            .pools
            .iter()
            .map(|p| Arc::as_ptr(&p.upstream))
            .collect();
        let mut retired = Vec::new();
        for (i, r) in old.routes.iter().enumerate() {
            if !kept_routes.contains(&Arc::as_ptr(&r.stats)) {
                if let (Some(id), Some(p)) = (old.table.id(i), old.pools.get(r.agent)) {
                    retired.push(Retired::Route(p.name.clone(), id.clone(), r.stats.clone()));
                }
            }
        }
        for p in old.pools.iter() {
            if !kept_agents.contains(&Arc::as_ptr(&p.upstream)) {
                retired.push(Retired::Agent(p.name.clone(), p.upstream.clone()));
            }
        }
        self.current.store(Arc::new(snap));
        self.retired.lock().extend(retired);
        Ok(())
    }

    /// Takes the counts since the last take, for every route and agent that has some.
    pub fn take_stats(&self) -> StatsDelta {
        let snap = self.current.load();
        let mut out = StatsDelta::default();
        for (i, r) in snap.routes.iter().enumerate() {
            let d = r.stats.take();
            if let (false, Some(id), Some(p)) =
                (d.is_empty(), snap.table.id(i), snap.pools.get(r.agent))
            {
                out.routes.push((p.name.clone(), id.clone(), d));
            }
        }
        for p in snap.pools.iter() {
            let d = p.upstream.take();
            if !d.is_empty() {
                out.upstream.push((p.name.clone(), d));
            }
        }
        // Retired counters leave once nothing but this list holds them (no request in flight
        // can still count into them), after a last take.
        self.retired.lock().retain(|r| match r {
            Retired::Route(agent, id, s) => {
                let d = s.take();
                if !d.is_empty() {
                    out.routes.push((agent.clone(), id.clone(), d));
                }
                Arc::strong_count(s) > 1
            }
            Retired::Agent(agent, l) => {
                let d = l.take();
                if !d.is_empty() {
                    out.upstream.push((agent.clone(), d));
                }
                Arc::strong_count(l) > 1
            }
        });
        out
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The whole decision for one request head; see the module docs.
    pub fn admit<'a, H>(&self, req: &RequestHead<'a, H>) -> AdmitOutcome
    where
        H: Fn(&str) -> Option<&'a str>,
    {
        let snap = self.current.load();
        let Some(m) = snap
            .table
            .lookup(req.method, req.host, req.path, &req.header)
        else {
            return AdmitOutcome::from(snap.miss(req));
        };
        let route = &snap.routes[m.index];
        let pool = &snap.pools[route.agent];

        let presented = (req.header)("authorization")
            .and_then(bearer)
            .or_else(|| (req.header)("x-api-key"));
        let identity = match presented {
            Some(secret) => match snap.authenticate(secret) {
                Some(id) => Some(id),
                None if route.auth_required => {
                    return AdmitOutcome::from(reject(401, "unauthorized", "unknown API key"))
                }
                None => None,
            },
            None if route.auth_required => {
                return AdmitOutcome::from(reject(
                    401,
                    "unauthorized",
                    "an API key is required (Authorization: Bearer or X-API-Key)",
                ))
            }
            None => None,
        };
        if !route.roles.is_empty() {
            let allowed =
                identity.is_some_and(|id| id.roles.iter().any(|r| route.roles.contains(r)));
            if !allowed {
                return AdmitOutcome::from(reject(
                    403,
                    "forbidden",
                    "the API key lacks a role this route requires",
                ));
            }
        }

        // X-Priority may lower the class freely and raise it up to the caller's role cap.
        let mut priority = route.priority;
        if let Some(asked) =
            (req.header)("x-priority").and_then(|v| v.trim().parse::<Priority>().ok())
        {
            let cap = identity.map_or(route.priority, |id| id.max_priority.min(route.priority));
            priority = asked.max(cap);
        }

        let mut ratelimit = None;
        if let Some((key, limiter, _)) = &route.limit {
            let k: &str = match key {
                LimitKey::Ip => req.client_ip,
                LimitKey::ApiKey => identity.map_or(req.client_ip, |id| &id.key_id),
                LimitKey::Tenant => identity
                    .and_then(|id| id.tenant.as_deref())
                    .unwrap_or(req.client_ip),
                LimitKey::Header(h) => (req.header)(h).unwrap_or(req.client_ip),
            };
            let d = limiter.check(k, 1);
            let (policy, state) = limiter.headers(&d);
            if !d.allowed {
                let mut r = reject(
                    429,
                    "rate_limited",
                    format!("rate limit of route {:?} exceeded", m.id.as_ref()),
                );
                r.headers.push(("ratelimit-policy", policy));
                r.headers.push(("ratelimit", state));
                if let Some(after) = RateLimiter::retry_after_header(&d) {
                    r.headers.push(("retry-after", after));
                }
                return AdmitOutcome::from(r);
            }
            ratelimit = Some((policy, state));
        }

        let mut admitted = Admitted {
            route: m.index,
            agent: route.agent,
            endpoint: 0,
            strip: if route.strip_prefix { m.prefix_len } else { 0 },
            priority,
            identity: identity.cloned(),
            ratelimit,
            hide_auth: route.auth_required,
            preserve_host: pool.spec.preserve_host,
            stats: Recorder::new(route.stats.clone(), pool.upstream.clone()),
        };
        let outcome = pool.admission.acquire(priority);
        let mut granted = None;
        let decision = match outcome.decision {
            AcquireDecision::Admit => match pool.balancer.pick() {
                Ok(e) => {
                    admitted.endpoint = e;
                    Admit::Proceed(admitted)
                }
                Err(u) => {
                    // The slot we cannot use passes to the next waiter; its own pick will fail
                    // just as fast if nothing changed meanwhile.
                    granted = pool.admission.release();
                    Admit::Rejected(unavailable(u, &pool.name))
                }
            },
            AcquireDecision::Queued(ticket) => Admit::Queued(admitted, ticket),
            AcquireDecision::Reject(reason) => {
                let (why, detail) = match reason {
                    RejectReason::QueueFull => ("queue_full", "the agent's queue is full"),
                    RejectReason::Shed => {
                        ("shed", "shed under load in favour of higher priorities")
                    }
                };
                Admit::Rejected(reject(
                    503,
                    why,
                    format!("agent {:?}: {detail}", pool.name.as_ref()),
                ))
            }
        };
        AdmitOutcome {
            decision,
            shed: outcome.shed,
            granted,
            agent: Some(route.agent),
        }
    }

    /// [`Engine::admit`], plus the upstream request's header block and target for an admitted
    /// request. A head that cannot be forwarded (injection, bad Content-Length) is refused with
    /// 400 and its slot or ticket handed back, so the caller has nothing to undo.
    pub fn admit_forward<'a, 'h, H, I>(
        &self,
        req: &RequestHead<'a, H>,
        headers: I,
        client: &Client<'_>,
    ) -> (AdmitOutcome, Option<Forward>)
    where
        H: Fn(&str) -> Option<&'a str>,
        I: IntoIterator<Item = (&'h str, &'h str)>,
        I::IntoIter: Clone,
    {
        let mut out = self.admit(req);
        let a = match &out.decision {
            Admit::Proceed(a) | Admit::Queued(a, _) => a,
            Admit::Rejected(_) => return (out, None),
        };
        let f = Forwarding {
            method: req.method,
            client_ip: req.client_ip,
            scheme: client.scheme,
            host: req.host,
            request_id: client.request_id,
            preserve_host: a.preserve_host,
            hide_auth: a.hide_auth,
        };
        match forward_block(headers, &f) {
            Ok(block) => {
                let target = upstream_target(req.path, a.strip, client.query);
                (out, Some(Forward { block, target }))
            }
            Err(e) => {
                let granted = match &out.decision {
                    Admit::Proceed(a) => {
                        self.finish(a.agent, Some(a.endpoint), 0, Outcome::Cancelled, false)
                    }
                    Admit::Queued(a, t) if !self.cancel(a.agent, *t) => self.release(a.agent),
                    _ => None,
                };
                out.granted = out.granted.or(granted);
                out.decision = Admit::Rejected(reject(400, "bad_request", e.to_string()));
                (out, None)
            }
        }
    }

    /// Picks an endpoint for a request that holds a slot of `agent` (after queueing, or a retry).
    pub fn pick(&self, agent: usize) -> Result<usize, Rejection> {
        let snap = self.current.load();
        let pool = snap
            .pools
            .get(agent)
            .ok_or_else(|| reject(503, "no_endpoint", "agent no longer configured"))?;
        pool.balancer.pick().map_err(|u| unavailable(u, &pool.name))
    }

    /// Ends an attempt on `endpoint` and, unless `keep_slot`, the request's admission slot;
    /// returns the ticket that now holds the freed slot, if any.
    pub fn finish(
        &self,
        agent: usize,
        endpoint: Option<usize>,
        latency_nanos: u64,
        outcome: Outcome,
        keep_slot: bool,
    ) -> Option<u64> {
        let snap = self.current.load();
        let pool = snap.pools.get(agent)?;
        if let Some(e) = endpoint {
            let _ = pool.balancer.finish(e, latency_nanos, outcome);
        }
        if keep_slot {
            None
        } else {
            pool.admission.release()
        }
    }

    /// Releases the admission slot of a request that never picked an endpoint.
    pub fn release(&self, agent: usize) -> Option<u64> {
        self.current.load().pools.get(agent)?.admission.release()
    }

    /// Withdraws a queued ticket; false if it was granted meanwhile (the caller then holds a
    /// slot and must release it).
    pub fn cancel(&self, agent: usize, ticket: u64) -> bool {
        self.current
            .load()
            .pools
            .get(agent)
            .is_some_and(|p| p.admission.cancel(ticket))
    }

    /// Tickets of every pool that waited longer than their class allows, by agent index.
    pub fn expire(&self) -> Vec<(usize, u64)> {
        let snap = self.current.load();
        let mut out = Vec::new();
        for (i, p) in snap.pools.iter().enumerate() {
            out.extend(p.admission.expire().into_iter().map(|t| (i, t)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn engine() -> Engine {
        let spec: EngineSpec = serde_json::from_value(serde_json::json!({
            "agents": [{"name": "a", "endpoints": [{"url": "http://a:1"}]}],
            "routes": [
                {"id": "get", "path_prefix": "/keep", "methods": ["GET", "head"], "agent": "a"},
                {"id": "any", "path": "/open", "agent": "a"}
            ]
        }))
        .expect("test spec");
        Engine::new(spec, AnyClock::Manual(ManualClock::new())).expect("valid spec")
    }

    fn status(e: &Engine, method: &str, path: &str) -> (u16, Vec<(&'static str, String)>) {
        let head = RequestHead {
            method,
            host: "h",
            path,
            client_ip: "ip",
            header: |_: &str| None,
        };
        match e.admit(&head).decision {
            Admit::Rejected(r) => (r.status, r.headers),
            Admit::Proceed(_) | Admit::Queued(..) => (200, Vec::new()),
        }
    }

    #[test]
    fn wrong_method_on_an_existing_path_is_405_with_allow() {
        let e = engine();
        assert_eq!(status(&e, "GET", "/keep/x").0, 200);
        let (st, headers) = status(&e, "POST", "/keep/x");
        assert_eq!(st, 405);
        assert_eq!(headers, vec![("allow", "GET, HEAD".to_string())]);
        assert_eq!(status(&e, "POST", "/nowhere").0, 404);
        assert_eq!(status(&e, "DELETE", "/open").0, 200);
    }
}
