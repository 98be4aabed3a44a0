//! Route table: picks the route for a request head (method, host, path, headers).
//!
//! A [`RouteTable`] is compiled once from [`RouteSpec`]s (by the control plane) and then only
//! read; a [`Router`] holds the current table behind an `ArcSwap`, so `replace` never blocks a
//! lookup and a lookup always sees one whole table, never a mix of two.
//!
//! # Matching
//!
//! - Path kinds: [`PathMatch::Exact`] compares the whole path byte for byte.
//!   [`PathMatch::Prefix`] matches on a segment boundary: `/agents/echo` matches `/agents/echo`
//!   and `/agents/echo/...` but not `/agents/echoes`; trailing slashes of a prefix are ignored,
//!   so `/` matches every path. [`PathMatch::Template`] has whole-segment parameters `{name}`
//!   (one non-empty segment) and an optional trailing catch-all `{*name}` (the non-empty rest of
//!   the path, slashes included). Captured values are returned raw, NOT percent-decoded.
//! - Host: exact (`api.example.com`) or wildcard (`*.example.com`, which matches any host ending
//!   in `.example.com` with at least one label before it, not `example.com` itself). Both sides
//!   are compared case-insensitively with the port and a trailing dot removed. `None` or `"*"`
//!   means any host.
//! - Methods: empty means any; otherwise one of them (ASCII case-insensitive).
//! - Headers: every listed header must be present with exactly that value. Names are
//!   case-insensitive: the `header` callback of [`RouteTable::lookup`] is called with lowercase
//!   names.
//! - The path is given without its query string and must start with `/` (otherwise no match).
//!
//! # Priority (highest first, each criterion only breaks ties of the previous ones)
//!
//! 1. Host: exact host, then wildcard hosts (longest suffix first), then host-less routes. This
//!    is the "virtual host first" model of Envoy and nginx: a host-specific route that matches
//!    always beats a host-less one.
//! 2. Path kind: exact, then template, then prefix.
//! 3. Within templates: more static segments, then more static characters, then no catch-all.
//!    Within prefixes: the longer prefix.
//! 4. Method-restricted beats unrestricted.
//! 5. More header conditions beat fewer.
//! 6. Earlier in the spec list.
//!
//! # Cost
//!
//! Hosts are dispatched through hash maps; in each host group, exact paths are one hash lookup,
//! prefixes one walk down a per-segment trie, templates a walk of the same trie that only
//! backtracks between a static child and a parameter child. Only routes whose path matches are
//! ever looked at, so lookup time grows with the path depth and the number of routes sharing a
//! path, not with the size of the table.
//!
//! `matchit` is not used: it returns a single match per path, and here a more specific path may
//! be rejected by its method/header conditions and a less specific one must then win.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path, byte for byte.
    Exact(String),
    /// A path prefix ending on a segment boundary.
    Prefix(String),
    /// A template with `{name}` segments and an optional trailing `{*name}`.
    Template(String),
}

/// One route as configured, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Unique route id, returned on match.
    pub id: String,
    /// Exact or `*.`-wildcard host; `None` for any host.
    pub host: Option<String>,
    /// Allowed methods; empty means any.
    pub methods: Vec<String>,
    /// Path condition.
    pub path: PathMatch,
    /// Header equality conditions (names case-insensitive).
    pub headers: Vec<(String, String)>,
}

/// The keys a route may have in its JSON (or Python mapping) form.
pub const SPEC_KEYS: [&str; 7] = [
    "id",
    "path",
    "path_prefix",
    "path_template",
    "methods",
    "host",
    "headers",
];

