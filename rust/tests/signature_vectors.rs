//! RFC 8032 and Wycheproof Ed25519 vectors through `agentgate_core::signature`.

use std::path::PathBuf;

use agentgate_core::signature::{
    parse_private_key, parse_public_key, sign, verify, verify_batch, verify_batch_keys,
    verify_batch_keys_with, verify_batch_with, BatchMode, PublicKey, VerifyingKey,
};
use serde::Deserialize;

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!(
            "test vectors missing: {} ({e}); they live in the shared/ directory next to the repo",
            path.display()
        ),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    match hex::decode(s) {
        Ok(v) => v,
        Err(e) => panic!("bad hex in vectors: {e}"),
    }
}

#[derive(Deserialize)]
struct Rfc8032 {
    name: String,
    secret_key: String,
    public_key: String,
    message: String,
    signature: String,
}

#[test]
fn rfc8032_vectors() {
    let vectors: Vec<Rfc8032> =
        serde_json::from_str(&testdata("rfc8032_ed25519_vectors.json")).unwrap_or_default();
    assert_eq!(
        vectors.len(),
        5,
        "expected the 5 RFC 8032 section 7.1 vectors"
    );
    for v in &vectors {
        let sk =
            parse_private_key(&unhex(&v.secret_key)).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let pk =
            parse_public_key(&unhex(&v.public_key)).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(sk.verifying_key(), pk, "{}: public key derivation", v.name);
        let msg = unhex(&v.message);
        let sig = sign(&sk, &msg);
        assert_eq!(hex::encode(sig), v.signature, "{}: signature", v.name);
        assert!(verify(&pk, &msg, &sig), "{}: verify", v.name);
        let mut bad = msg.clone();
        bad.push(0);
        assert!(
            !verify(&pk, &bad, &sig),
            "{}: verify with altered message",
            v.name
        );
    }
}

#[derive(Deserialize)]
struct WycheproofFile {
    #[serde(rename = "numberOfTests")]
    number_of_tests: usize,
    #[serde(rename = "testGroups")]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    #[serde(rename = "publicKey")]
    public_key: GroupKey,
    #[serde(rename = "publicKeyPem")]
    public_key_pem: String,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct GroupKey {
    pk: String,
}

#[derive(Deserialize)]
struct Case {
    #[serde(rename = "tcId")]
    id: u32,
    comment: String,
    msg: String,
    sig: String,
    result: String,
}

struct Flat {
    id: u32,
    comment: String,
    key: VerifyingKey,
    msg: Vec<u8>,
    sig: Vec<u8>,
    valid: bool,
}

fn wycheproof() -> Vec<Flat> {
    let file: WycheproofFile = match serde_json::from_str(&testdata("wycheproof_ed25519_test.json"))
    {
        Ok(f) => f,
        Err(e) => panic!("cannot parse wycheproof file: {e}"),
    };
    let mut out = Vec::new();
    for g in &file.groups {
        let key =
            parse_public_key(&unhex(&g.public_key.pk)).unwrap_or_else(|e| panic!("group key: {e}"));
        let from_pem = parse_public_key(g.public_key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("group PEM: {e}"));
        assert_eq!(key, from_pem, "raw and PEM forms of a group key must agree");
        for t in &g.tests {
            assert!(
                t.result == "valid" || t.result == "invalid",
                "tc {}: unexpected result {}",
                t.id,
                t.result
            );
            out.push(Flat {
                id: t.id,
                comment: t.comment.clone(),
                key,
                msg: unhex(&t.msg),
                sig: unhex(&t.sig),
                valid: t.result == "valid",
            });
        }
    }
    assert_eq!(out.len(), file.number_of_tests);
    assert_eq!(out.len(), 151);
    out
}

const MODES: [BatchMode; 3] = [BatchMode::Exact, BatchMode::ExactBatched, BatchMode::Fast];

#[test]
fn wycheproof_all_cases() {
    let cases = wycheproof();
    let mut failures = Vec::new();
    for c in &cases {
        if verify(&c.key, &c.msg, &c.sig) != c.valid {
            failures.push(format!(
                "tc {} ({}): expected valid={}",
                c.id, c.comment, c.valid
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} wycheproof failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cases.iter().filter(|c| c.valid).count(), 88);
}

#[test]
fn wycheproof_batch_equals_singles() {
    let cases = wycheproof();
    let items: Vec<(&VerifyingKey, &[u8], &[u8])> = cases
        .iter()
        .map(|c| (&c.key, c.msg.as_slice(), c.sig.as_slice()))
        .collect();
    let expected: Vec<bool> = cases.iter().map(|c| c.valid).collect();
    assert_eq!(verify_batch(&items), expected);
    for mode in MODES {
        assert_eq!(verify_batch_with(&items, mode), expected, "{mode:?}");
    }
    // Also in small windows, so that many different batch compositions are exercised.
    for window in [2usize, 5, 8, 17] {
        for (chunk_items, chunk_expected) in items.chunks(window).zip(expected.chunks(window)) {
            for mode in MODES {
                assert_eq!(
                    verify_batch_with(chunk_items, mode),
                    chunk_expected,
                    "window {window} {mode:?}"
                );
            }
        }
    }
    let keys: Vec<PublicKey> = cases.iter().map(|c| PublicKey::new(c.key)).collect();
    let by_key: Vec<(&PublicKey, &[u8], &[u8])> = keys
        .iter()
        .zip(&cases)
        .map(|(k, c)| (k, c.msg.as_slice(), c.sig.as_slice()))
        .collect();
    assert_eq!(verify_batch_keys(&by_key), expected);
    for mode in MODES {
        assert_eq!(verify_batch_keys_with(&by_key, mode), expected, "{mode:?}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sub-multiset of Wycheproof cases, in any order: batch == expected == singles.
        #[test]
        fn wycheproof_subsets_batch_equals_singles(picks in proptest::collection::vec(0usize..151, 0..40)) {
            let cases = wycheproof();
            let chosen: Vec<&Flat> = picks.iter().map(|i| &cases[*i]).collect();
            let items: Vec<(&VerifyingKey, &[u8], &[u8])> =
                chosen.iter().map(|c| (&c.key, c.msg.as_slice(), c.sig.as_slice())).collect();
            let singles: Vec<bool> = items.iter().map(|(k, m, s)| verify(k, m, s)).collect();
            prop_assert_eq!(&singles, &chosen.iter().map(|c| c.valid).collect::<Vec<_>>());
            for mode in MODES {
                prop_assert_eq!(&verify_batch_with(&items, mode), &singles, "{:?}", mode);
            }
        }
    }
}
