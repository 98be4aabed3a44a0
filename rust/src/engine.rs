//! The gateway's decision for one request head, in one call, cheapest refusals first.
//!
//! The config is compiled into an immutable [`Snapshot`] and swapped in atomically
//! ([`Engine::replace`]); requests in flight keep the pools they started with. Stateful parts
//! (rate limiters, balancers with their breakers and latency estimates, admission queues, retry
//! budgets, upstream connections, counters) are carried over by agent name and route id when
//! their configuration did not change, so a reload never resets a tripped breaker or hands out a
//! fresh rate-limit budget. A removed agent's pool lives as long as a request still uses it.
//!
//! [`Engine::admit`] checks, in this order, and stops at the first refusal:
//!
//! 1. route (404) and method (405);
//! 2. API key (401) and roles (403);
//! 3. declared body size against the route's `max_body` (413);
//! 4. RFC 9421 signature (401);
//! 5. the rate limit (429): the first check that spends anything;
//! 6. admission: a slot now, a place in the priority queue, or 503 (queue full / shed);
//! 7. an endpoint from the balancer (503 when none is available).
//!
//! The result is a [`Decision`]: an [`InFlight`] request (the caller forwards it), a
//! [`Queued`] one (await [`Queued::wait`]), or a [`Rejection`].

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::admission::{
    Admission, AdmissionConfig, Decision as AcquireDecision, Priority, Reason as RejectReason,
};
use crate::balancer::{Balancer, EndpointSpec, Unavailable};
use crate::breaker::BreakerConfig;
use crate::clock::AnyClock;
use crate::cluster_limit::{self, ClusterLimit, LeaseBoard};
use crate::config::{self, ConfigError, GatewayConfig};
use crate::httpsig::{HttpSigError, RequestView, UnixClock, Verifier, VerifyPolicy};
use crate::lifecycle::{Activating, InFlight, Queued, Waiters};
use crate::limiter::{Quota, RateLimiter};
use crate::normalize::{EncodedSlash, Options as PathOptions};
use crate::proxy::upstream::Endpoint;
use crate::retry::{RetryBudget, RetryPolicy};
use crate::router::{PathMatch, RouteSpec, RouteTable};
use crate::signature::{parse_public_key, VerifyingKey};
use crate::stats::{AgentDelta, AgentStats, GatewayStats, RouteDelta, RouteStats};
use crate::trace::Tracer;

const MS: u64 = 1_000_000;
/// Keys kept per rate limiter before idle ones are evicted.
pub const LIMITER_MAX_KEYS: usize = 100_000;

/// Why a request is refused, with what the problem response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable reason (the problem `type` suffix).
    pub reason: &'static str,
    /// Human detail.
    pub detail: String,
    /// Extra response headers (Allow, RateLimit, Retry-After, WWW-Authenticate).
    pub headers: Vec<(&'static str, String)>,
}