impl RouteSpec {
    /// Reads the route at position `index` from its mapping form:
    /// `{"id", one of "path" / "path_prefix" / "path_template", "methods"?, "host"?, "headers"?}`
    /// (a `null` value counts as absent). Errors name the route and the field.
    pub fn from_json(index: usize, value: &serde_json::Value) -> Result<RouteSpec, RouterError> {
        use serde_json::Value;
        let err = |id: &str, field: &str, message: &str| RouterError {
            index,
            id: id.to_string(),
            field: field.to_string(),
            message: message.to_string(),
        };
        let Value::Object(map) = value else {
            return Err(err("", "route", "must be a mapping"));
        };
        let get = |k: &str| map.get(k).filter(|v| !v.is_null());
        let id = match get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(err("", "id", "must be a string")),
            None => return Err(err("", "id", "is required")),
        };
        if let Some(k) = map.keys().find(|k| !SPEC_KEYS.contains(&k.as_str())) {
            let msg = format!("unknown key, expected one of {}", SPEC_KEYS.join(", "));
            return Err(err(&id, k, &msg));
        }
        let string = |field: &str| match get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(&id, field, "must be a string")),
        };
        let mut paths = Vec::new();
        for (field, make) in [
            ("path", PathMatch::Exact as fn(String) -> PathMatch),
            ("path_prefix", PathMatch::Prefix),
            ("path_template", PathMatch::Template),
        ] {
            if let Some(p) = string(field)? {
                paths.push(make(p));
            }
        }
        if paths.len() != 1 {
            let msg = "give exactly one of path, path_prefix, path_template";
            return Err(err(&id, "path", msg));
        }
        let host = string("host")?;
        let methods = match get("methods") {
            None => Vec::new(),
            Some(Value::String(_)) => {
                let msg = "must be a list of strings, not a string";
                return Err(err(&id, "methods", msg));
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|m| m.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err(&id, "methods", "must be a list of strings"))?,
            Some(_) => return Err(err(&id, "methods", "must be a list of strings")),
        };
        let headers = match get("headers") {
            None => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| err(&id, "headers", "must be a mapping of str to str"))?,
            Some(_) => return Err(err(&id, "headers", "must be a mapping of str to str")),
        };
        Ok(RouteSpec {
            id,
            host,
            methods,
            path: paths.remove(0),
            headers,
        })
    }
}

/// A route spec that cannot be compiled: names the route and the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route #{index} (id {id:?}): {field}: {message}")]
pub struct RouterError {
    /// Position of the route in the spec list.
    pub index: usize,
    /// The route's id as given.
    pub id: String,
    /// The field at fault: "id", "host", "methods", "path", "headers", "route" (the route as
    /// a whole), or an unknown key.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The chosen route for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Position of the route in the spec list the table was compiled from.
    pub index: usize,
    /// The route's id.
    pub id: Arc<str>,
    /// Template captures in template order, raw (not percent-decoded); empty for other kinds.
    pub params: Vec<(String, String)>,
    /// Bytes of the path matched by a prefix route (trailing slash excluded); 0 for exact and
    /// template routes, which define no prefix to strip.
    pub prefix_len: usize,
}

impl RouteMatch {
    /// The rest of `path` after the matched prefix (`""` when the prefix is the whole path).
    pub fn remainder<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.prefix_len..).unwrap_or("")
    }
}

/// FxHash: the keys hashed are route-table segments chosen by the operator, never by clients, so
/// a fast non-keyed hash is safe here (a client can only pick which key to look up).
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Most parameters one template may capture (captures live in fixed arrays during lookup).
pub const MAX_PARAMS: usize = 16;

struct Compiled {
    id: Arc<str>,
    methods: Box<[Box<str>]>,
    headers: Box<[(Box<str>, Box<str>)]>,
    // Higher wins; unique per route because it embeds the (reversed) spec index.
    rank: u128,
    prefix_len: usize,
}

struct Terminal {
    route: u32,
    names: Box<[Box<str>]>,
}

#[derive(Default)]
struct Node {
    statics: FastMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    ends: Vec<Terminal>,
    catch_all: Vec<Terminal>,
    prefixes: Vec<u32>,
}

#[derive(Default)]
struct Group {
    exact: FastMap<Box<str>, Vec<u32>>,
    root: Node,
}

/// An immutable, compiled route table.
pub struct RouteTable {
    routes: Vec<Compiled>,
    hostless: Group,
    exact_hosts: FastMap<Box<str>, Group>,
    wildcard_hosts: FastMap<Box<str>, Group>,
    needs_headers: bool,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .finish()
    }
}

