//! The engine's one-call decision, end to end over real core parts with a manual clock.

use std::sync::Arc;

use agentgate_core::balancer::Outcome;
use agentgate_core::clock::{AnyClock, ManualClock};
use agentgate_core::engine::{Admit, AdmitOutcome, Engine, EngineSpec, RequestHead};
use serde_json::json;
use sha2::{Digest, Sha256};

fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn spec(extra_routes: serde_json::Value, per_second: f64, burst: u32) -> EngineSpec {
    let mut routes = vec![
        json!({"id": "echo", "path_prefix": "/agents/echo", "methods": ["GET", "POST"],
               "agent": "echo", "strip_prefix": true, "auth_required": true,
               "rate_limit": {"key": "api_key", "per_second": per_second, "burst": burst}}),
        json!({"id": "admin", "path": "/admin", "agent": "echo", "auth_required": true,
               "roles": ["admin"]}),
        json!({"id": "open", "path_template": "/open/{id}", "agent": "solo"}),
    ];
    if let Some(extra) = extra_routes.as_array() {
        routes.extend(extra.iter().cloned());
    }
    serde_json::from_value(json!({
        "agents": [
            {"name": "echo", "endpoints": [{"url": "http://a:1"}, {"url": "http://b:2"}],
             "breaker": {"consecutive_failures": 2, "error_rate": 0.0, "open_ms": 10000},
             "max_concurrency": 1, "max_queue": 2, "max_wait_ms": [100, 100, 100, 50]},
            {"name": "solo", "endpoints": [{"url": "http://c:3"}],
             "breaker": {"consecutive_failures": 1, "error_rate": 0.0, "open_ms": 1000}}
        ],
        "routes": routes,
        "api_keys": [
            {"id": "k-caller", "sha256": digest("caller-secret"), "tenant": "acme", "roles": ["caller"]},
            {"id": "k-admin", "sha256": digest("admin-secret"), "tenant": "acme", "roles": ["admin"]}
        ],
        "role_max_priority": {"caller": "high", "admin": "critical"}
    }))
    .expect("test spec is valid JSON for EngineSpec")
}

fn admit(engine: &Engine, method: &str, path: &str, headers: &[(&str, &str)]) -> AdmitOutcome {
    let head = RequestHead {
        method,
        host: "gw.local",
        path,
        client_ip: "10.0.0.1",
        header: |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
    };
    engine.admit(&head)
}

fn status(o: &AdmitOutcome) -> u16 {
    match &o.decision {
        Admit::Rejected(r) => r.status,
        Admit::Proceed(_) => 200,
        Admit::Queued(..) => 202,
    }
}

fn new_engine(clock: &ManualClock) -> Engine {
    Engine::new(spec(json!([]), 1.0, 2), AnyClock::Manual(clock.clone())).expect("valid spec")
}

const CALLER: (&str, &str) = ("authorization", "Bearer caller-secret");

#[test]
fn routes_authenticates_and_strips_prefix() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    assert_eq!(status(&admit(&e, "GET", "/nowhere", &[])), 404);
    assert_eq!(status(&admit(&e, "GET", "/agents/echo/x", &[])), 401);
    assert_eq!(
        status(&admit(
            &e,
            "GET",
            "/agents/echo/x",
            &[("x-api-key", "wrong")]
        )),
        401
    );
    let o = admit(&e, "GET", "/agents/echo/chat", &[CALLER]);
    let Admit::Proceed(a) = o.decision else {
        panic!("expected proceed")
    };
    assert_eq!(a.strip, "/agents/echo".len());
    let id = a.identity.as_ref().expect("authenticated");
    assert_eq!(&*id.key_id, "k-caller");
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert!(a.ratelimit.is_some());
    e.finish(
        a.agent,
        Some(a.endpoint),
        1_000_000,
        Outcome::Success,
        false,
    );
    // X-API-Key works as well as Bearer; template routes need no auth.
    assert_eq!(status(&admit(&e, "GET", "/open/42", &[])), 200);
}

#[test]
fn roles_gate_routes() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    assert_eq!(status(&admit(&e, "GET", "/admin", &[CALLER])), 403);
    let o = admit(&e, "GET", "/admin", &[("x-api-key", "admin-secret")]);
    assert_eq!(status(&o), 200);
}