/// A refusal without extra headers.
pub fn reject(status: u16, reason: &'static str, detail: impl Into<String>) -> Rejection {
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

/// The request head as the engine reads it.
pub trait RequestHead: RequestView {
    /// The normalised path routes are matched against (without the query).
    fn route_path(&self) -> &str;
    /// One header value by lowercase name (the first, if repeated).
    fn header(&self, name: &str) -> Option<&str>;
    /// The client's address, for `ip` rate-limit keys.
    fn client_ip(&self) -> &str;
    /// The declared body size: `Some(n)` for Content-Length, `None` when chunked or absent.
    fn content_length(&self) -> Option<u64>;
    /// Whether the request carries a body (Content-Length > 0 or Transfer-Encoding).
    fn has_body(&self) -> bool;
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

enum LimitKey {
    Ip,
    ApiKey,
    Tenant,
    Header(Box<str>),
}

/// One route as the engine runs it: its match result is an index into these.
pub struct RouteRules {
    /// Stable id.
    pub id: Arc<str>,
    /// The agent's pool.
    pub pool: Arc<Pool>,
    methods: Box<[Box<str>]>,
    /// Drop the matched prefix before forwarding.
    pub strip_prefix: bool,
    priority: Priority,
    /// An API key is required (and then not forwarded).
    pub auth_required: bool,
    roles: Box<[Box<str>]>,
    limit: Option<(LimitKey, Arc<RateLimiter>, config::RateLimit)>,
    /// With `scope: cluster`: the limit enforced from leases (`limit`'s limiter is its fallback).
    pub cluster: Option<Arc<ClusterLimit>>,
    /// Largest request body.
    pub max_body: Option<u64>,
    /// RFC 9421 signature required; a body is checked against its Content-Digest.
    pub signed: bool,
    /// Retry non-idempotent methods too.
    pub retry_non_idempotent: bool,
    /// Forward `Proxy-Authorization` / `Proxy-Authenticate` instead of consuming them.
    pub forward_proxy_auth: bool,
    /// Requests of this route, by status class, with latency.
    pub stats: Arc<RouteStats>,
}

/// A pool: one agent's endpoints and everything stateful about them.
pub struct Pool {
    /// Agent name.
    pub name: Arc<str>,
    /// Endpoints by balancer index, with their connections.
    pub endpoints: Box<[Arc<Endpoint>]>,
    /// Balancer (one breaker per endpoint).
    pub balancer: Arc<Balancer>,
    /// Admission slots and queues.
    pub admission: Arc<Admission>,
    /// Requests parked in the queue, woken when a slot frees up.
    pub waiters: Arc<Waiters>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Retry budget, shared by every request to this agent.
    pub budget: Arc<RetryBudget>,
    /// Upstream latency, retries, queue refusals.
    pub stats: Arc<AgentStats>,
    /// The agent's config (timeouts, health check, host header …).
    pub config: config::Agent,
    /// Longest queue wait.
    pub queue_wait: std::time::Duration,
    /// Headers set on every upstream request of this agent.
    pub headers: http::HeaderMap,
}

impl Pool {
    /// Picks an endpoint, or says why none is available.
    pub fn pick(&self) -> Result<usize, Rejection> {
        self.balancer.pick().map_err(|u| unavailable(u, &self.name))
    }
}

/// Signature verification with its replay cache, carried over while its settings stay.
struct Signing {
    verifier: Verifier,
    settings: (u64, bool, usize),
}

/// How the listener reads requests (from the `http:` section).
#[derive(Debug, Clone, Copy)]
pub struct HttpRules {
    /// Request line plus headers, bytes.
    pub max_header_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
    /// Path normalisation.
    pub path: PathOptions,
}

/// A compiled, immutable configuration.
pub struct Snapshot {
    table: RouteTable,
    // The same routes without method conditions, consulted only after a miss: a hit there
    // means the path exists but not for this method (405 instead of 404).
    any_method: Option<RouteTable>,
    routes: Box<[RouteRules]>,
    /// Pools by agent name (sorted).
    pub pools: Box<[Arc<Pool>]>,
    keys: HashMap<[u8; 32], Identity>,
    trusted: HashMap<String, VerifyingKey>,
    signing: Arc<Signing>,
    signing_body: u64,
    /// Head limits and path normalisation.
    pub http: HttpRules,
    /// Trace context and span export.
    pub tracer: Arc<Tracer>,
    /// Redis reachability and the lease loop's wake-up, for every cluster limit.
    pub leases: Arc<LeaseBoard>,
}

/// The decision of [`Engine::admit`].
pub enum Decision {
    /// Forward it: a slot is held and an endpoint is picked.
    Go(InFlight),
    /// Wait for a slot with [`Queued::wait`].
    Wait(Queued),
    /// The agent has no endpoint yet: wait for one with [`Activating::wait`] (the slot is held).
    Activate(Activating),
    /// Refuse it.
    Reject(Rejection),
}

/// What an admitted request carries from the decision to the forwarding.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The route's index in the snapshot.
    pub route: usize,
    /// Bytes of the normalised path to drop before forwarding (strip_prefix).
    pub strip: usize,
    /// The class the request runs in.
    pub priority: Priority,
    /// The caller, when a valid key was presented.
    pub identity: Option<Identity>,
    /// RateLimit-Policy and RateLimit values, when the route is limited.
    pub ratelimit: Option<(String, String)>,
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

fn trusted_key(text: &str) -> Option<VerifyingKey> {
    if let Some(raw) = hex32(text) {
        return parse_public_key(&raw).ok();
    }
    parse_public_key(text.as_bytes()).ok()
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn at(path: String) -> impl Fn(String) -> ConfigError {
    move |msg| ConfigError(format!("{path}: {msg}"))
}

impl Snapshot {
    /// Compiles a config, reusing the stateful parts of `previous` whose settings are unchanged.
    pub fn compile(
        cfg: &GatewayConfig,
        previous: Option<&Snapshot>,
        clock: &AnyClock,
    ) -> Result<Snapshot, ConfigError> {
        let old_pools: HashMap<&str, &Arc<Pool>> = previous
            .map(|p| p.pools.iter().map(|x| (x.name.as_ref(), x)).collect())
            .unwrap_or_default();
        let old_routes: HashMap<&str, &RouteRules> = previous
            .map(|p| p.routes.iter().map(|r| (r.id.as_ref(), r)).collect())
            .unwrap_or_default();
        let leases = previous.map_or_else(Arc::default, |p| p.leases.clone());

        let mut pools = Vec::with_capacity(cfg.agents.len());
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(cfg.agents.len());
        for (name, a) in &cfg.agents {
            by_name.insert(name.as_str(), pools.len());
            pools.push(Self::pool(
                name,
                a,
                old_pools.get(name.as_str()).copied(),
                clock,
            )?);
        }

        let mut specs = Vec::with_capacity(cfg.routes.len());
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for (i, r) in cfg.routes.iter().enumerate() {
            let id = GatewayConfig::route_id(r);
            let err = |field: &str| at(format!("routes[{i}] ({id:?}).{field}"));
            let m = &r.matcher;
            let path = match (&m.path, &m.path_prefix, &m.path_template) {
                (Some(p), None, None) => PathMatch::Exact(p.clone()),
                (None, Some(p), None) => PathMatch::Prefix(p.clone()),
                (None, None, Some(p)) => PathMatch::Template(p.clone()),
                _ => {
                    return Err(err("match")(
                        "give exactly one of path_prefix, path, path_template".into(),
                    ))
                }
            };
            let pool = by_name
                .get(r.agent.as_str())
                .and_then(|&p| pools.get(p))
                .ok_or_else(|| err("agent")(format!("unknown agent {:?}", r.agent)))?
                .clone();
            let priority = r.priority.parse::<Priority>().map_err(err("priority"))?;
            let auth_required = match r.auth.as_str() {
                "required" => true,
                "none" => false,
                other => return Err(err("auth")(format!("{other:?}: expected required or none"))),
            };
            let signed = match r.signature.as_str() {
                "required" => true,
                "none" => false,
                other => {
                    return Err(err("signature")(format!(
                        "{other:?}: expected required or none"
                    )))
                }
            };
            if !r.roles.is_empty() && !auth_required {
                return Err(err("roles")(
                    "roles need auth: required on the route".into(),
                ));
            }
            let old = old_routes.get(id.as_str()).copied();
            let limit = match &r.rate_limit {
                None => None,
                Some(rl) => {
                    let key = match rl.key.as_str() {
                        "ip" => LimitKey::Ip,
                        "api_key" | "tenant" if !auth_required => {
                            return Err(err("rate_limit.key")(format!(
                                "key {:?} needs auth: required on the route",
                                rl.key
                            )))
                        }
                        "api_key" => LimitKey::ApiKey,
                        "tenant" => LimitKey::Tenant,
                        k => match k.strip_prefix("header:") {
                            Some(h) if !h.is_empty() => {
                                LimitKey::Header(h.to_ascii_lowercase().into())
                            }
                            _ => {
                                return Err(err("rate_limit.key")(format!(
                                    "{k:?}: expected ip, api_key, tenant or header:<name>"
                                )))
                            }
                        },
                    };
                    let reused = old
                        .and_then(|o| o.limit.as_ref())
                        .filter(|(_, _, rule)| rule == rl)
                        .map(|(_, l, _)| Arc::clone(l));
                    let limiter = match reused {
                        Some(l) => l,
                        None => {
                            let burst = if rl.burst == 0 {
                                rl.rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
                            } else {
                                rl.burst
                            };
                            let quota = Quota::new(rl.rate, burst)
                                .map_err(|e| err("rate_limit")(e.to_string()))?;
                            Arc::new(
                                RateLimiter::new(quota, LIMITER_MAX_KEYS, clock.clone())
                                    .map_err(|e| err("rate_limit")(e.to_string()))?,
                            )
                        }
                    };
                    Some((key, limiter, rl.clone()))
                }
            };
            let cluster = match &limit {
                Some((_, limiter, rl)) => cluster_limit::compile(
                    rl,
                    limiter,
                    old.filter(|o| o.limit.as_ref().is_some_and(|(_, _, was)| was == rl))
                        .and_then(|o| o.cluster.as_ref()),
                    &leases,
                    clock,
                )
                .map_err(err("rate_limit"))?,
                None => None,
            };
            let methods: Vec<String> = m.methods.clone().unwrap_or_default();
            specs.push(RouteSpec {
                id: id.clone(),
                host: m.host.clone(),
                methods: methods.clone(),
                path,
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            });
            // counters carry over per (agent, route id), like the metric labels they feed
            let stats = old
                .filter(|o| o.pool.name.as_ref() == r.agent)
                .map_or_else(Arc::default, |o| o.stats.clone());
            routes.push(RouteRules {
                id: id.as_str().into(),
                pool,
                methods: methods
                    .iter()
                    .map(|s| s.to_ascii_uppercase().into())
                    .collect(),
                strip_prefix: r.strip_prefix,
                priority,
                auth_required,
                roles: r.roles.iter().map(|s| s.as_str().into()).collect(),
                limit,
                cluster,
                max_body: r.max_body,
                signed,
                retry_non_idempotent: r.retry_non_idempotent,
                forward_proxy_auth: r.forward_proxy_auth,
                stats,
            });
        }
        let table_err = |e: crate::router::RouterError| {
            ConfigError(format!(
                "routes[{}] ({:?}).match.{}: {}",
                e.index, e.id, e.field, e.message
            ))
        };
        let table = RouteTable::compile(&specs).map_err(table_err)?;
        let any_method = if specs.iter().any(|s| !s.methods.is_empty()) {
            let loose: Vec<RouteSpec> = specs
                .iter()
                .map(|s| RouteSpec {
                    methods: Vec::new(),
                    ..s.clone()
                })
                .collect();
            Some(RouteTable::compile(&loose).map_err(table_err)?)
        } else {
            None
        };

        let mut role_caps = HashMap::new();
        for (role, r) in &cfg.auth.roles {
            let p = r
                .max_priority
                .parse::<Priority>()
                .map_err(at(format!("auth.roles.{role}.max_priority")))?;
            role_caps.insert(role.as_str(), p);
        }
        let mut keys = HashMap::with_capacity(cfg.auth.api_keys.len());
        for (i, k) in cfg.auth.api_keys.iter().enumerate() {
            let digest = k
                .hash
                .strip_prefix("sha256:")
                .and_then(|h| hex32(&h.to_ascii_lowercase()))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "auth.api_keys[{i}].hash: expected 'sha256:' and 64 hex digits"
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
                return Err(ConfigError(format!(
                    "auth.api_keys[{i}].hash: duplicate key hash"
                )));
            }
        }

        let sig = &cfg.signatures;
        let mut trusted = HashMap::with_capacity(sig.trusted_keys.len());
        for (i, k) in sig.trusted_keys.iter().enumerate() {
            let key = trusted_key(&k.public_key).ok_or_else(|| {
                ConfigError(format!(
                    "signatures.trusted_keys[{i}].public_key: expected a 32-byte Ed25519 key in base64 or hex"
                ))
            })?;
            trusted.insert(k.keyid.clone(), key);
        }
        let window = sig.window.max(1.0).round() as u64;
        let settings = (window, sig.require_nonce, sig.nonce_cache);
        // the nonce cache (replay protection) survives reloads that keep its settings
        let signing = match previous {
            Some(p) if p.signing.settings == settings => p.signing.clone(),
            _ => Arc::new(Signing {
                verifier: Verifier::new(
                    VerifyPolicy {
                        require_nonce: sig.require_nonce,
                        max_age_secs: Some(window),
                        ..VerifyPolicy::default()
                    },
                    UnixClock::new(clock.clone(), None),
                    Some(sig.nonce_cache.max(1)),
                ),
                settings,
            }),
        };

        let h = &cfg.http;
        let encoded_slash = h
            .encoded_slash
            .parse::<EncodedSlash>()
            .map_err(at("http.encoded_slash".into()))?;
        if h.max_header_bytes < 1024 {
            return Err(ConfigError(
                "http.max_header_bytes: must be at least 1KiB".into(),
            ));
        }
        if h.max_headers == 0 {
            return Err(ConfigError("http.max_headers: must be at least 1".into()));
        }
        let http = HttpRules {
            max_header_bytes: usize::try_from(h.max_header_bytes).unwrap_or(usize::MAX),
            max_headers: h.max_headers as usize,
            path: PathOptions {
                merge_slashes: h.merge_slashes,
                encoded_slash,
            },
        };
        // the exporter (and its queue) carries over while its settings stay
        let tracer = match previous {
            Some(p) if p.tracer.settings() == &cfg.tracing => p.tracer.clone(),
            _ => {
                if !(0.0..=1.0).contains(&cfg.tracing.sampling_ratio) {
                    return Err(ConfigError(
                        "tracing.sampling_ratio: must be between 0 and 1".into(),
                    ));
                }
                Arc::new(Tracer::new(&cfg.tracing).map_err(ConfigError)?)
            }
        };
        Ok(Snapshot {
            table,
            any_method,
            routes: routes.into(),
            pools: pools.into(),
            keys,
            trusted,
            signing,
            signing_body: sig.max_body,
            http,
            tracer,
            leases,
        })
    }

    fn pool(
        name: &str,
        a: &config::Agent,
        old: Option<&Arc<Pool>>,
        clock: &AnyClock,
    ) -> Result<Arc<Pool>, ConfigError> {
        let err = |field: &str| at(format!("agents.{name}.{field}"));
        if a.endpoints.is_empty() && a.activation.is_none() {
            return Err(err("endpoints")(
                "at least one endpoint (or activation, to scale from zero)".into(),
            ));
        }
        if a.max_concurrency == 0 {
            return Err(err("max_concurrency")("must be at least 1".into()));
        }
        let cb = &a.circuit_breaker;
        let breaker = BreakerConfig {
            consecutive_failures: cb.consecutive_failures,
            error_rate: cb.error_rate,
            min_requests: cb.min_requests,
            open_nanos: (cb.open_for * 1e9) as u64,
            max_open_nanos: (cb.open_max_secs() * 1e9) as u64,
            ..BreakerConfig::default()
        };
        let same = |f: &dyn Fn(&config::Agent) -> bool| old.is_some_and(|o| f(&o.config));
        let balancer = match old {
            Some(o) if same(&|o| o.endpoints == a.endpoints && o.circuit_breaker == *cb) => {
                o.balancer.clone()
            }
            _ => {
                let eps = a
                    .endpoints
                    .iter()
                    .map(|e| EndpointSpec {
                        id: e.url.clone(),
                        weight: e.weight,
                        breaker: breaker.clone(),
                    })
                    .collect();
                Arc::new(
                    Balancer::try_new(eps, 10_000 * MS, clock.clone())
                        .map_err(|e| err("endpoints")(e.to_string()))?,
                )
            }
        };
        // connections are kept per URL even when the pool's other settings change
        let old_eps: HashMap<&str, &Arc<Endpoint>> = old
            .filter(|o| o.config.tls == a.tls)
            .map(|o| o.endpoints.iter().map(|e| (e.url.as_ref(), e)).collect())
            .unwrap_or_default();
        let mut endpoints = Vec::with_capacity(a.endpoints.len());
        for (j, e) in a.endpoints.iter().enumerate() {
            let ep = match old_eps.get(e.url.as_str()) {
                Some(ep) => Arc::clone(ep),
                None => Arc::new(
                    Endpoint::new(&e.url, &a.tls)
                        .map_err(|m| err(&format!("endpoints[{j}].url"))(m))?,
                ),
            };
            endpoints.push(ep);
        }
        let queue_wait = a.queue_wait();
        let wait = u64::try_from(queue_wait.as_nanos()).unwrap_or(u64::MAX);
        let (admission, waiters) = match old {
            Some(o)
                if same(&|o| {
                    o.max_concurrency == a.max_concurrency
                        && o.max_queue == a.max_queue
                        && o.queue_timeout == a.queue_timeout
                }) =>
            {
                (o.admission.clone(), o.waiters.clone())
            }
            _ => (
                Arc::new(Admission::new(
                    AdmissionConfig {
                        max_concurrency: a.max_concurrency,
                        max_queue: a.max_queue,
                        max_wait_nanos: [wait; 4],
                    },
                    clock.clone(),
                )),
                Arc::new(Waiters::default()),
            ),
        };
        let mut headers = http::HeaderMap::with_capacity(a.headers.len());
        for (k, v) in &a.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| err(&format!("headers.{k}"))("not an HTTP header name".into()))?;
            // the message never repeats the value: it may hold a secret
            let value = http::HeaderValue::from_str(v).map_err(|_| {
                err(&format!("headers.{k}"))("value is not a valid header value".into())
            })?;
            headers.insert(name, value);
        }
        let retry = RetryPolicy::from_config(&a.retries)
            .map_err(|e| ConfigError(format!("agents.{name}.{}", e.0)))?;
        let budget = match old {
            Some(o) if o.retry.budget_ratio == retry.budget_ratio => o.budget.clone(),
            _ => Arc::new(RetryBudget::new(retry.budget_ratio)),
        };
        Ok(Arc::new(Pool {
            name: name.into(),
            endpoints: endpoints.into(),
            balancer,
            admission,
            waiters,
            retry,
            budget,
            stats: old.map_or_else(Arc::default, |o| o.stats.clone()),
            config: a.clone(),
            queue_wait,
            headers,
        }))
    }

    fn miss<H: RequestHead>(&self, req: &H) -> Rejection {
        let path = req.route_path();
        let loose = self
            .any_method
            .as_ref()
            .and_then(|t| t.lookup(req.method(), req.authority(), path, |n| req.header(n)));
        match loose.and_then(|m| self.routes.get(m.index)) {
            Some(route) => {
                let mut r = reject(
                    405,
                    "method_not_allowed",
                    format!("method {} not allowed for {path}", req.method()),
                );
                r.headers.push(("allow", route.methods.join(", ")));
                r
            }
            None => reject(
                404,
                "no_route",
                format!("no route for {} {path}", req.method()),
            ),
        }
    }

    /// The route at `index`.
    pub fn route(&self, index: usize) -> Option<&RouteRules> {
        self.routes.get(index)
    }

    /// Every route.
    pub fn routes(&self) -> &[RouteRules] {
        &self.routes
    }

    /// The pool of an agent, by name.
    pub fn pool_named(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools
            .binary_search_by(|p| p.name.as_ref().cmp(name))
            .ok()
            .and_then(|i| self.pools.get(i))
    }

    /// Identity for a presented API key secret.
    pub fn authenticate(&self, secret: &str) -> Option<&Identity> {
        // Digest then hash lookup: the timing depends on the digest, not on how much of the
        // secret matched, so there is no prefix-guessing oracle.
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.keys.get(&digest)
    }

    fn verify<H: RequestHead>(&self, req: &H) -> Result<(), Rejection> {
        let keys = |id: &str| self.trusted.get(id).copied();
        match self
            .signing
            .verifier
            .verify(req, None, &keys, req.has_body())
        {
            Ok(_) => Ok(()),
            Err(e) => Err(sig_rejection(&e)),
        }
    }
}

