//! Python bindings for agentgate_core::httpsig (RFC 9421 signatures, RFC 9530 Content-Digest).

use std::collections::HashMap;
use std::sync::Mutex;

use agentgate_core::httpsig::{
    self as core, ContentDigest, DigestAlg as CoreAlg, DigestCheck, HttpSigError,
    HttpSigErrorKind as CoreKind, Request, SignatureParams, UnixClock, Verifier, VerifyPolicy,
};
use agentgate_core::signature::{KeyRing, PublicKey};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyBytes;

use crate::clock::{any_clock, ManualClock};
use crate::enums::py_enum;
use crate::errors::{setting_error, unknown_name, HTTP_SIGNATURE_ERROR};
use crate::signature::{private_key_arg, public_key_arg, public_key_arg_in};

py_enum! {
    /// Why a signed request was rejected (or could not be signed); `str()` is its stable code.
    HttpSigErrorKind mirrors CoreKind {
        /// No Signature-Input / Signature header.
        MissingSignature,
        /// A header is not a valid structured field or not the expected shape.
        Malformed,
        /// The requested label is not in both headers.
        LabelNotFound,
        /// The signature parameters carry no keyid.
        MissingKeyId,
        /// The key id is not known.
        UnknownKeyId,
        /// `alg` present and not ed25519.
        UnsupportedAlgorithm,
        /// A component identifier this implementation does not support.
        UnsupportedComponent,
        /// The policy requires a component the signature does not cover.
        ComponentNotCovered,
        /// A covered component is absent from the request.
        ComponentMissing,
        /// The policy requires `created` and it is absent.
        MissingCreated,
        /// The policy requires a nonce and it is absent.
        MissingNonce,
        /// `expires` is in the past.
        Expired,
        /// `created` is older than the maximum age.
        TooOld,
        /// `created` is in the future.
        CreatedInFuture,
        /// The nonce was seen before.
        ReplayedNonce,
        /// The signature does not verify.
        BadSignature,
        /// The body does not match Content-Digest.
        DigestMismatch,
        /// A body without a Content-Digest header.
        MissingDigest,
    }
}

#[pymethods]
impl HttpSigErrorKind {
    /// The stable code of problem details, e.g. "bad-signature".
    fn __str__(&self) -> &'static str {
        CoreKind::from(*self).code()
    }
}

fn sig_error(e: HttpSigError) -> PyErr {
    let kind = HttpSigErrorKind::from(e.kind());
    let code = e.code();
    HTTP_SIGNATURE_ERROR.err(e.to_string(), move |exc| {
        exc.setattr("kind", kind)?;
        exc.setattr("code", code)
    })
}

py_enum! {
    /// A Content-Digest algorithm; `str()` is its RFC 9530 key ("sha-256").
    DigestAlg mirrors CoreAlg {
        /// `sha-256`.
        Sha256,
        /// `sha-512`.
        Sha512,
    }
}

#[pymethods]
impl DigestAlg {
    /// The algorithm named `name` ("sha-256", "sha-512"); ValueError otherwise.
    #[new]
    fn new(name: &str) -> PyResult<Self> {
        name.parse::<CoreAlg>()
            .map(Into::into)
            .map_err(unknown_name)
    }
    fn __str__(&self) -> &'static str {
        CoreAlg::from(*self).name()
    }
}

type Headers = Vec<(PyBackedStr, PyBackedStr)>;

/// The request view over Python-provided parts.
fn request<'a>(
    method: &'a str,
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a Headers,
) -> Request<'a, PyBackedStr> {
    Request {
        method,
        scheme,
        authority,
        path,
        query,
        headers,
    }
}

/// `Content-Digest` header value for `body` (`sha-256=:...:`).
#[pyfunction]
#[pyo3(signature = (body, alg = DigestAlg::Sha256))]
fn http_content_digest(body: &[u8], alg: DigestAlg) -> String {
    core::content_digest(alg.into(), body)
}

/// True if `body` matches the `Content-Digest` header; HttpSignatureError if it is malformed.
#[pyfunction]
fn http_verify_content_digest(header: &str, body: &[u8]) -> PyResult<bool> {
    core::content_digest_matches(header, body).map_err(sig_error)
}

/// Checks a body against the request's Content-Digest fields; HttpSignatureError if absent
/// (MissingDigest), different (DigestMismatch) or malformed.
#[pyfunction]
fn http_verify_body_digest(headers: Headers, body: &[u8]) -> PyResult<()> {
    core::verify_body_digest(&headers, body).map_err(sig_error)
}

/// Incremental body hasher for streaming: `update(chunk)`, then `header_value()`.
#[pyclass(module = "agentgate._core", frozen)]
pub struct ContentDigestHasher {
    state: Mutex<Option<ContentDigest>>,
}

