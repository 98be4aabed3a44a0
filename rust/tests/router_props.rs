//! Property tests of the router against a straightforward reference matcher.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agentgate_core::router::{PathMatch, RouteSpec, RouteTable, Router};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum TSeg {
    Static(&'static str),
    Param,
}

fn template_strategy() -> impl Strategy<Value = (Vec<TSeg>, bool)> {
    let seg = prop_oneof![
        Just(TSeg::Static("a")),
        Just(TSeg::Static("b")),
        Just(TSeg::Static("")),
        Just(TSeg::Param)
    ];
    (prop::collection::vec(seg, 0..4), any::<bool>())
}

fn render_template(segs: &[TSeg], catch_all: bool) -> String {
    let mut parts: Vec<String> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            TSeg::Static(s) => s.to_string(),
            TSeg::Param => format!("{{p{i}}}"),
        })
        .collect();
    if catch_all {
        parts.push("{*rest}".into());
    }
    format!("/{}", parts.join("/"))
}

fn no_headers(_: &str) -> Option<&'static str> {
    None
}

proptest! {
    #[test]
    fn route_matches_paths_from_its_own_template(
        (segs, catch_all) in template_strategy(),
        fills in prop::collection::vec("[a-z0-9%.~-]{1,6}", 4),
        rest in "[a-z]{1,4}(/[a-z]{0,3}){0,3}",
    ) {
        let template = render_template(&segs, catch_all);
        let spec = RouteSpec {
            id: "t".into(),
            host: None,
            methods: vec![],
            path: PathMatch::Template(template.clone()),
            headers: vec![],
        };
        let table = RouteTable::compile(&[spec]).unwrap();
        let mut parts = Vec::new();
        let mut want = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            match s {
                TSeg::Static(s) => parts.push(s.to_string()),
                TSeg::Param => {
                    parts.push(fills[i].clone());
                    want.push((format!("p{i}"), fills[i].clone()));
                }
            }
        }
        if catch_all {
            parts.push(rest.clone());
            want.push(("rest".into(), rest.clone()));
        }
        let path = format!("/{}", parts.join("/"));
        let m = table.lookup("GET", "", &path, no_headers);
        prop_assert!(m.is_some(), "{template} should match {path}");
        prop_assert_eq!(m.unwrap().params, want);
    }
}

// ---- reference model ------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Gen {
    host: Option<&'static str>,
    kind: u8,
    path: String,
    methods: Vec<String>,
    header: Option<&'static str>,
}

fn gen_route() -> impl Strategy<Value = Gen> {
    let host = prop_oneof![
        3 => Just(None),
        1 => Just(Some("a.com")),
        1 => Just(Some("*.a.com")),
        1 => Just(Some("*.x.a.com")),
    ];
    let methods = prop_oneof![
        Just(vec![]),
        Just(vec!["GET".to_string()]),
        Just(vec!["POST".to_string(), "PUT".to_string()])
    ];
    let header = prop_oneof![3 => Just(None), 1 => Just(Some("1")), 1 => Just(Some("2"))];
    (
        host,
        0u8..3,
        template_strategy(),
        "(/[ab]{0,2}){0,3}/?",
        methods,
        header,
    )
        .prop_map(|(host, kind, (segs, catch), plain, methods, header)| {
            let path = match kind {
                2 => render_template(&segs, catch),
                _ if plain.is_empty() => "/".to_string(),
                _ => plain,
            };
            Gen {
                host,
                kind,
                path,
                methods,
                header,
            }
        })
}

fn to_spec(i: usize, g: &Gen) -> RouteSpec {
    RouteSpec {
        id: format!("r{i}"),
        host: g.host.map(String::from),
        methods: g.methods.clone(),
        path: match g.kind {
            0 => PathMatch::Exact(g.path.clone()),
            1 => PathMatch::Prefix(g.path.clone()),
            _ => PathMatch::Template(g.path.clone()),
        },
        headers: g
            .header
            .map(|v| vec![("X-H".to_string(), v.to_string())])
            .unwrap_or_default(),
    }
}