fn sig_rejection(e: &HttpSigError) -> Rejection {
    let mut r = reject(
        401,
        "bad_signature",
        format!("signature rejected ({}): {e}", e.code()),
    );
    r.headers
        .push(("www-authenticate", "Signature realm=\"agentgate\"".into()));
    r
}

/// The decision engine over an atomically swappable snapshot.
pub struct Engine {
    current: Arc<ArcSwap<Snapshot>>,
    clock: AnyClock,
    /// Agents with no endpoint that a request waits for, and the signal of new snapshots.
    pub activations: Arc<crate::lifecycle::Activations>,
    /// Answers of the gateway's own, by status.
    pub gateway_stats: GatewayStats,
    // tenants over a budget whose action is `limit`: refused with 429 (set by the control plane)
    limited: ArcSwap<std::collections::HashSet<Arc<str>>>,
    // Counters of routes and agents a reload removed, until their last counts are taken.
    retired: parking_lot::Mutex<Vec<Retired>>,
}

enum Retired {
    Route(Arc<str>, Arc<str>, Arc<RouteStats>),
    Agent(Arc<str>, Arc<AgentStats>),
}

/// Counts taken by [`Engine::take_stats`]: only routes and agents with something new.
#[derive(Debug, Default)]
pub struct StatsDelta {
    /// (agent, route id, counts) per route.
    pub routes: Vec<(Arc<str>, Arc<str>, RouteDelta)>,
    /// (agent, counts) per agent.
    pub agents: Vec<(Arc<str>, AgentDelta)>,
    /// (status, count) of the gateway's own answers; status 0 = other.
    pub rejected: Vec<(u16, u64)>,
}