#[pymethods]
impl ContentDigestHasher {
    #[new]
    #[pyo3(signature = (alg = DigestAlg::Sha256))]
    fn new(alg: DigestAlg) -> Self {
        Self {
            state: Mutex::new(Some(ContentDigest::new(alg.into()))),
        }
    }
    /// Feeds a chunk of the body.
    fn update(&self, chunk: &[u8]) -> PyResult<()> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("hasher lock poisoned"))?;
        match guard.as_mut() {
            Some(h) => {
                h.update(chunk);
                Ok(())
            }
            None => Err(PyValueError::new_err("hasher already finalized")),
        }
    }
    /// The `Content-Digest` value; the hasher cannot be used afterwards.
    fn header_value(&self) -> PyResult<String> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("hasher lock poisoned"))?;
        guard
            .take()
            .map(ContentDigest::header_value)
            .ok_or_else(|| PyValueError::new_err("hasher already finalized"))
    }
}

/// Streaming check of a body against a `Content-Digest` header: `update(chunk)`, then `finish()`.
#[pyclass(module = "agentgate._core", frozen)]
pub struct ContentDigestCheck {
    state: Mutex<Option<DigestCheck>>,
}

#[pymethods]
impl ContentDigestCheck {
    #[new]
    fn new(header: &str) -> PyResult<Self> {
        let check = DigestCheck::from_header(header).map_err(sig_error)?;
        Ok(Self {
            state: Mutex::new(Some(check)),
        })
    }
    /// Feeds a chunk of the body.
    fn update(&self, chunk: &[u8]) -> PyResult<()> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("check lock poisoned"))?;
        match guard.as_mut() {
            Some(c) => {
                c.update(chunk);
                Ok(())
            }
            None => Err(PyValueError::new_err("check already finished")),
        }
    }
    /// True if the body matched.
    fn finish(&self) -> PyResult<bool> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("check lock poisoned"))?;
        let check = guard
            .take()
            .ok_or_else(|| PyValueError::new_err("check already finished"))?;
        Ok(check.finish().is_ok())
    }
}

/// The headers that sign a request.
#[pyclass(module = "agentgate._core", frozen, get_all)]
pub struct SignedHeaders {
    /// Value of `Signature-Input`.
    signature_input: String,
    /// Value of `Signature`.
    signature: String,
    /// The signature base that was signed.
    base: String,
}

#[pymethods]
impl SignedHeaders {
    fn __repr__(&self) -> String {
        format!(
            "SignedHeaders(signature_input={:?}, signature={:?})",
            self.signature_input, self.signature
        )
    }
}

/// Signs a request: the Signature-Input and Signature values to add.
#[pyfunction]
#[pyo3(signature = (method, scheme, authority, path, query, headers, components, private_key, label, *,
                    keyid = None, created = None, expires = None, nonce = None, alg = None, tag = None))]
#[allow(clippy::too_many_arguments)]
fn http_sign(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
    headers: Headers,
    components: Vec<PyBackedStr>,
    private_key: &Bound<'_, PyAny>,
    label: &str,
    keyid: Option<&str>,
    created: Option<i64>,
    expires: Option<i64>,
    nonce: Option<&str>,
    alg: Option<&str>,
    tag: Option<&str>,
) -> PyResult<SignedHeaders> {
    let key = private_key_arg(private_key)?;
    let comps: Vec<&str> = components.iter().map(|c| &**c).collect();
    let params = SignatureParams::for_signing(&comps, created, expires, nonce, alg, keyid, tag)
        .map_err(sig_error)?;
    let req = request(method, scheme, authority, path, query, &headers);
    let signed = core::sign_request(&req, label, &params, &key).map_err(sig_error)?;
    Ok(SignedHeaders {
        signature_input: signed.signature_input,
        signature: signed.signature,
        base: signed.base,
    })
}

/// The RFC 9421 signature base for the `label` (or first) member of a Signature-Input value.
#[pyfunction]
#[pyo3(signature = (method, scheme, authority, path, query, headers, signature_input, label = None))]
#[allow(clippy::too_many_arguments)]
fn http_signature_base(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
    headers: Headers,
    signature_input: &str,
    label: Option<&str>,
) -> PyResult<String> {
    let (_, params) = core::parse_signature_input(signature_input, label).map_err(sig_error)?;
    core::signature_base(
        &request(method, scheme, authority, path, query, &headers),
        &params,
    )
    .map_err(sig_error)
}

/// A verified request signature.
#[pyclass(module = "agentgate._core", frozen)]
pub struct VerifiedSignature {
    #[pyo3(get)]
    label: String,
    #[pyo3(get)]
    keyid: String,
    #[pyo3(get)]
    created: Option<i64>,
    #[pyo3(get)]
    expires: Option<i64>,
    #[pyo3(get)]
    nonce: Option<String>,
    #[pyo3(get)]
    alg: Option<String>,
    #[pyo3(get)]
    tag: Option<String>,
    #[pyo3(get)]
    components: Vec<String>,
}

#[pymethods]
impl VerifiedSignature {
    fn __repr__(&self) -> String {
        format!(
            "VerifiedSignature(label={:?}, keyid={:?}, created={:?}, nonce={:?}, components={:?})",
            self.label, self.keyid, self.created, self.nonce, self.components
        )
    }
}

