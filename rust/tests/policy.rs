//! Policy bundle tests against the shipped default policies: decisions, errors, concurrency,
//! a quota property against a Rust model, and a latency report (printed, not asserted).

use agentgate_core::policy::{PolicyBundle, PolicyError, DEFAULT_QUERY};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Instant;

const DEFAULTS: [(&str, &str); 4] = [
    (
        "main.rego",
        include_str!("../../python/agentgate/policy/defaults/main.rego"),
    ),
    (
        "signature.rego",
        include_str!("../../python/agentgate/policy/defaults/signature.rego"),
    ),
    (
        "capabilities.rego",
        include_str!("../../python/agentgate/policy/defaults/capabilities.rego"),
    ),
    (
        "quotas.rego",
        include_str!("../../python/agentgate/policy/defaults/quotas.rego"),
    ),
];

fn modules() -> Vec<(String, String)> {
    DEFAULTS
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

fn defaults() -> PolicyBundle {
    match PolicyBundle::new(&modules(), None, DEFAULT_QUERY) {
        Ok(b) => b,
        Err(e) => panic!("defaults must compile: {e}"),
    }
}

fn input(stage: &str, key: Option<&str>, verified: bool, replicas: i64, caps: &[&str]) -> String {
    serde_json::json!({
        "stage": stage,
        "template": {
            "name": "echo", "version": "1.0.0",
            "capabilities": caps,
            "resources": {"cpu": 0.5, "memory_mb": 256},
        },
        "signature": {"verified": verified, "key_id": key},
        "tenant": {
            "id": "acme",
            "trusted_keys": ["k1", "k2"],
            "allowed_capabilities": ["chat", "search"],
        },
        "caller": {"id": "alice", "roles": ["publisher"]},
        "quotas": {"agents": 10, "replicas": 20, "cpu": 8, "memory_mb": 4096},
        "usage": {"agents": 3, "replicas": 6, "cpu": 3, "memory_mb": 1536},
        "request": {"replicas": replicas},
    })
    .to_string()
}

fn rules(d: &agentgate_core::policy::Decision) -> Vec<&str> {
    d.deny.iter().map(|r| r.rule.as_str()).collect()
}

#[test]
fn good_request_is_allowed() {
    let b = defaults();
    for stage in ["publish", "create", "deploy"] {
        let d = b
            .evaluate(&input(stage, Some("k1"), true, 2, &["chat"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(d.allow, "{stage}: {d:?}");
        assert!(d.deny.is_empty());
    }
}

#[test]
fn unsigned_untrusted_and_unverified_are_denied_by_signature() {
    let b = defaults();
    let cases = [
        (None, false, "not signed"),
        (Some("k1"), false, "did not verify"),
        (Some("evil"), true, "not trusted"),
    ];
    for (key, verified, needle) in cases {
        let d = b
            .evaluate(&input("publish", key, verified, 1, &[]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!d.allow);
        assert_eq!(rules(&d), vec!["signature"], "{d:?}");
        assert!(d.deny[0].message.contains(needle), "{d:?}");
    }
}

#[test]
fn allow_unsigned_tenant_is_exempt() {
    let b = defaults();
    let mut v: serde_json::Value =
        serde_json::from_str(&input("publish", None, false, 1, &[])).unwrap_or_default();
    v["tenant"]["allow_unsigned"] = serde_json::Value::Bool(true);
    let d = b.evaluate(&v.to_string()).unwrap_or_else(|e| panic!("{e}"));
    assert!(d.allow, "{d:?}");
}

#[test]
fn disallowed_capability_is_named() {
    let b = defaults();
    let d = b
        .evaluate(&input("create", Some("k2"), true, 1, &["chat", "shell"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!d.allow);
    assert_eq!(rules(&d), vec!["capabilities"]);
    assert!(d.deny[0].message.contains("'shell'"));
}

#[test]
fn quota_excess_names_every_exceeded_quota() {
    let b = defaults();
    // 15 replicas: replicas 6+15 > 20, cpu 3+7.5 > 8, memory 1536+3840 > 4096.
    let d = b
        .evaluate(&input("create", Some("k1"), true, 15, &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!d.allow);
    let msgs: Vec<&str> = d.deny.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(d.deny.len(), 3, "{msgs:?}");
    assert!(rules(&d).iter().all(|r| *r == "quotas"));
    for q in ["replicas", "cpu", "memory_mb"] {
        assert!(
            msgs.iter().any(|m| m.contains(&format!("quota {q} "))),
            "{msgs:?}"
        );
    }
    // Quotas do not apply to publish.
    let d = b
        .evaluate(&input("publish", Some("k1"), true, 15, &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.allow, "{d:?}");
}

#[test]
fn syntax_error_reports_module_line_and_column() {
    let mut mods = modules();
    mods.push((
        "tenant.rego".to_string(),
        "package agentgate.rules.tenant\nimport rego.v1\n\ndeny contains \"x\" if {\n  input.a ==\n}\n"
            .to_string(),
    ));
    match PolicyBundle::new(&mods, None, DEFAULT_QUERY) {
        Err(PolicyError::Compile {
            module, line, col, ..
        }) => {
            assert_eq!(module, "tenant.rego");
            assert_eq!((line, col), (6, 1));
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn unknown_query_bad_data_and_bad_input_are_typed_errors() {
    assert!(matches!(
        PolicyBundle::new(&modules(), None, "data.agentgate.nope"),
        Err(PolicyError::Eval(_))
    ));
    assert!(matches!(
        PolicyBundle::new(&modules(), Some("[1,"), DEFAULT_QUERY),
        Err(PolicyError::Data(_))
    ));
    assert!(matches!(
        PolicyBundle::new(&modules(), Some("[1]"), DEFAULT_QUERY),
        Err(PolicyError::Data(_))
    ));
    let b = defaults();
    assert!(matches!(b.evaluate("{nope"), Err(PolicyError::Input(_))));
}

#[test]
fn runtime_conflict_is_an_eval_error_and_does_not_poison_the_pool() {
    let src = "package agentgate\nimport rego.v1\n\nx := 1 if input.a\nx := 2 if input.a\n\ndecision := {\"allow\": x == 1}\n";
    let b = match PolicyBundle::new(&[("c.rego".into(), src.into())], None, DEFAULT_QUERY) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(matches!(
        b.evaluate(r#"{"a": true}"#),
        Err(PolicyError::Eval(_))
    ));
    // Undefined `x` makes `allow` undefined, hence the decision undefined: a shape error.
    assert!(matches!(b.evaluate(r#"{}"#), Err(PolicyError::Shape(_))));
}

#[test]
fn bundles_the_vm_rejects_fall_back_to_the_interpreter() {
    // `some x in <virtual document>` is interpreter-only in regorus 0.14's bytecode compiler.
    let main = "package agentgate\nimport rego.v1\n\ndeny contains {\"rule\": name, \"msg\": msg} if {\n\tsome name\n\tsome msg in data.agentgate.rules[name].deny\n}\n\ndecision := {\"allow\": count(deny) == 0, \"deny\": deny}\n";
    let mut mods = modules();
    mods[0].1 = main.to_string();
    let b = match PolicyBundle::new(&mods, None, DEFAULT_QUERY) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert!(!b.uses_vm());
    assert!(defaults().uses_vm());
    let d = b
        .evaluate(&input("create", Some("k1"), true, 1, &["shell"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules(&d), vec!["capabilities"]);
}

#[test]
fn wrong_shape_is_reported() {
    let src = "package agentgate\nimport rego.v1\n\ndecision := {\"allow\": \"yes\"}\n";
    let b = match PolicyBundle::new(&[("s.rego".into(), src.into())], None, DEFAULT_QUERY) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    match b.evaluate("{}") {
        Err(PolicyError::Shape(m)) => assert!(m.contains("allow")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_document_is_visible_to_rules() {
    let src =
        "package agentgate\nimport rego.v1\n\ndecision := {\"allow\": input.user in data.admins}\n";
    let b = match PolicyBundle::new(
        &[("d.rego".into(), src.into())],
        Some(r#"{"admins": ["root"]}"#),
        DEFAULT_QUERY,
    ) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(b.evaluate(r#"{"user":"root"}"#).map(|d| d.allow), Ok(true));
    assert_eq!(b.evaluate(r#"{"user":"bob"}"#).map(|d| d.allow), Ok(false));
}

#[test]
fn explain_shows_covered_lines_of_the_deciding_module() {
    let b = defaults();
    let e = b
        .explain(&input("create", Some("k1"), true, 1, &["shell"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!e.decision.allow);
    assert!(e.result_json.contains("capabilities"));
    let caps = e
        .coverage
        .iter()
        .find(|c| c.module == "capabilities.rego")
        .unwrap_or_else(|| panic!("no coverage for capabilities.rego: {:?}", e.coverage));
    assert!(!caps.covered.is_empty());
}

#[test]
fn concurrent_evaluations_agree_with_sequential_ones() {
    let b = Arc::new(defaults());
    let inputs: Vec<String> = (0..8)
        .map(|i| input("create", Some("k1"), true, i * 3, &["chat"]))
        .collect();
    let expected: Vec<_> = inputs.iter().map(|i| b.evaluate(i)).collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&b);
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for _ in 0..50 {
                    out.push(inputs.iter().map(|i| b.evaluate(i)).collect::<Vec<_>>());
                }
                out
            })
        })
        .collect();
    for h in handles {
        for round in h.join().unwrap_or_default() {
            assert_eq!(round, expected);
        }
    }
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

/// Reports latency of pooled versus fresh-clone evaluation (numbers are printed, not asserted:
/// run with `--nocapture` in release to read them).
#[test]
fn latency_report() {
    let b = defaults();
    let inp = input("create", Some("k1"), true, 2, &["chat"]);
    let n = 5000;
    type EvalFn<'a> = Box<dyn Fn() -> bool + 'a>;
    let modes: Vec<(&str, EvalFn)> = vec![
        ("evaluate", Box::new(|| b.evaluate(&inp).is_ok())),
        (
            "interpreter",
            Box::new(|| b.evaluate_value_interpreted(&inp).is_ok()),
        ),
    ];
    for (name, f) in modes {
        for _ in 0..500 {
            assert!(f());
        }
        let mut t: Vec<u128> = (0..n)
            .map(|_| {
                let s = Instant::now();
                let ok = f();
                let e = s.elapsed().as_nanos();
                assert!(ok);
                e
            })
            .collect();
        t.sort_unstable();
        println!(
            "policy defaults {name:12} p50 {:6.1} us  p99 {:6.1} us",
            percentile(&t, 0.50) as f64 / 1e3,
            percentile(&t, 0.99) as f64 / 1e3
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The quota rule denies exactly when a Rust model of the same arithmetic says so.
    #[test]
    fn quota_decision_matches_model(
        used_agents in 0i64..12, used_replicas in 0i64..30,
        used_cpu in 0i64..12, used_mem in 0i64..5000,
        replicas in 0i64..12, stage_create in any::<bool>(),
    ) {
        let b = defaults();
        let stage = if stage_create { "create" } else { "deploy" };
        let inp = serde_json::json!({
            "stage": stage,
            "template": {"capabilities": [], "resources": {"cpu": 1, "memory_mb": 512}},
            "signature": {"verified": true, "key_id": "k"},
            "tenant": {"id": "t"},
            "quotas": {"agents": 10, "replicas": 20, "cpu": 8, "memory_mb": 4096},
            "usage": {"agents": used_agents, "replicas": used_replicas,
                      "cpu": used_cpu, "memory_mb": used_mem},
            "request": {"replicas": replicas},
        }).to_string();
        prop_assert!(b.uses_vm());
        let vm = b.evaluate_value(&inp);
        let interpreted = b.evaluate_value_interpreted(&inp);
        prop_assert_eq!(vm.ok(), interpreted.ok(), "VM and interpreter disagree");
        let d = b.evaluate(&inp);
        prop_assert!(d.is_ok(), "{:?}", d);
        let d = d.unwrap_or_else(|_| unreachable!());
        let new_agents = i64::from(stage_create);
        let over = |used: i64, want: i64, limit: i64| want > 0 && used + want > limit;
        let mut expected = 0;
        expected += usize::from(over(used_agents, new_agents, 10));
        expected += usize::from(over(used_replicas, replicas, 20));
        expected += usize::from(over(used_cpu, replicas, 8));
        expected += usize::from(over(used_mem, replicas * 512, 4096));
        prop_assert_eq!(d.deny.len(), expected, "{:?}", d);
        prop_assert_eq!(d.allow, expected == 0);
    }
}