#[test]
fn priority_is_capped_by_role_and_may_be_lowered() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    let prio = |headers: &[(&str, &str)]| {
        let o = admit(&e, "GET", "/agents/echo", headers);
        let Admit::Proceed(a) = o.decision else {
            panic!("expected proceed")
        };
        e.finish(a.agent, Some(a.endpoint), 1, Outcome::Success, false);
        clock.advance(1_000_000_000);
        a.priority.as_str()
    };
    assert_eq!(prio(&[CALLER, ("x-priority", "critical")]), "high");
    assert_eq!(prio(&[CALLER, ("x-priority", "low")]), "low");
    assert_eq!(prio(&[CALLER, ("x-priority", "bogus")]), "normal");
    assert_eq!(
        prio(&[("x-api-key", "admin-secret"), ("x-priority", "critical")]),
        "critical"
    );
}

#[test]
fn rate_limit_rejects_with_headers_and_recovers() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    for _ in 0..2 {
        let o = admit(&e, "GET", "/agents/echo", &[CALLER]);
        let Admit::Proceed(a) = o.decision else {
            panic!("burst of 2 must pass")
        };
        e.finish(a.agent, Some(a.endpoint), 1, Outcome::Success, false);
    }
    let o = admit(&e, "GET", "/agents/echo", &[CALLER]);
    let Admit::Rejected(r) = o.decision else {
        panic!("third must be limited")
    };
    assert_eq!(r.status, 429);
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, ["ratelimit-policy", "ratelimit", "retry-after"]);
    clock.advance(1_000_000_000);
    assert_eq!(status(&admit(&e, "GET", "/agents/echo", &[CALLER])), 200);
}

#[test]
fn full_pool_queues_and_finish_hands_the_slot_over() {
    let clock = ManualClock::new();
    let e = Engine::new(
        spec(json!([]), 1e6, 1_000_000),
        AnyClock::Manual(clock.clone()),
    )
    .expect("valid spec");
    let Admit::Proceed(first) = admit(&e, "GET", "/agents/echo", &[CALLER]).decision else {
        panic!("first proceeds")
    };
    let Admit::Queued(q, ticket) = admit(&e, "GET", "/agents/echo", &[CALLER]).decision else {
        panic!("second queues: max_concurrency is 1")
    };
    let woken = e.finish(
        first.agent,
        Some(first.endpoint),
        1,
        Outcome::Success,
        false,
    );
    assert_eq!(woken, Some(ticket));
    let ep = e.pick(q.agent).expect("an endpoint for the woken request");
    assert!(e
        .finish(q.agent, Some(ep), 1, Outcome::Success, false)
        .is_none());
}

#[test]
fn queued_requests_expire_and_low_is_shed_for_high() {
    let clock = ManualClock::new();
    let e = Engine::new(
        spec(json!([]), 1e6, 1_000_000),
        AnyClock::Manual(clock.clone()),
    )
    .expect("valid spec");
    let admin = ("x-api-key", "admin-secret");
    let Admit::Proceed(_) = admit(&e, "GET", "/agents/echo", &[CALLER]).decision else {
        panic!("first proceeds")
    };
    let low = admit(&e, "GET", "/agents/echo", &[CALLER, ("x-priority", "low")]);
    let Admit::Queued(_, low_ticket) = low.decision else {
        panic!("queued")
    };
    let n = admit(&e, "GET", "/agents/echo", &[CALLER]);
    assert!(matches!(n.decision, Admit::Queued(..)));
    // Queue (2) is full: a critical request evicts the low one.
    let c = admit(
        &e,
        "GET",
        "/agents/echo",
        &[admin, ("x-priority", "critical")],
    );
    assert!(matches!(c.decision, Admit::Queued(..)));
    assert_eq!(c.shed, vec![low_ticket]);
    clock.advance(200_000_000);
    assert_eq!(
        e.expire().len(),
        2,
        "both remaining waiters passed their 100 ms"
    );
}

#[test]
fn open_breaker_answers_503_without_an_endpoint() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    let Admit::Proceed(a) = admit(&e, "GET", "/open/1", &[]).decision else {
        panic!()
    };
    e.finish(a.agent, Some(a.endpoint), 1, Outcome::Failure, false);
    let o = admit(&e, "GET", "/open/1", &[]);
    let Admit::Rejected(r) = o.decision else {
        panic!("breaker must be open")
    };
    assert_eq!((r.status, r.reason), (503, "circuit_open"));
    clock.advance(1_100_000_000);
    assert_eq!(
        status(&admit(&e, "GET", "/open/1", &[])),
        200,
        "half-open probe goes through"
    );
}