impl Engine {
    /// An engine for a config.
    pub fn new(cfg: &GatewayConfig, clock: AnyClock) -> Result<Engine, ConfigError> {
        let snap = Snapshot::compile(cfg, None, &clock)?;
        Ok(Engine {
            current: Arc::new(ArcSwap::from_pointee(snap)),
            clock,
            activations: Arc::default(),
            limited: ArcSwap::default(),
            gateway_stats: GatewayStats::default(),
            retired: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// The clock the engine's state runs on.
    pub fn clock(&self) -> &AnyClock {
        &self.clock
    }

    /// Compiles `cfg` and swaps it in; on error the running snapshot stays.
    pub fn replace(&self, cfg: &GatewayConfig) -> Result<(), ConfigError> {
        let old = self.current.load_full();
        let snap = Snapshot::compile(cfg, Some(&old), &self.clock)?;
        let kept_routes: std::collections::HashSet<*const RouteStats> =
            snap.routes.iter().map(|r| Arc::as_ptr(&r.stats)).collect();
        let kept_agents: std::collections::HashSet<*const AgentStats> =
            snap.pools.iter().map(|p| Arc::as_ptr(&p.stats)).collect();
        let mut retired = Vec::new();
        for r in old.routes.iter() {
            if !kept_routes.contains(&Arc::as_ptr(&r.stats)) {
                retired.push(Retired::Route(
                    r.pool.name.clone(),
                    r.id.clone(),
                    r.stats.clone(),
                ));
            }
        }
        for p in old.pools.iter() {
            if !kept_agents.contains(&Arc::as_ptr(&p.stats)) {
                retired.push(Retired::Agent(p.name.clone(), p.stats.clone()));
            }
        }
        self.current.store(Arc::new(snap));
        self.retired.lock().extend(retired);
        self.activations.changed.notify_waiters();
        Ok(())
    }

    /// Sets the tenants over their spending budget (refused with 429 `budget-exceeded`).
    pub fn set_limited_tenants(&self, tenants: impl IntoIterator<Item = String>) {
        let set = tenants.into_iter().map(|t| Arc::from(t.as_str())).collect();
        self.limited.store(Arc::new(set));
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Takes the counts since the last take, for every route and agent that has some.
    pub fn take_stats(&self) -> StatsDelta {
        let snap = self.current.load();
        let mut out = StatsDelta {
            rejected: self.gateway_stats.take(),
            ..StatsDelta::default()
        };
        for r in snap.routes.iter() {
            let d = r.stats.take();
            if !d.is_empty() {
                out.routes.push((r.pool.name.clone(), r.id.clone(), d));
            }
        }
        for p in snap.pools.iter() {
            let d = p.stats.take();
            if !d.is_empty() {
                out.agents.push((p.name.clone(), d));
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
            Retired::Agent(agent, s) => {
                let d = s.take();
                if !d.is_empty() {
                    out.agents.push((agent.clone(), d));
                }
                Arc::strong_count(s) > 1
            }
        });
        out
    }

    /// The whole decision for one request head; see the module docs.
    pub fn admit<H: RequestHead>(&self, req: &H) -> Decision {
        let snap = self.current.load_full();
        let path = req.route_path();
        let Some(m) = snap
            .table
            .lookup(req.method(), req.authority(), path, |n| req.header(n))
        else {
            return Decision::Reject(snap.miss(req));
        };
        let Some(route) = snap.routes.get(m.index) else {
            return Decision::Reject(reject(404, "no_route", "route vanished"));
        };

        // 2. credentials
        let presented = req
            .header("authorization")
            .and_then(bearer)
            .or_else(|| req.header("x-api-key"));
        let identity = match presented {
            Some(secret) => match snap.authenticate(secret) {
                Some(id) => Some(id),
                None if route.auth_required => {
                    return Decision::Reject(reject(401, "unauthorized", "unknown API key"))
                }
                None => None,
            },
            None if route.auth_required => {
                return Decision::Reject(reject(
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
                return Decision::Reject(reject(
                    403,
                    "forbidden",
                    "the API key lacks a role this route requires",
                ));
            }
        }
        // over budget: cheap, and before anything is spent
        if let Some(t) = identity.and_then(|i| i.tenant.as_deref()) {
            let limited = self.limited.load();
            if !limited.is_empty() && limited.contains(t) {
                return Decision::Reject(reject(
                    429,
                    "budget-exceeded",
                    format!("tenant {t:?} is over its spending budget"),
                ));
            }
        }
        // 3. declared size
        if let (Some(max), Some(len)) = (route.max_body, req.content_length()) {
            if len > max {
                return Decision::Reject(reject(
                    413,
                    "too_large",
                    format!("body of {len} bytes exceeds {max} bytes"),
                ));
            }
        }
        // 4. signature
        if route.signed {
            if let (true, Some(len)) = (req.has_body(), req.content_length()) {
                let cap = snap.signing_cap(route);
                if len > cap {
                    return Decision::Reject(reject(
                        413,
                        "too_large",
                        format!("signed body of {len} bytes exceeds {cap} bytes"),
                    ));
                }
            }
            if let Err(r) = snap.verify(req) {
                return Decision::Reject(r);
            }
        }

        // X-Priority may lower the class freely and raise it up to the caller's role cap.
        let mut priority = route.priority;
        if let Some(asked) = req
            .header("x-priority")
            .and_then(|v| v.trim().parse::<Priority>().ok())
        {
            let cap = identity.map_or(route.priority, |id| id.max_priority.min(route.priority));
            priority = asked.max(cap);
        }

        // 5. rate limit: the first check that spends anything
        let mut ratelimit = None;
        if let Some((key, limiter, _)) = &route.limit {
            let ip = req.client_ip();
            let k: &str = match key {
                LimitKey::Ip => ip,
                LimitKey::ApiKey => identity.map_or(ip, |id| &id.key_id),
                LimitKey::Tenant => identity.and_then(|id| id.tenant.as_deref()).unwrap_or(ip),
                LimitKey::Header(h) => req.header(h).unwrap_or(ip),
            };
            if let Some(c) = &route.cluster {
                match c.admit(k, &route.id) {
                    Ok(h) => ratelimit = Some(h),
                    Err(r) => return Decision::Reject(r),
                }
            } else {
                let d = limiter.check(k, 1);
                let (policy, state) = limiter.headers(&d);
                if !d.allowed {
                    let mut r = reject(
                        429,
                        "rate_limited",
                        format!("rate limit of route {:?} exceeded", route.id.as_ref()),
                    );
                    r.headers.push(("ratelimit-policy", policy));
                    r.headers.push(("ratelimit", state));
                    if let Some(after) = RateLimiter::retry_after_header(&d) {
                        r.headers.push(("retry-after", after));
                    }
                    return Decision::Reject(r);
                }
                ratelimit = Some((policy, state));
            }
        }

        let admitted = Admitted {
            route: m.index,
            strip: if route.strip_prefix { m.prefix_len } else { 0 },
            priority,
            identity: identity.cloned(),
            ratelimit,
        };
        let pool = route.pool.clone();
        pool.budget.deposit();
        pool.stats.admitted();
        // 6. admission
        let outcome = pool.admission.acquire(priority);
        for t in outcome.shed {
            pool.stats.shed();
            pool.waiters.shed(t);
        }
        match outcome.decision {
            AcquireDecision::Admit => {
                // 7. endpoint
                match pool.pick() {
                    Ok(e) => Decision::Go(InFlight::new(snap, admitted, pool, e)),
                    Err(_) if pool.endpoints.is_empty() && pool.config.activation.is_some() => {
                        Decision::Activate(Activating::new(
                            snap,
                            admitted,
                            pool,
                            self.current.clone(),
                            self.activations.clone(),
                        ))
                    }
                    Err(r) => {
                        // The slot we cannot use passes to the next waiter; its own pick fails
                        // just as fast if nothing changed meanwhile.
                        pool.waiters
                            .grant(&pool.admission, pool.admission.release());
                        Decision::Reject(r)
                    }
                }
            }
            AcquireDecision::Queued(ticket) => Decision::Wait(Queued::new(
                snap,
                admitted,
                pool,
                ticket,
                (self.current.clone(), self.activations.clone()),
            )),
            AcquireDecision::Reject(reason) => {
                pool.stats.shed();
                let (why, detail) = match reason {
                    RejectReason::QueueFull => ("queue_full", "the agent's queue is full"),
                    RejectReason::Shed => {
                        ("shed", "shed under load in favour of higher priorities")
                    }
                };
                Decision::Reject(reject(
                    503,
                    why,
                    format!("agent {:?}: {detail}", pool.name.as_ref()),
                ))
            }
        }
    }
}

impl Snapshot {
    /// The most a signed request body may hold on this route (the digest is checked before
    /// anything is forwarded, so the body is buffered up to this).
    pub fn signing_cap(&self, route: &RouteRules) -> u64 {
        route
            .max_body
            .map_or(self.signing_body, |m| m.min(self.signing_body))
    }
}
