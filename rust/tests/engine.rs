//! The engine's decision and the request lifecycle: order of refusals, queueing, shedding,
//! timeouts, slots released exactly once whatever happens, state kept across reloads.

use std::sync::Arc;
use std::time::Duration;

use agentgate_core::balancer::Outcome;
use agentgate_core::clock::{AnyClock, ManualClock};
use agentgate_core::config::GatewayConfig;
use agentgate_core::engine::{Decision, Engine, RequestHead};
use agentgate_core::httpsig::RequestView;
use sha2::{Digest, Sha256};

fn digest(secret: &str) -> String {
    let d: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    format!("sha256:{}", hex::encode(d))
}

fn config(extra: serde_json::Value) -> GatewayConfig {
    let mut base = serde_json::json!({
        "agents": {
            "a": {"endpoints": [{"url": "http://127.0.0.1:9"}], "max_concurrency": 1,
                  "max_queue": 2, "queue_timeout": 0.2},
        },
        "routes": [
            {"id": "open", "agent": "a", "match": {"path_prefix": "/open"}},
            {"id": "get", "agent": "a", "match": {"path_prefix": "/get", "methods": ["GET"]}},
            {"id": "auth", "agent": "a", "match": {"path_prefix": "/auth"}, "auth": "required",
             "max_body": 10},
            {"id": "admin", "agent": "a", "match": {"path_prefix": "/admin"},
             "auth": "required", "roles": ["admin"]},
            {"id": "limited", "agent": "a", "match": {"path_prefix": "/limited"},
             "auth": "required", "rate_limit": {"key": "api_key", "rate": 1.0, "burst": 1},
             "max_body": 10},
        ],
        "auth": {"api_keys": [
            {"id": "k1", "hash": digest("s1"), "tenant": "acme", "roles": ["caller"]},
            {"id": "k2", "hash": digest("s2"), "tenant": "acme", "roles": ["admin"]},
        ], "roles": {"caller": {"max_priority": "high"}}},
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).expect("test config")
}

struct Head {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn head(method: &'static str, path: &'static str, headers: &[(&'static str, &str)]) -> Head {
    Head {
        method,
        path,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    }
}

impl RequestView for Head {
    fn method(&self) -> &str {
        self.method
    }
    fn scheme(&self) -> &str {
        "http"
    }
    fn authority(&self) -> &str {
        "gw"
    }
    fn path(&self) -> &str {
        self.path
    }
    fn query(&self) -> Option<&str> {
        None
    }
    fn header_values(&self, name: &str, f: &mut dyn FnMut(&str)) {
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }
}

impl RequestHead for Head {
    fn route_path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn client_ip(&self) -> &str {
        "10.0.0.1"
    }
    fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
    fn has_body(&self) -> bool {
        self.content_length().is_some_and(|n| n > 0)
    }
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Go(_) => 200,
        Decision::Wait(_) => 0,
        Decision::Activate(_) => 1,
        Decision::Reject(r) => r.status,
    }
}

fn engine(clock: &ManualClock, extra: serde_json::Value) -> Engine {
    Engine::new(&config(extra), AnyClock::Manual(clock.clone())).expect("engine")
}

#[test]
fn refusals_come_in_order_and_spend_nothing() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let key = [("authorization", "Bearer s1")];
    assert_eq!(status(&e.admit(&head("GET", "/nowhere", &[]))), 404);
    assert_eq!(status(&e.admit(&head("POST", "/get/x", &[]))), 405);
    assert_eq!(status(&e.admit(&head("GET", "/auth", &[]))), 401);
    assert_eq!(
        status(&e.admit(&head("GET", "/auth", &[("x-api-key", "nope")]))),
        401
    );
    assert_eq!(
        status(&e.admit(&head("GET", "/admin", &[("authorization", "Bearer s1")]))),
        403
    );
    // too large: refused before the rate limit spends the only token
    let big = [("authorization", "Bearer s1"), ("content-length", "11")];
    assert_eq!(status(&e.admit(&head("POST", "/limited", &big))), 413);
    assert_eq!(status(&e.admit(&head("POST", "/limited", &big))), 413);
    let ok = e.admit(&head("GET", "/limited", &key));
    assert_eq!(status(&ok), 200, "the token was still there");
    drop(ok);
    let limited = e.admit(&head("GET", "/limited", &key));
    match &limited {
        Decision::Reject(r) => {
            assert_eq!(r.status, 429);
            let names: Vec<_> = r.headers.iter().map(|(k, _)| *k).collect();
            assert_eq!(names, ["ratelimit-policy", "ratelimit", "retry-after"]);
        }
        _ => panic!("expected 429"),
    }
    // the slot of a refused request was never taken
    let snap = e.snapshot();
    let pool = snap.pool_named("a").expect("pool");
    assert_eq!(pool.admission.in_flight(), 0);
}

#[test]
fn dropping_an_in_flight_request_releases_its_slot() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let d = e.admit(&head("GET", "/open", &[]));
    let snap = e.snapshot();
    let pool = snap.pool_named("a").expect("pool").clone();
    assert_eq!(pool.admission.in_flight(), 1);
    drop(d);
    assert_eq!(pool.admission.in_flight(), 0);
    let Decision::Go(f) = e.admit(&head("GET", "/open", &[])) else {
        panic!("expected a slot")
    };
    f.finish(1_000, Outcome::Success);
    assert_eq!(pool.admission.in_flight(), 0);
}

#[test]
fn a_panicking_task_gives_its_slot_back() {
    let clock = ManualClock::new();
    let e = Arc::new(engine(&clock, serde_json::json!({})));
    let e2 = e.clone();
    let t = std::thread::spawn(move || {
        let _held = e2.admit(&head("GET", "/open", &[]));
        panic!("worker dies mid-request");
    });
    assert!(t.join().is_err());
    let snap = e.snapshot();
    assert_eq!(snap.pool_named("a").expect("pool").admission.in_flight(), 0);
}

#[tokio::test]
async fn the_queue_hands_a_freed_slot_to_the_next_waiter() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let Decision::Go(first) = e.admit(&head("GET", "/open", &[])) else {
        panic!("slot")
    };
    let Decision::Wait(q) = e.admit(&head("GET", "/open", &[])) else {
        panic!("queued")
    };
    let waiter = tokio::spawn(q.wait());
    tokio::task::yield_now().await;
    first.finish(0, Outcome::Success);
    let second = waiter.await.expect("join").expect("granted");
    let snap = e.snapshot();
    let pool = snap.pool_named("a").expect("pool").clone();
    assert_eq!(pool.admission.in_flight(), 1);
    drop(second);
    assert_eq!(pool.admission.in_flight(), 0);
    assert!(pool.waiters.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_times_out_and_one_given_up_loses_nothing() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let Decision::Go(first) = e.admit(&head("GET", "/open", &[])) else {
        panic!("slot")
    };
    let Decision::Wait(q) = e.admit(&head("GET", "/open", &[])) else {
        panic!("queued")
    };
    match q.wait().await {
        Err(r) => assert_eq!((r.status, r.reason), (503, "queue_timeout")),
        Ok(_) => panic!("no slot was free"),
    }
    let pool0 = e.snapshot().pool_named("a").expect("pool").clone();
    assert_eq!(pool0.waiters.len(), 0, "after timeout");
    // a waiter that goes away (client disconnect) withdraws its ticket
    let Decision::Wait(q) = e.admit(&head("GET", "/open", &[])) else {
        panic!("queued")
    };
    let w = tokio::spawn(q.wait());
    tokio::task::yield_now().await;
    w.abort();
    let _ = w.await;
    first.finish(0, Outcome::Success);
    let snap = e.snapshot();
    let pool = snap.pool_named("a").expect("pool").clone();
    assert_eq!(pool.admission.in_flight(), 0, "the freed slot found nobody");
    assert_eq!(pool.admission.depths(), [0, 0, 0, 0]);
    assert!(pool.waiters.is_empty());
}

#[tokio::test]
async fn low_priority_is_shed_for_high_and_high_goes_first() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let key = ("authorization", "Bearer s1");
    let Decision::Go(held) = e.admit(&head("GET", "/open", &[])) else {
        panic!("slot")
    };
    let (Decision::Wait(l1), Decision::Wait(l2)) = (
        e.admit(&head("GET", "/open", &[("x-priority", "low")])),
        e.admit(&head("GET", "/open", &[("x-priority", "low")])),
    ) else {
        panic!("both queue")
    };
    // the queue is full (2): a high request evicts the newest low one
    let Decision::Wait(hi) = e.admit(&head("GET", "/auth", &[key, ("x-priority", "high")])) else {
        panic!("high queues")
    };
    match l2.wait().await {
        Err(r) => assert_eq!((r.status, r.reason), (503, "shed")),
        Ok(_) => panic!("the newest low waiter is shed"),
    }
    let low = tokio::spawn(l1.wait());
    let high = tokio::spawn(hi.wait());
    tokio::task::yield_now().await;
    drop(held);
    let got = high
        .await
        .expect("join")
        .expect("high gets the freed slot first");
    drop(got);
    let got = low.await.expect("join").expect("then low");
    drop(got);
    let snap = e.snapshot();
    assert_eq!(snap.pool_named("a").expect("pool").admission.in_flight(), 0);
}