/// Verifies RFC 9421 request signatures against a key map, a policy, a clock and a nonce cache.
#[pyclass(module = "agentgate._core", frozen)]
pub struct HttpSigVerifier {
    verifier: Verifier,
    keys: KeyRing,
}

#[pymethods]
impl HttpSigVerifier {
    #[new]
    #[pyo3(signature = (keys, *, required_components = None, require_digest_with_body = true,
                        require_created = true, require_nonce = false, max_age = Some(300),
                        skew = 60, nonce_capacity = Some(100_000), clock = None, now = None),
           // spelled out: PyO3 renders the `Some(..)` defaults as `...`
           text_signature = "(keys, *, required_components=None, require_digest_with_body=True, \
                             require_created=True, require_nonce=False, max_age=300, skew=60, \
                             nonce_capacity=100000, clock=None, now=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        keys: HashMap<String, Bound<'_, PyAny>>,
        required_components: Option<Vec<String>>,
        require_digest_with_body: bool,
        require_created: bool,
        require_nonce: bool,
        max_age: Option<u64>,
        skew: u64,
        nonce_capacity: Option<usize>,
        clock: Option<PyRef<'_, ManualClock>>,
        now: Option<f64>,
    ) -> PyResult<Self> {
        let ring = KeyRing::new();
        let mut parsed = HashMap::with_capacity(keys.len());
        for (keyid, key) in &keys {
            let vk = public_key_arg_in(Some(&format!("keys[{keyid:?}]")), key)?;
            parsed.insert(keyid.clone(), PublicKey::new(vk));
        }
        ring.replace(parsed);
        let mut policy = VerifyPolicy {
            require_digest_with_body,
            require_created,
            require_nonce,
            max_age_secs: max_age,
            skew_secs: skew,
            ..VerifyPolicy::default()
        };
        if let Some(req) = required_components {
            policy.required_components = req;
        }
        let clock = UnixClock::anchored(any_clock(clock.as_deref()), now).map_err(setting_error)?;
        Ok(Self {
            verifier: Verifier::new(policy, clock, nonce_capacity),
            keys: ring,
        })
    }

    /// Adds or replaces a key.
    fn set_key(&self, keyid: &str, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.keys
            .insert(keyid, PublicKey::new(public_key_arg(key)?));
        Ok(())
    }

    /// Removes a key; True if it was present.
    fn remove_key(&self, keyid: &str) -> bool {
        self.keys.remove(keyid)
    }

    /// The verifier's current UNIX time in seconds.
    fn now(&self) -> i64 {
        self.verifier.now_unix()
    }

    /// Verifies the request's Signature-Input / Signature headers; raises HttpSignatureError.
    #[pyo3(signature = (method, scheme, authority, path, query, headers, *, has_body = false, label = None))]
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        py: Python<'_>,
        method: &str,
        scheme: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
        headers: Headers,
        has_body: bool,
        label: Option<&str>,
    ) -> PyResult<VerifiedSignature> {
        let req = request(method, scheme, authority, path, query, &headers);
        let keys = |id: &str| self.keys.get(id).map(|k| *k.verifying_key());
        let verified = py
            .detach(|| self.verifier.verify(&req, label, &keys, has_body))
            .map_err(sig_error)?;
        let p = verified.params;
        Ok(VerifiedSignature {
            label: verified.label,
            keyid: verified.keyid,
            created: p.created,
            expires: p.expires,
            nonce: p.nonce,
            alg: p.alg,
            tag: p.tag,
            components: p.components,
        })
    }
}

/// Convenience for tests: the bytes of a signature header member, base64-decoded (None if absent).
#[pyfunction]
fn http_signature_bytes<'py>(
    py: Python<'py>,
    signature: &str,
    label: &str,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let dict = core::parse_dictionary(signature, "Signature").map_err(sig_error)?;
    Ok(dict
        .iter()
        .find(|(k, _)| k == label)
        .and_then(|(_, m)| match m {
            core::Member::Item(core::BareItem::Bytes(b), _) => Some(PyBytes::new(py, b)),
            _ => None,
        }))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HttpSigErrorKind>()?;
    m.add_class::<DigestAlg>()?;
    m.add_class::<SignedHeaders>()?;
    m.add_class::<ContentDigestHasher>()?;
    m.add_class::<ContentDigestCheck>()?;
    m.add_class::<VerifiedSignature>()?;
    m.add_class::<HttpSigVerifier>()?;
    m.add_function(wrap_pyfunction!(http_content_digest, m)?)?;
    m.add_function(wrap_pyfunction!(http_verify_content_digest, m)?)?;
    m.add_function(wrap_pyfunction!(http_verify_body_digest, m)?)?;
    m.add_function(wrap_pyfunction!(http_sign, m)?)?;
    m.add_function(wrap_pyfunction!(http_signature_base, m)?)?;
    m.add_function(wrap_pyfunction!(http_signature_bytes, m)?)?;
    Ok(())
}