enum Seg<'a> {
    Static(&'a str),
    Param(&'a str),
    CatchAll(&'a str),
}

enum HostKey {
    Any,
    Exact(String),
    Wildcard(String),
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Strips the port and a trailing dot, lowercases: `API.Example.com:443` -> `api.example.com`.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let h = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

fn parse_template(path: &str) -> Result<Vec<Seg<'_>>, String> {
    let body = &path[1..];
    let parts: Vec<&str> = body.split('/').collect();
    let mut segs = Vec::with_capacity(parts.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if !part.contains(['{', '}']) {
            segs.push(Seg::Static(part));
            continue;
        }
        let inner = part
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .ok_or_else(|| {
                format!("segment {part:?}: a parameter must be a whole segment like {{name}}")
            })?;
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() || name.contains(['{', '}', '*']) {
            return Err(format!("segment {part:?}: bad parameter name {name:?}"));
        }
        if names.contains(&name) {
            return Err(format!("parameter {name:?} appears twice"));
        }
        names.push(name);
        if catch_all {
            if i + 1 != parts.len() {
                return Err(format!("catch-all {part:?} must be the last segment"));
            }
            segs.push(Seg::CatchAll(name));
        } else {
            segs.push(Seg::Param(name));
        }
    }
    Ok(segs)
}

fn pack_rank(kind: u128, a: u128, b: u128, c: u128, m: u128, h: u128, index: u32) -> u128 {
    (kind << 114)
        | (a.min(u32::MAX as u128) << 82)
        | (b.min(u32::MAX as u128) << 50)
        | (c << 49)
        | (m << 48)
        | (h.min(u16::MAX as u128) << 32)
        | (u32::MAX - index) as u128
}

impl RouteTable {
    /// Compiles specs; the error names the first bad route and field.
    pub fn compile(specs: &[RouteSpec]) -> Result<RouteTable, RouterError> {
        let mut table = RouteTable {
            routes: Vec::with_capacity(specs.len()),
            hostless: Group::default(),
            exact_hosts: FastMap::default(),
            wildcard_hosts: FastMap::default(),
            needs_headers: false,
        };
        let mut ids: HashMap<&str, usize> = HashMap::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let err = |field: &'static str, message: String| RouterError {
                index,
                id: spec.id.clone(),
                field: field.into(),
                message,
            };
            let idx = u32::try_from(index)
                .ok()
                .filter(|i| *i < u32::MAX)
                .ok_or_else(|| err("id", "too many routes".into()))?;
            if spec.id.is_empty() {
                return Err(err("id", "must not be empty".into()));
            }
            if let Some(first) = ids.insert(spec.id.as_str(), index) {
                return Err(err(
                    "id",
                    format!("duplicate id, already used by route #{first}"),
                ));
            }
            let host = Self::compile_host(spec.host.as_deref()).map_err(|m| err("host", m))?;
            let mut methods = Vec::with_capacity(spec.methods.len());
            for m in &spec.methods {
                if m.is_empty() || !m.bytes().all(is_token_char) {
                    return Err(err("methods", format!("{m:?} is not a valid HTTP method")));
                }
                methods.push(m.to_ascii_uppercase().into_boxed_str());
            }
            let mut headers: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(spec.headers.len());
            for (name, value) in &spec.headers {
                if name.is_empty() || !name.bytes().all(is_token_char) {
                    return Err(err(
                        "headers",
                        format!("{name:?} is not a valid header name"),
                    ));
                }
                let lower = name.to_ascii_lowercase();
                if headers.iter().any(|(n, _)| **n == *lower) {
                    return Err(err("headers", format!("header {name:?} listed twice")));
                }
                if value.contains(['\r', '\n', '\0']) {
                    return Err(err(
                        "headers",
                        format!("value of {name:?} contains CR/LF/NUL"),
                    ));
                }
                headers.push((lower.into_boxed_str(), value.as_str().into()));
            }
            let raw = match &spec.path {
                PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Template(p) => p,
            };
            if raw.is_empty() {
                return Err(err("path", "must not be empty".into()));
            }
            if !raw.starts_with('/') {
                return Err(err("path", format!("{raw:?} must start with '/'")));
            }
            if let Some(c) = raw
                .chars()
                .find(|c| matches!(c, '?' | '#') || c.is_control())
            {
                return Err(err(
                    "path",
                    format!("{raw:?} contains {c:?}; give the path only"),
                ));
            }
            let m = !methods.is_empty() as u128;
            let h = headers.len() as u128;
            let group = table.group_mut(host);
            let (rank, prefix_len) = match &spec.path {
                PathMatch::Exact(p) => {
                    group.exact.entry(p.as_str().into()).or_default().push(idx);
                    (pack_rank(3, 0, 0, 0, m, h, idx), 0)
                }
                PathMatch::Prefix(p) => {
                    let norm = p.trim_end_matches('/');
                    let mut node = &mut group.root;
                    if !norm.is_empty() {
                        for part in norm[1..].split('/') {
                            node = node.statics.entry(part.into()).or_default();
                        }
                    }
                    node.prefixes.push(idx);
                    (
                        pack_rank(1, norm.len() as u128, 0, 0, m, h, idx),
                        norm.len(),
                    )
                }
                PathMatch::Template(p) => {
                    let segs = parse_template(p).map_err(|msg| err("path", msg))?;
                    let n_params = segs.iter().filter(|s| !matches!(s, Seg::Static(_))).count();
                    if n_params > MAX_PARAMS {
                        let msg = format!("{n_params} parameters, at most {MAX_PARAMS} allowed");
                        return Err(err("path", msg));
                    }
                    let mut node = &mut group.root;
                    let (mut statics, mut chars, mut catch) = (0u128, 0u128, false);
                    let mut names: Vec<Box<str>> = Vec::new();
                    for seg in &segs {
                        match seg {
                            Seg::Static(s) => {
                                statics += 1;
                                chars += s.len() as u128;
                                node = node.statics.entry((*s).into()).or_default();
                            }
                            Seg::Param(n) => {
                                names.push((*n).into());
                                node = node.param.get_or_insert_with(Default::default);
                            }
                            Seg::CatchAll(n) => {
                                names.push((*n).into());
                                catch = true;
                            }
                        }
                    }
                    let t = Terminal {
                        route: idx,
                        names: names.into_boxed_slice(),
                    };
                    if catch {
                        node.catch_all.push(t);
                    } else {
                        node.ends.push(t);
                    }
                    (pack_rank(2, statics, chars, !catch as u128, m, h, idx), 0)
                }
            };
            table.needs_headers |= !headers.is_empty();
            table.routes.push(Compiled {
                id: spec.id.as_str().into(),
                methods: methods.into_boxed_slice(),
                headers: headers.into_boxed_slice(),
                rank,
                prefix_len,
            });
        }
        // Sorting every candidate list by rank lets a lookup stop at the first acceptable one.
        let routes = &table.routes;
        let by_rank = |a: &u32, b: &u32| routes[*b as usize].rank.cmp(&routes[*a as usize].rank);
        let groups = std::iter::once(&mut table.hostless)
            .chain(table.exact_hosts.values_mut())
            .chain(table.wildcard_hosts.values_mut());
        for g in groups {
            for list in g.exact.values_mut() {
                list.sort_by(by_rank);
            }
            sort_node(&mut g.root, &by_rank);
        }
        Ok(table)
    }

    fn compile_host(host: Option<&str>) -> Result<HostKey, String> {
        let Some(raw) = host else {
            return Ok(HostKey::Any);
        };
        if raw == "*" {
            return Ok(HostKey::Any);
        }
        if raw.is_empty() {
            return Err("must not be empty (omit it to match any host)".into());
        }
        if raw
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"/?#@".contains(&b) || b < 0x20)
        {
            return Err(format!("{raw:?} is not a host name"));
        }
        let h = normalize_host(raw).into_owned();
        match h.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                Ok(HostKey::Wildcard(format!(".{rest}")))
            }
            _ if h.contains('*') => Err(format!(
                "{raw:?}: a wildcard must be a leading '*.' like \"*.example.com\""
            )),
            _ if h.is_empty() => Err(format!("{raw:?} is not a host name")),
            _ => Ok(HostKey::Exact(h)),
        }
    }

    fn group_mut(&mut self, host: HostKey) -> &mut Group {
        match host {
            HostKey::Any => &mut self.hostless,
            HostKey::Exact(h) => self.exact_hosts.entry(h.into()).or_default(),
            HostKey::Wildcard(s) => self.wildcard_hosts.entry(s.into()).or_default(),
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// True when some route has header conditions (callers can skip collecting headers if not).
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// Id of the route at `index` in the spec list.
    pub fn id(&self, index: usize) -> Option<&Arc<str>> {
        self.routes.get(index).map(|r| &r.id)
    }

    /// The best route for a request, or `None`; `header(lowercase_name)` returns a header value.
    pub fn lookup<'h, H>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        header: H,
    ) -> Option<RouteMatch>
    where
        H: Fn(&str) -> Option<&'h str>,
    {
        if !path.starts_with('/') {
            return None;
        }
        let mut s = Search {
            routes: &self.routes,
            method,
            path,
            header,
            best: None,
            best_rank: 0,
            best_caps: [(0, 0); MAX_PARAMS],
            n_best: 0,
            caps: [(0, 0); MAX_PARAMS],
            n_caps: 0,
        };
        let has_hosts = !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty();
        if has_hosts && !host.is_empty() {
            let h = normalize_host(host);
            if let Some(g) = self.exact_hosts.get(&*h) {
                if s.run(g) {
                    return s.finish();
                }
            }
            if !self.wildcard_hosts.is_empty() {
                // Leftmost dot first: the longest suffix is the most specific wildcard.
                for (i, _) in h.match_indices('.').filter(|(i, _)| *i > 0) {
                    if let Some(g) = self.wildcard_hosts.get(&h[i..]) {
                        if s.run(g) {
                            return s.finish();
                        }
                    }
                }
            }
        }
        s.run(&self.hostless);
        s.finish()
    }
}