#[test]
fn reload_keeps_state_of_unchanged_parts_and_refuses_bad_configs() {
    let clock = ManualClock::new();
    let e = engine(&clock, serde_json::json!({}));
    let key = [("authorization", "Bearer s1")];
    assert_eq!(status(&e.admit(&head("GET", "/limited", &key))), 200);
    e.replace(&config(serde_json::json!({})))
        .expect("same config");
    assert_eq!(
        status(&e.admit(&head("GET", "/limited", &key))),
        429,
        "the limiter carried over"
    );
    let mut bad = config(serde_json::json!({}));
    bad.routes[0].agent = "missing".into();
    let err = e.replace(&bad).expect_err("unknown agent");
    assert!(
        err.0.contains("routes[0]") && err.0.contains("agent"),
        "{}",
        err.0
    );
    assert_eq!(status(&e.admit(&head("GET", "/open", &[]))), 200);
}

#[test]
fn a_removed_pool_lives_until_its_last_request_ends() {
    let clock = ManualClock::new();
    let e = engine(
        &clock,
        serde_json::json!({
            "agents": {
                "a": {"endpoints": [{"url": "http://127.0.0.1:9"}]},
                "gone": {"endpoints": [{"url": "http://127.0.0.1:10"}]},
            },
            "routes": [
                {"id": "open", "agent": "a", "match": {"path_prefix": "/open"}},
                {"id": "gone", "agent": "gone", "match": {"path_prefix": "/gone"}},
            ],
        }),
    );
    let Decision::Go(f) = e.admit(&head("GET", "/gone", &[])) else {
        panic!("slot")
    };
    let weak = Arc::downgrade(f.pool());
    let cfg = serde_json::json!({
        "agents": {"a": {"endpoints": [{"url": "http://127.0.0.1:9"}]}},
        "routes": [{"id": "open", "agent": "a", "match": {"path_prefix": "/open"}}],
    });
    e.replace(&serde_json::from_value(cfg).expect("cfg"))
        .expect("reload");
    assert!(weak.upgrade().is_some(), "in use");
    f.finish(0, Outcome::Success);
    assert!(weak.upgrade().is_none(), "freed with its last request");
}