#[test]
fn replace_keeps_state_of_unchanged_parts_and_refuses_bad_specs() {
    let clock = ManualClock::new();
    let e = new_engine(&clock);
    // Trip the solo breaker and spend the echo rate-limit burst.
    let Admit::Proceed(a) = admit(&e, "GET", "/open/1", &[]).decision else {
        panic!()
    };
    e.finish(a.agent, Some(a.endpoint), 1, Outcome::Failure, false);
    for _ in 0..2 {
        let Admit::Proceed(a) = admit(&e, "GET", "/agents/echo", &[CALLER]).decision else {
            panic!()
        };
        e.finish(a.agent, Some(a.endpoint), 1, Outcome::Success, false);
    }
    // A reload that adds a route keeps both states.
    let extra = json!([{"id": "new", "path": "/new", "agent": "solo"}]);
    e.replace(spec(extra.clone(), 1.0, 2))
        .expect("valid reload");
    assert_eq!(status(&admit(&e, "GET", "/open/1", &[])), 503);
    assert_eq!(status(&admit(&e, "GET", "/agents/echo", &[CALLER])), 429);
    assert_eq!(
        status(&admit(&e, "GET", "/new", &[])),
        503,
        "new route, same tripped pool"
    );
    // A bad spec is refused and the running one stays.
    let mut bad = spec(extra.clone(), 1.0, 2);
    bad.routes[0].agent = "missing".into();
    let err = e.replace(bad).expect_err("unknown agent");
    assert!(
        err.0.contains("routes[0]") && err.0.contains("missing"),
        "{err}"
    );
    assert_eq!(status(&admit(&e, "GET", "/new", &[])), 503);
    // Changing the limit gives the route a fresh limiter.
    e.replace(spec(extra, 1.0, 5)).expect("valid reload");
    assert_eq!(status(&admit(&e, "GET", "/agents/echo", &[CALLER])), 200);
}

#[test]
fn spec_errors_name_the_field() {
    let clock = AnyClock::Manual(ManualClock::new());
    let mut s = spec(json!([]), 1.0, 2);
    s.routes[1].priority = "urgent".into();
    let err = Engine::new(s, clock.clone()).err().expect("bad priority");
    assert!(err.0.starts_with("routes[1] (\"admin\").priority"), "{err}");
    let mut s = spec(json!([]), 1.0, 2);
    s.api_keys[0].sha256 = "xyz".into();
    let err = Engine::new(s, clock.clone()).err().expect("bad digest");
    assert!(
        err.0.contains("api_keys[0]") && err.0.contains("sha256"),
        "{err}"
    );
    let mut s = spec(json!([]), 1.0, 2);
    s.routes[0].path_prefix = None;
    let err = Engine::new(s, clock).err().expect("no path");
    assert!(err.0.contains("match"), "{err}");
}