fn sort_node(node: &mut Node, by_rank: &impl Fn(&u32, &u32) -> std::cmp::Ordering) {
    node.prefixes.sort_by(by_rank);
    node.ends.sort_by(|a, b| by_rank(&a.route, &b.route));
    node.catch_all.sort_by(|a, b| by_rank(&a.route, &b.route));
    for child in node.statics.values_mut() {
        sort_node(child, by_rank);
    }
    if let Some(p) = node.param.as_deref_mut() {
        sort_node(p, by_rank);
    }
}

struct Search<'t, 'p, H> {
    routes: &'t [Compiled],
    method: &'p str,
    path: &'p str,
    header: H,
    best: Option<(u32, Option<&'t Terminal>)>,
    best_rank: u128,
    best_caps: [(usize, usize); MAX_PARAMS],
    n_best: usize,
    caps: [(usize, usize); MAX_PARAMS],
    n_caps: usize,
}

impl<'t, 'p, 'h, H> Search<'t, 'p, H>
where
    H: Fn(&str) -> Option<&'h str>,
{
    fn accepts(&self, r: &Compiled) -> bool {
        (r.methods.is_empty()
            || r.methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(self.method)))
            && r.headers
                .iter()
                .all(|(n, v)| (self.header)(n) == Some(&**v))
    }