#[test]
fn config_errors_name_the_field() {
    let clock = ManualClock::new();
    let bad = |extra: serde_json::Value| {
        Engine::new(&config(extra), AnyClock::Manual(clock.clone()))
            .err()
            .expect("refused")
            .0
    };
    let msg = bad(serde_json::json!({"http": {"encoded_slash": "sometimes"}}));
    assert!(msg.starts_with("http.encoded_slash"), "{msg}");
    let msg = bad(serde_json::json!({"agents": {"a": {
        "endpoints": [{"url": "ftp://x"}]}}, "routes": []}));
    assert!(msg.starts_with("agents.a.endpoints[0].url"), "{msg}");
    let msg = bad(serde_json::json!({"agents": {"a": {
        "endpoints": [{"url": "http://x"}], "retries": {"on": ["404"]}}}, "routes": []}));
    assert!(msg.contains("retries.on"), "{msg}");
    let err = GatewayConfig::from_json(br#"{"agents": {"a": {"endpoints": [], "surprise": 1}}}"#)
        .expect_err("unknown field");
    assert!(err.0.contains("surprise"), "{}", err.0);
}

#[tokio::test]
async fn concurrent_admits_and_finishes_leave_no_slot_behind() {
    let clock = ManualClock::new();
    let e = Arc::new(engine(
        &clock,
        serde_json::json!({"agents": {"a": {"endpoints": [{"url": "http://127.0.0.1:9"}],
            "max_concurrency": 3, "max_queue": 1000, "queue_timeout": 10.0}}}),
    ));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let f = match e.admit(&head("GET", "/open", &[])) {
                Decision::Go(f) => f,
                Decision::Wait(q) => q.wait().await.expect("slot"),
                Decision::Activate(a) => a.wait().await.expect("endpoint"),
                Decision::Reject(r) => panic!("{}", r.detail),
            };
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_micros(50)).await;
            }
            if i % 2 == 0 {
                f.finish(0, Outcome::Success);
            } // else dropped
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let snap = e.snapshot();
    let pool = snap.pool_named("a").expect("pool").clone();
    assert_eq!(pool.admission.in_flight(), 0);
    assert!(pool.waiters.is_empty());
}