#[test]
fn concurrent_admit_and_finish_leave_no_slot_behind() {
    let clock = ManualClock::new();
    let s: EngineSpec = serde_json::from_value(json!({
        "agents": [{"name": "p", "endpoints": [{"url": "http://a:1"}, {"url": "http://b:2"}],
                    "max_concurrency": 4, "max_queue": 10000}],
        "routes": [{"id": "r", "path_prefix": "/", "agent": "p"}]
    }))
    .expect("spec");
    let e = Arc::new(Engine::new(s, AnyClock::Manual(clock)).expect("valid"));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let o = admit(&e, "GET", "/x", &[]);
                    match o.decision {
                        Admit::Proceed(a) => {
                            e.finish(a.agent, Some(a.endpoint), 1, Outcome::Success, false);
                        }
                        Admit::Queued(a, t) => {
                            if !e.cancel(a.agent, t) {
                                e.release(a.agent);
                            }
                        }
                        Admit::Rejected(r) => panic!("unexpected rejection {r:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let snap = e.snapshot();
    assert_eq!(snap.pools[0].admission.in_flight(), 0);
    assert_eq!(snap.pools[0].admission.depths(), [0, 0, 0, 0]);
}

fn admit_forward(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (AdmitOutcome, Option<agentgate_core::engine::Forward>) {
    let head = RequestHead {
        method,
        host: "gw.local",
        path,
        client_ip: "10.0.0.1",
        header: |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
    };
    let client = agentgate_core::engine::Client {
        scheme: "https",
        query: "q=1",
        request_id: Some("rid-7"),
    };
    engine.admit_forward(&head, headers.iter().copied(), &client)
}

#[test]
fn admit_forward_builds_the_upstream_head_of_an_admitted_request() {
    let engine = Engine::new(
        spec(json!([]), 1000.0, 1000),
        AnyClock::Manual(ManualClock::new()),
    )
    .expect("spec");
    let (out, fwd) = admit_forward(
        &engine,
        "POST",
        "/agents/echo/run",
        &[
            ("x-api-key", "caller-secret"),
            ("content-length", "5"),
            ("x-trace", "t"),
        ],
    );
    let Admit::Proceed(a) = out.decision else {
        panic!("expected an admission")
    };
    let fwd = fwd.expect("an admitted request has a forward");
    assert_eq!(fwd.target, "/run?q=1");
    let block = String::from_utf8(fwd.block.bytes).expect("ascii");
    // the route requires the key, so the key is consumed, not forwarded
    assert_eq!(
        block,
        "content-length: 5\r\nx-trace: t\r\nx-forwarded-for: 10.0.0.1\r\n\
         x-forwarded-proto: https\r\nx-forwarded-host: gw.local\r\nx-request-id: rid-7\r\n"
    );
    engine.finish(a.agent, Some(a.endpoint), 1, Outcome::Success, false);

    // a rejected request has no forward
    let (out, fwd) = admit_forward(&engine, "GET", "/nowhere", &[]);
    assert_eq!(status(&out), 404);
    assert!(fwd.is_none());
}

#[test]
fn admit_forward_refuses_an_unforwardable_head_and_frees_its_slot() {
    // echo has max_concurrency 1: a leaked slot would queue the next request
    let engine = Engine::new(
        spec(json!([]), 1000.0, 1000),
        AnyClock::Manual(ManualClock::new()),
    )
    .expect("spec");
    let bad = [
        ("x-api-key", "caller-secret"),
        ("x-a", "v\r\nx-injected: 1"),
    ];
    let (out, fwd) = admit_forward(&engine, "GET", "/agents/echo", &bad);
    assert_eq!(status(&out), 400);
    assert!(fwd.is_none());
    let (out, _) = admit_forward(
        &engine,
        "GET",
        "/agents/echo",
        &[("x-api-key", "caller-secret")],
    );
    assert!(
        matches!(out.decision, Admit::Proceed(_)),
        "the slot was handed back"
    );
}

#[test]
fn stats_survive_reloads_and_removed_routes_report_once() {
    let engine = Engine::new(
        spec(json!([]), 1000.0, 1000),
        AnyClock::Manual(ManualClock::new()),
    )
    .expect("spec");
    let Admit::Proceed(a) = admit(&engine, "GET", "/open/1", &[]).decision else {
        panic!("expected an admission")
    };
    a.stats.record(200, 0.002, 0.001);
    // same route across a reload: the counts carry over
    engine
        .replace(spec(json!([]), 1000.0, 1000))
        .expect("reload");
    a.stats.record(503, 0.002, -1.0);
    // the route disappears while `a` is still in flight: its counts are not lost
    let mut gone = spec(json!([]), 1000.0, 1000);
    gone.routes.retain(|r| r.id != "open");
    engine.replace(gone).expect("reload without the route");
    a.stats.record(200, 0.002, -1.0);
    let d = engine.take_stats();
    let open: Vec<_> = d.routes.iter().filter(|r| r.1.as_ref() == "open").collect();
    assert_eq!(open.len(), 1, "{:?}", d.routes);
    assert_eq!(open[0].0.as_ref(), "solo");
    assert_eq!(open[0].2.classes, [0, 0, 2, 0, 0, 1]);
    let up: Vec<_> = d
        .upstream
        .iter()
        .filter(|u| u.0.as_ref() == "solo")
        .collect();
    assert_eq!(up[0].1.counts.iter().sum::<u64>(), 1);
    drop(a);
    assert!(
        engine.take_stats().routes.is_empty(),
        "taken once, then dropped"
    );
}