    /// Offers rank-sorted candidates; keeps the first acceptable one if it beats the best.
    fn offer<I>(&mut self, candidates: I, extra: Option<(usize, usize)>)
    where
        I: Iterator<Item = (u32, Option<&'t Terminal>)>,
    {
        for (route, term) in candidates {
            let r = &self.routes[route as usize];
            if self.best.is_some() && r.rank <= self.best_rank {
                return;
            }
            if self.accepts(r) {
                self.best = Some((route, term));
                self.best_rank = r.rank;
                let n = self.n_caps;
                self.best_caps[..n].copy_from_slice(&self.caps[..n]);
                self.n_best = n;
                if let (Some(e), Some(slot)) = (extra, self.best_caps.get_mut(n)) {
                    *slot = e;
                    self.n_best += 1;
                }
                return;
            }
        }
    }

    /// Searches one host group; true if something matched there.
    fn run(&mut self, g: &'t Group) -> bool {
        let path = self.path;
        let exact = if g.exact.is_empty() {
            None
        } else {
            g.exact.get(path)
        };
        if let Some(list) = exact {
            self.offer(list.iter().map(|r| (*r, None)), None);
        }
        self.n_caps = 0;
        self.walk(&g.root, 1);
        // Prefixes: follow static children only, collecting the prefix routes on the way.
        let mut node = &g.root;
        self.offer(node.prefixes.iter().map(|r| (*r, None)), None);
        for part in path[1..].split('/') {
            match node.statics.get(part) {
                Some(child) => node = child,
                None => break,
            }
            self.offer(node.prefixes.iter().map(|r| (*r, None)), None);
        }
        self.best.is_some()
    }

    /// Matches templates from `node`, the segment under test starting at byte `pos`.
    fn walk(&mut self, node: &'t Node, pos: usize) {
        let path = self.path;
        let len = path.len();
        if pos < len && !node.catch_all.is_empty() {
            self.offer(
                node.catch_all.iter().map(|t| (t.route, Some(t))),
                Some((pos, len)),
            );
        }
        let end = path[pos..].find('/').map_or(len, |i| pos + i);
        let seg = &path[pos..end];
        let last = end == len;
        if let Some(child) = node.statics.get(seg) {
            if last {
                self.offer(child.ends.iter().map(|t| (t.route, Some(t))), None);
            } else {
                self.walk(child, end + 1);
            }
        }
        if let (Some(child), false) = (node.param.as_deref(), seg.is_empty()) {
            // Compile caps captures at MAX_PARAMS, so a deeper slot is never needed.
            let Some(slot) = self.caps.get_mut(self.n_caps) else {
                return;
            };
            *slot = (pos, end);
            self.n_caps += 1;
            if last {
                self.offer(child.ends.iter().map(|t| (t.route, Some(t))), None);
            } else {
                self.walk(child, end + 1);
            }
            self.n_caps -= 1;
        }
    }

    fn finish(self) -> Option<RouteMatch> {
        let (route, term) = self.best?;
        let r = &self.routes[route as usize];
        let params = match term {
            Some(t) => t
                .names
                .iter()
                .zip(&self.best_caps[..self.n_best])
                .map(|(n, (a, b))| (n.to_string(), self.path[*a..*b].to_string()))
                .collect(),
            None => Vec::new(),
        };
        Some(RouteMatch {
            index: route as usize,
            id: r.id.clone(),
            params,
            prefix_len: r.prefix_len,
        })
    }
}

/// The live route table: lock-free lookups, atomic replacement.
pub struct Router {
    table: ArcSwap<RouteTable>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("table", &*self.table.load())
            .finish()
    }
}