fn zero(endpoints: serde_json::Value) -> GatewayConfig {
    serde_json::from_value(serde_json::json!({
        "agents": {"z": {"endpoints": endpoints, "activation": {"timeout": 5.0},
                         "max_concurrency": 2}},
        "routes": [{"id": "z", "agent": "z", "match": {"path_prefix": "/z"}}],
    }))
    .expect("config")
}

#[tokio::test]
async fn a_request_to_an_agent_scaled_to_zero_waits_for_its_first_endpoint() {
    let clock = ManualClock::new();
    let e = Engine::new(
        &zero(serde_json::json!([])),
        AnyClock::Manual(clock.clone()),
    )
    .expect("an agent with activation may have no endpoint");
    let Decision::Activate(a) = e.admit(&head("GET", "/z", &[])) else {
        panic!("activation")
    };
    let waiting = tokio::spawn(a.wait());
    // the runtime is asked for the agent
    let asked = tokio::task::spawn_blocking({
        let acts = e.activations.clone();
        move || acts.take(Duration::from_secs(5))
    })
    .await
    .expect("join");
    assert_eq!(asked.iter().map(|a| a.as_ref()).collect::<Vec<_>>(), ["z"]);
    // its replica is published: the waiting request proceeds to it
    e.replace(&zero(serde_json::json!([{"url": "unix:/run/z.sock"}])))
        .expect("reload");
    let f = waiting.await.expect("join").expect("an endpoint");
    assert_eq!(
        f.endpoint().expect("picked").url.as_ref(),
        "unix:/run/z.sock"
    );
    let snap = e.snapshot();
    let pool = snap.pool_named("z").expect("pool").clone();
    assert_eq!(pool.admission.in_flight(), 1);
    drop(f);
    assert_eq!(pool.admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn activation_gives_up_after_its_timeout_and_frees_the_slot() {
    let clock = ManualClock::new();
    let e = Engine::new(
        &zero(serde_json::json!([])),
        AnyClock::Manual(clock.clone()),
    )
    .expect("engine");
    let Decision::Activate(a) = e.admit(&head("GET", "/z", &[])) else {
        panic!("activation")
    };
    match a.wait().await {
        Err(r) => assert_eq!((r.status, r.reason), (503, "activation_timeout")),
        Ok(_) => panic!("nothing was started"),
    }
    let snap = e.snapshot();
    assert_eq!(snap.pool_named("z").expect("pool").admission.in_flight(), 0);
}