/// Reference: Some(rank tuple, params) if route `g` matches the request.
#[allow(clippy::type_complexity)]
fn reference(
    i: usize,
    g: &Gen,
    method: &str,
    host: &str,
    path: &str,
    hv: Option<&str>,
) -> Option<(
    (u8, usize, u8, usize, usize, bool, bool, usize, isize),
    Vec<(String, String)>,
)> {
    let host_rank = match g.host {
        None => (0, 0),
        Some(h) if h.starts_with('*') => {
            let suffix = &h[1..];
            if host.len() > suffix.len() && host.ends_with(suffix) {
                (1, suffix.len())
            } else {
                return None;
            }
        }
        Some(h) => {
            if host == h {
                (2, 0)
            } else {
                return None;
            }
        }
    };
    if !g.methods.is_empty() && !g.methods.iter().any(|m| m == method) {
        return None;
    }
    if let Some(v) = g.header {
        if hv != Some(v) {
            return None;
        }
    }
    let mut params = Vec::new();
    let (kind, a, b, c) = match g.kind {
        0 => {
            if path != g.path {
                return None;
            }
            (3, 0, 0, false)
        }
        1 => {
            let norm = g.path.trim_end_matches('/');
            let ok = path == norm || path.starts_with(&format!("{norm}/"));
            if !ok {
                return None;
            }
            (1, norm.len(), 0, false)
        }
        _ => {
            let tsegs: Vec<&str> = g.path[1..].split('/').collect();
            let psegs: Vec<&str> = path[1..].split('/').collect();
            let (mut statics, mut chars, mut catch) = (0, 0, false);
            for (k, t) in tsegs.iter().enumerate() {
                if let Some(name) = t.strip_prefix("{*").and_then(|t| t.strip_suffix('}')) {
                    catch = true;
                    let rest = psegs.get(k..).map(|r| r.join("/")).unwrap_or_default();
                    if rest.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), rest));
                    break;
                }
                let p = psegs.get(k)?;
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if p.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), p.to_string()));
                } else {
                    if p != t {
                        return None;
                    }
                    statics += 1;
                    chars += t.len();
                }
            }
            if !catch && psegs.len() != tsegs.len() {
                return None;
            }
            (2, statics, chars, !catch)
        }
    };
    let rank = (
        host_rank.0,
        host_rank.1,
        kind,
        a,
        b,
        c,
        !g.methods.is_empty(),
        g.header.is_some() as usize,
        -(i as isize),
    );
    Some((rank, params))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn lookup_picks_the_most_specific_matching_route(
        routes in prop::collection::vec(gen_route(), 1..12),
        method in prop_oneof![Just("GET"), Just("POST")],
        host in prop_oneof![Just(""), Just("a.com"), Just("z.a.com"), Just("y.x.a.com"), Just("b.com")],
        path in "(/[abc]{0,2}){1,4}/?",
        hv in prop_oneof![Just(None), Just(Some("1")), Just(Some("2"))],
    ) {
        let specs: Vec<RouteSpec> = routes.iter().enumerate().map(|(i, g)| to_spec(i, g)).collect();
        let table = RouteTable::compile(&specs).unwrap();
        let header = |n: &str| if n == "x-h" { hv } else { None };
        let got = table.lookup(method, host, &path, header);
        let want = routes
            .iter()
            .enumerate()
            .filter_map(|(i, g)| reference(i, g, method, host, &path, hv).map(|(r, p)| (r, i, p)))
            .max_by(|a, b| a.0.cmp(&b.0));
        match (got, want) {
            (None, None) => {}
            (Some(m), Some((_, i, params))) => {
                prop_assert_eq!(m.index, i, "routes {:?} path {}", specs, path);
                prop_assert_eq!(m.params, params);
            }
            (g, w) => prop_assert!(false, "got {:?}, want {:?} for {:?} {}", g, w, specs, path),
        }
    }

    #[test]
    fn compile_never_panics(
        id in ".{0,8}",
        host in proptest::option::of(".{0,12}"),
        methods in prop::collection::vec(".{0,6}", 0..3),
        kind in 0u8..3,
        path in ".{0,24}",
        headers in prop::collection::vec((".{0,6}", ".{0,6}"), 0..3),
    ) {
        let path = match kind {
            0 => PathMatch::Exact(path),
            1 => PathMatch::Prefix(path),
            _ => PathMatch::Template(path),
        };
        let spec = RouteSpec { id, host, methods, path, headers };
        let _ = RouteTable::compile(&[spec.clone(), spec]);
    }

    #[test]
    fn lookup_never_panics(method in ".{0,8}", host in ".{0,20}", path in ".{0,40}") {
        let specs: Vec<RouteSpec> = [
            ("e", PathMatch::Exact("/x/y".into()), None),
            ("p", PathMatch::Prefix("/".into()), Some("*.a.com")),
            ("t", PathMatch::Template("/{a}/{*b}".into()), None),
            ("u", PathMatch::Template("/é/{a}".into()), Some("ünï.com")),
        ]
        .into_iter()
        .map(|(id, path, host)| RouteSpec {
            id: id.into(),
            host: host.map(String::from),
            methods: vec![],
            path,
            headers: vec![("x".into(), "1".into())],
        })
        .collect();
        let table = RouteTable::compile(&specs).unwrap();
        let _ = table.lookup(&method, &host, &path, |_| Some("1"));
        if let Some(m) = table.lookup(&method, &host, &format!("/{path}"), |_| Some("1")) {
            let _ = m.remainder(&path);
        }
    }
}

fn generation(k: usize) -> RouteTable {
    let specs: Vec<RouteSpec> = ["a", "b"]
        .iter()
        .map(|p| RouteSpec {
            id: format!("{p}-{k}"),
            host: None,
            methods: vec![],
            path: PathMatch::Prefix(format!("/{p}")),
            headers: vec![],
        })
        .collect();
    RouteTable::compile(&specs).unwrap()
}

#[test]
fn concurrent_replace_never_tears() {
    let router = Arc::new(Router::new(generation(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (router, stop) = (router.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = 0usize;
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads < 1000 {
                    let table = router.load();
                    let a = table.lookup("GET", "", "/a/1", no_headers).unwrap();
                    let b = table.lookup("GET", "", "/b", no_headers).unwrap();
                    let ga: usize = a.id[2..].parse().unwrap();
                    let gb: usize = b.id[2..].parse().unwrap();
                    assert_eq!(ga, gb, "one guard must see one table");
                    assert!(ga >= last, "generations never go back");
                    last = ga;
                    reads += 1;
                }
                last
            })
        })
        .collect();
    for k in 1..=300 {
        router.replace(generation(k));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() <= 300);
    }
    let m = router.lookup("GET", "", "/b/z", no_headers).unwrap();
    assert_eq!(&*m.id, "b-300");
}