impl Router {
    /// A router serving `table`.
    pub fn new(table: RouteTable) -> Self {
        Self {
            table: ArcSwap::from_pointee(table),
        }
    }

    /// Swaps in a new table; lookups in flight finish on the old one.
    pub fn replace(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The current table (cheap; hold it briefly).
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// Looks up in the current table; see [`RouteTable::lookup`].
    pub fn lookup<'h, H>(
        &self,
        method: &str,
        host: &str,
        path: &str,
        header: H,
    ) -> Option<RouteMatch>
    where
        H: Fn(&str) -> Option<&'h str>,
    {
        self.table.load().lookup(method, host, path, header)
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;
    use serde_json::json;

    fn field(v: serde_json::Value) -> (String, String) {
        let e = RouteSpec::from_json(3, &v).unwrap_err();
        assert_eq!(e.index, 3);
        (e.field, e.message)
    }

    #[test]
    fn reads_every_key() {
        let v = json!({"id": "u", "path_template": "/u/{id}", "methods": ["GET"],
                       "host": "*.example.com", "headers": {"x-canary": "1"}, "path": null});
        let s = RouteSpec::from_json(0, &v).unwrap();
        assert_eq!(s.path, PathMatch::Template("/u/{id}".into()));
        assert_eq!(s.methods, vec!["GET".to_string()]);
        assert_eq!(s.host.as_deref(), Some("*.example.com"));
        assert_eq!(s.headers, vec![("x-canary".to_string(), "1".to_string())]);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field(json!("nope")).0, "route");
        assert_eq!(field(json!({"path": "/"})).0, "id");
        assert_eq!(field(json!({"id": 1, "path": "/"})).0, "id");
        assert_eq!(field(json!({"id": "a"})).0, "path");
        assert_eq!(
            field(json!({"id": "a", "path": "/", "path_prefix": "/"})).0,
            "path"
        );
        assert_eq!(field(json!({"id": "a", "path": 5})).0, "path");
        let (f, m) = field(json!({"id": "a", "path": "/", "methods": "GET"}));
        assert_eq!((f.as_str(), m.contains("not a string")), ("methods", true));
        assert_eq!(
            field(json!({"id": "a", "path": "/", "methods": [1]})).0,
            "methods"
        );
        assert_eq!(
            field(json!({"id": "a", "path": "/", "headers": ["x"]})).0,
            "headers"
        );
        assert_eq!(
            field(json!({"id": "a", "path": "/", "headers": {"x": 1}})).0,
            "headers"
        );
        assert_eq!(
            field(json!({"id": "a", "path": "/", "extra": 1})).0,
            "extra"
        );
        let e = RouteSpec::from_json(0, &json!({"id": "a", "path": "/", "host": 1})).unwrap_err();
        assert_eq!(e.to_string(), "route #0 (id \"a\"): host: must be a string");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, path: PathMatch) -> RouteSpec {
        RouteSpec {
            id: id.into(),
            host: None,
            methods: vec![],
            path,
            headers: vec![],
        }
    }
    fn pre(id: &str, p: &str) -> RouteSpec {
        spec(id, PathMatch::Prefix(p.into()))
    }
    fn tpl(id: &str, p: &str) -> RouteSpec {
        spec(id, PathMatch::Template(p.into()))
    }
    fn exact(id: &str, p: &str) -> RouteSpec {
        spec(id, PathMatch::Exact(p.into()))
    }
    fn no_headers(_: &str) -> Option<&'static str> {
        None
    }
    fn id_of(t: &RouteTable, method: &str, host: &str, path: &str) -> Option<String> {
        t.lookup(method, host, path, no_headers)
            .map(|m| m.id.to_string())
    }

    #[test]
    fn prefix_respects_segment_boundary() {
        let t = RouteTable::compile(&[pre("echo", "/agents/echo")]).unwrap();
        assert_eq!(
            id_of(&t, "GET", "", "/agents/echo").as_deref(),
            Some("echo")
        );
        assert_eq!(
            id_of(&t, "GET", "", "/agents/echo/").as_deref(),
            Some("echo")
        );
        assert_eq!(
            id_of(&t, "GET", "", "/agents/echo/x/y").as_deref(),
            Some("echo")
        );
        assert_eq!(id_of(&t, "GET", "", "/agents/echoes"), None);
        assert_eq!(id_of(&t, "GET", "", "/agents"), None);
        let m = t.lookup("GET", "", "/agents/echo/x/y", no_headers).unwrap();
        assert_eq!(m.remainder("/agents/echo/x/y"), "/x/y");
        assert_eq!(m.prefix_len, "/agents/echo".len());
    }

    #[test]
    fn root_prefix_matches_everything_and_longer_prefix_wins() {
        let t =
            RouteTable::compile(&[pre("root", "/"), pre("a", "/a/"), pre("ab", "/a/b")]).unwrap();
        assert_eq!(id_of(&t, "GET", "", "/").as_deref(), Some("root"));
        assert_eq!(id_of(&t, "GET", "", "/zzz").as_deref(), Some("root"));
        assert_eq!(id_of(&t, "GET", "", "/a").as_deref(), Some("a"));
        assert_eq!(id_of(&t, "GET", "", "/a/bc").as_deref(), Some("a"));
        assert_eq!(id_of(&t, "GET", "", "/a/b/c").as_deref(), Some("ab"));
        assert_eq!(id_of(&t, "GET", "", "no-slash"), None);
        let m = t.lookup("GET", "", "/x", no_headers).unwrap();
        assert_eq!(m.remainder("/x"), "/x");
    }

    #[test]
    fn templates_capture_raw_params() {
        let t = RouteTable::compile(&[
            tpl("user", "/users/{id}/x"),
            tpl("files", "/files/{*rest}"),
            tpl("two", "/t/{a}/{b}"),
        ])
        .unwrap();
        let m = t.lookup("GET", "", "/users/a%20b/x", no_headers).unwrap();
        assert_eq!(&*m.id, "user");
        assert_eq!(m.params, vec![("id".to_string(), "a%20b".to_string())]);
        assert_eq!(m.prefix_len, 0);
        let m = t.lookup("GET", "", "/files/a/b/c.txt", no_headers).unwrap();
        assert_eq!(
            m.params,
            vec![("rest".to_string(), "a/b/c.txt".to_string())]
        );
        assert_eq!(id_of(&t, "GET", "", "/files/"), None);
        assert_eq!(id_of(&t, "GET", "", "/users//x"), None);
        let m = t.lookup("GET", "", "/t/1/2", no_headers).unwrap();
        assert_eq!(
            m.params,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(id_of(&t, "GET", "", "/t/1/2/3"), None);
    }

    #[test]
    fn specificity_order() {
        let t = RouteTable::compile(&[
            pre("prefix", "/users"),
            tpl("any", "/users/{id}"),
            tpl("catch", "/users/{*rest}"),
            tpl("static", "/users/me"),
            exact("exact", "/users/me"),
        ])
        .unwrap();
        assert_eq!(id_of(&t, "GET", "", "/users/me").as_deref(), Some("exact"));
        assert_eq!(id_of(&t, "GET", "", "/users/7").as_deref(), Some("any"));
        assert_eq!(id_of(&t, "GET", "", "/users/7/8").as_deref(), Some("catch"));
        assert_eq!(id_of(&t, "GET", "", "/users").as_deref(), Some("prefix"));
    }

    #[test]
    fn method_and_headers_beat_unrestricted_and_fall_back() {
        let mut post = tpl("post-me", "/users/me");
        post.methods = vec!["post".into()];
        let mut canary = tpl("canary", "/users/{id}");
        canary.headers = vec![("X-Canary".into(), "1".into())];
        let t = RouteTable::compile(&[tpl("any", "/users/{id}"), canary, post]).unwrap();
        assert_eq!(
            id_of(&t, "POST", "", "/users/me").as_deref(),
            Some("post-me")
        );
        // The static template rejects GET, so the parameter template must win.
        assert_eq!(id_of(&t, "GET", "", "/users/me").as_deref(), Some("any"));
        let hdr = |n: &str| if n == "x-canary" { Some("1") } else { None };
        let m = t.lookup("GET", "", "/users/5", hdr).unwrap();
        assert_eq!(&*m.id, "canary");
        let wrong = |n: &str| if n == "x-canary" { Some("2") } else { None };
        assert_eq!(&*t.lookup("GET", "", "/users/5", wrong).unwrap().id, "any");
        assert!(t.needs_headers());
    }

    #[test]
    fn hosts_exact_wildcard_hostless() {
        let mut a = pre("exact-host", "/");
        a.host = Some("API.example.com:8443".into());
        let mut w = pre("wild", "/");
        w.host = Some("*.example.com".into());
        let mut w2 = pre("wild-deep", "/");
        w2.host = Some("*.eu.example.com".into());
        let t = RouteTable::compile(&[exact("plain", "/health"), a, w, w2]).unwrap();
        assert_eq!(
            id_of(&t, "GET", "api.example.com", "/health").as_deref(),
            Some("exact-host")
        );
        assert_eq!(
            id_of(&t, "GET", "Api.Example.COM:80", "/x").as_deref(),
            Some("exact-host")
        );
        assert_eq!(
            id_of(&t, "GET", "x.example.com", "/x").as_deref(),
            Some("wild")
        );
        assert_eq!(
            id_of(&t, "GET", "a.b.example.com.", "/x").as_deref(),
            Some("wild")
        );
        assert_eq!(
            id_of(&t, "GET", "x.eu.example.com", "/x").as_deref(),
            Some("wild-deep")
        );
        assert_eq!(
            id_of(&t, "GET", "example.com", "/health").as_deref(),
            Some("plain")
        );
        assert_eq!(id_of(&t, "GET", "example.com", "/x"), None);
        assert_eq!(id_of(&t, "GET", "", "/health").as_deref(), Some("plain"));
    }

    #[test]
    fn earlier_route_wins_ties() {
        let t = RouteTable::compile(&[pre("first", "/a"), pre("second", "/a/")]).unwrap();
        assert_eq!(id_of(&t, "GET", "", "/a/x").as_deref(), Some("first"));
    }

    #[test]
    fn compile_errors_name_route_and_field() {
        let cases = [
            (vec![pre("a", "/"), pre("a", "/b")], 1, "id"),
            (vec![pre("", "/")], 0, "id"),
            (vec![pre("x", "")], 0, "path"),
            (vec![pre("x", "nope")], 0, "path"),
            (vec![tpl("x", "/a/{id")], 0, "path"),
            (vec![tpl("x", "/a/v{id}")], 0, "path"),
            (vec![tpl("x", "/a/{*r}/b")], 0, "path"),
            (vec![tpl("x", "/a/{id}/{id}")], 0, "path"),
            (vec![tpl("x", "/a/{}")], 0, "path"),
            (vec![exact("x", "/a?b=1")], 0, "path"),
        ];
        for (specs, index, field) in cases {
            let e = RouteTable::compile(&specs).unwrap_err();
            assert_eq!((e.index, e.field.as_str()), (index, field), "{e}");
        }
        let mut h = pre("h", "/");
        h.host = Some("a.*.com".into());
        assert_eq!(RouteTable::compile(&[h]).unwrap_err().field, "host");
        let mut m = pre("m", "/");
        m.methods = vec!["GE T".into()];
        assert_eq!(RouteTable::compile(&[m]).unwrap_err().field, "methods");
        let mut hd = pre("hd", "/");
        hd.headers = vec![("X-A".into(), "1".into()), ("x-a".into(), "2".into())];
        let e = RouteTable::compile(&[hd]).unwrap_err();
        assert_eq!(e.field, "headers");
        assert!(
            e.to_string().contains("route #0 (id \"hd\"): headers:"),
            "{e}"
        );
    }

    #[test]
    fn param_count_is_capped() {
        let names = |n: usize| (0..n).map(|i| format!("/{{p{i}}}")).collect::<String>();
        let ok = RouteTable::compile(&[tpl("ok", &names(MAX_PARAMS))]).unwrap();
        let path = "/x".repeat(MAX_PARAMS);
        assert_eq!(
            ok.lookup("GET", "", &path, no_headers)
                .unwrap()
                .params
                .len(),
            MAX_PARAMS
        );
        let e = RouteTable::compile(&[tpl("big", &names(MAX_PARAMS + 1))]).unwrap_err();
        assert_eq!(e.field, "path");
    }

    #[test]
    fn router_replace_swaps_table() {
        let r = Router::new(RouteTable::compile(&[pre("old", "/")]).unwrap());
        assert_eq!(&*r.lookup("GET", "", "/x", no_headers).unwrap().id, "old");
        let held = r.load();
        r.replace(RouteTable::compile(&[pre("new", "/")]).unwrap());
        assert_eq!(&*r.lookup("GET", "", "/x", no_headers).unwrap().id, "new");
        assert_eq!(&**held.id(0).unwrap(), "old");
    }
}
