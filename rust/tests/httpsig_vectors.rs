//! RFC 9421 Appendix B.2.6 (Ed25519) through `agentgate_core::httpsig`.

use std::path::PathBuf;

use agentgate_core::httpsig::{
    content_digest, parse_dictionary, sign_request, signature_base, verify_content_digest,
    verify_request, DigestAlg, HttpSigError, Request, RequestView, SignatureParams, VerifyPolicy,
};
use agentgate_core::signature::{parse_private_key, parse_public_key, VerifyingKey};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    request: Req,
    label: String,
    components: Vec<String>,
    params: Params,
    signature_base: String,
    signature_input_header: String,
    signature_header: String,
    public_key_pem: String,
    private_key_pem: String,
}

#[derive(Deserialize)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Deserialize)]
struct Params {
    created: i64,
    keyid: String,
}

fn vector() -> Vector {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/rfc9421_b26_ed25519.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test vector missing: {} ({e})", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad vector json: {e}"))
}

/// A request view over the vector's request, with optional overrides for tamper tests.
struct View<'a> {
    method: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: Vec<(String, String)>,
}

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn scheme(&self) -> &str {
        "https"
    }
    fn authority(&self) -> &str {
        self.authority
    }
    fn path(&self) -> &str {
        self.path
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn header_values(&self, name: &str, f: &mut dyn FnMut(&str)) {
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }
}

fn view(v: &Vector) -> View<'_> {
    let (path, query) = match v.request.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (v.request.target.as_str(), None),
    };
    let host = v
        .request
        .headers
        .iter()
        .find(|(k, _)| k == "Host")
        .map(|(_, h)| h.as_str())
        .unwrap_or("");
    View {
        method: &v.request.method,
        authority: host,
        path,
        query,
        headers: v.request.headers.clone(),
    }
}

fn params(v: &Vector) -> SignatureParams {
    let comps: Vec<&str> = v.components.iter().map(String::as_str).collect();
    SignatureParams::for_signing(
        &comps,
        Some(v.params.created),
        None,
        None,
        None,
        Some(&v.params.keyid),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn policy() -> VerifyPolicy {
    // The vector is from 2021 and covers no content-digest: judge the signature, not its age.
    VerifyPolicy {
        max_age_secs: None,
        require_digest_with_body: false,
        ..VerifyPolicy::default()
    }
}

fn verify_view(
    v: &Vector,
    r: &dyn RequestView,
    input: &str,
    sig: &str,
) -> Result<(), HttpSigError> {
    let pk = parse_public_key(v.public_key_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let keyid = v.params.keyid.clone();
    let keys = move |id: &str| -> Option<VerifyingKey> { (id == keyid).then_some(pk) };
    verify_request(
        r,
        Some(input),
        Some(sig),
        Some(&v.label),
        &keys,
        &policy(),
        true,
        v.params.created + 1,
    )
    .map(|_| ())
}

#[test]
fn b26_signature_base_matches_byte_for_byte() {
    let v = vector();
    let base = signature_base(&view(&v), &params(&v)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(base, v.signature_base);
}

#[test]
fn b26_parsed_params_rebuild_the_same_base() {
    let v = vector();
    let dict = parse_dictionary(&v.signature_input_header, "Signature-Input")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dict.len(), 1);
    assert_eq!(dict[0].0, v.label);
    // Rebuild by signing with the parsed params; the serialisation must round-trip exactly.
    let expected = format!("{}={}", v.label, params(&v).serialize());
    assert_eq!(expected, v.signature_input_header);
}

#[test]
fn b26_given_signature_verifies() {
    let v = vector();
    let r = view(&v);
    assert_eq!(
        verify_view(&v, &r, &v.signature_input_header, &v.signature_header),
        Ok(())
    );
}

#[test]
fn b26_resigning_reproduces_headers() {
    let v = vector();
    let sk = parse_private_key(v.private_key_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let signed =
        sign_request(&view(&v), &v.label, &params(&v), &sk).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signed.signature_input, v.signature_input_header);
    assert_eq!(signed.signature, v.signature_header);
    assert_eq!(signed.base, v.signature_base);
}

#[test]
fn b26_body_digest_matches_header() {
    let v = vector();
    let header = v
        .request
        .headers
        .iter()
        .find(|(k, _)| k == "Content-Digest")
        .map(|(_, h)| h.clone());
    let header = header.unwrap_or_default();
    assert_eq!(
        content_digest(DigestAlg::Sha512, v.request.body.as_bytes()),
        header
    );
    assert_eq!(
        verify_content_digest(&header, v.request.body.as_bytes()),
        Ok(())
    );
}

#[test]
fn b26_any_covered_change_fails() {
    let v = vector();
    let input = v.signature_input_header.clone();
    let sig = v.signature_header.clone();
    let bad = Err(HttpSigError::BadSignature);

    let mut r = view(&v);
    r.method = "PUT";
    assert_eq!(verify_view(&v, &r, &input, &sig), bad, "method");

    let mut r = view(&v);
    r.authority = "example.org";
    assert_eq!(verify_view(&v, &r, &input, &sig), bad, "authority");

    let mut r = view(&v);
    r.path = "/bar";
    assert_eq!(verify_view(&v, &r, &input, &sig), bad, "path");

    for covered in ["Date", "Content-Type", "Content-Length"] {
        let mut r = view(&v);
        for (k, val) in r.headers.iter_mut() {
            if k == covered {
                val.push('x');
            }
        }
        assert_eq!(verify_view(&v, &r, &input, &sig), bad, "header {covered}");
    }

    // A changed parameter changes @signature-params.
    let changed = input.replace("created=1618884473", "created=1618884474");
    assert_eq!(
        verify_view(&v, &view(&v), &changed, &sig),
        bad,
        "created param"
    );
    let changed = input.replace("test-key-ed25519\"", "test-key-ed25519\";nonce=\"x\"");
    assert_eq!(
        verify_view(&v, &view(&v), &changed, &sig),
        bad,
        "added param"
    );

    // Uncovered parts (the query, an uncovered header) may change.
    let mut r = view(&v);
    r.query = Some("param=other");
    r.headers.push(("X-Extra".into(), "1".into()));
    assert_eq!(
        verify_view(&v, &r, &input, &sig),
        Ok(()),
        "uncovered changes"
    );

    // A flipped signature bit fails.
    let mut raw = sig.clone().into_bytes();
    raw[10] = if raw[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(raw).unwrap_or_default();
    assert_eq!(
        verify_view(&v, &view(&v), &input, &flipped),
        bad,
        "signature bit"
    );

    // A covered header removed entirely is reported as missing, not as a bad signature.
    let mut r = view(&v);
    r.headers.retain(|(k, _)| k != "Date");
    assert_eq!(
        verify_view(&v, &r, &input, &sig),
        Err(HttpSigError::ComponentMissing("\"date\"".into())),
        "missing header"
    );
}

#[test]
fn b26_via_borrowed_request() {
    let v = vector();
    let headers: Vec<(&str, &str)> = v
        .request
        .headers
        .iter()
        .map(|(k, h)| (k.as_str(), h.as_str()))
        .collect();
    let r = Request {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
        headers: &headers,
    };
    assert_eq!(
        signature_base(&r, &params(&v)).as_deref(),
        Ok(v.signature_base.as_str())
    );
}
