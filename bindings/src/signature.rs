//! Python bindings for agentgate_core::signature (Ed25519).

use agentgate_core::signature::{
    self as core, BatchKey, BatchMode as CoreMode, KeyFormat as CoreFormat, KeyKind as CoreKind,
    KeyProblem as CoreProblem, PublicKey, SigningKey, VerifyingKey,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};

use crate::enums::{named_enum, py_enum};
use crate::errors::KEY_ERROR;

py_enum! {
    /// Which key was being parsed.
    KeyKind mirrors CoreKind {
        /// A public (verifying) key.
        Public,
        /// A private (signing) key.
        Private,
    }
}

py_enum! {
    /// Which key encoding the parser recognised (or last tried).
    KeyFormat mirrors CoreFormat {
        /// Raw key bytes.
        Raw,
        /// Base64 text.
        Base64,
        /// PEM text.
        Pem,
        /// DER (inside PEM or base64).
        Der,
    }
}

py_enum! {
    /// What is wrong with a key input (the message gives the details).
    KeyProblem {
        /// Neither raw bytes of the right length nor UTF-8 text.
        NotText,
        /// Decoded to the wrong number of bytes.
        Length,
        /// Invalid base64.
        Base64,
        /// A PEM label other than the expected one.
        PemLabel,
        /// PEM armour is broken.
        PemStructure,
        /// The DER names an algorithm other than Ed25519.
        NotEd25519,
        /// DER that does not parse.
        Der,
        /// The bytes are not a point on the curve.
        NotOnCurve,
        /// A private key's embedded public key does not match its seed.
        PublicKeyMismatch,
    }
}

impl From<&CoreProblem> for KeyProblem {
    fn from(p: &CoreProblem) -> Self {
        match p {
            CoreProblem::NotText { .. } => KeyProblem::NotText,
            CoreProblem::Length { .. } => KeyProblem::Length,
            CoreProblem::Base64(_) => KeyProblem::Base64,
            CoreProblem::PemLabel { .. } => KeyProblem::PemLabel,
            CoreProblem::PemStructure(_) => KeyProblem::PemStructure,
            CoreProblem::NotEd25519 => KeyProblem::NotEd25519,
            CoreProblem::Der(_) => KeyProblem::Der,
            CoreProblem::NotOnCurve => KeyProblem::NotOnCurve,
            CoreProblem::PublicKeyMismatch => KeyProblem::PublicKeyMismatch,
        }
    }
}

/// Raises a core `KeyError` as `Ed25519KeyError`; `context` (e.g. `keys["a"]`) prefixes the
/// message when given.
fn key_error(context: Option<&str>, e: core::KeyError) -> PyErr {
    let message = match context {
        Some(c) => format!("{c}: {e}"),
        None => e.to_string(),
    };
    let (kind, format, problem) = (
        KeyKind::from(e.kind),
        KeyFormat::from(e.format),
        KeyProblem::from(&e.problem),
    );
    KEY_ERROR.err(message, move |exc| {
        exc.setattr("kind", kind)?;
        exc.setattr("format", format)?;
        exc.setattr("problem", problem)
    })
}

fn value_error(e: core::KeyError) -> PyErr {
    key_error(None, e)
}

py_enum! {
    /// How `ed25519_verify_batch` decides; `str()` is its name ("exact", "exact-batched", "fast").
    BatchMode mirrors CoreMode {
        /// Per-item strict verification (the default).
        Exact,
        /// Exact, through the batch equation with a torsion check per signature.
        ExactBatched,
        /// The batch equation without the per-signature torsion check (about 2x faster).
        Fast,
    }
}

named_enum!(BatchMode, CoreMode);

/// Calls `f` with the bytes of a key given as `bytes` or `str` (raw, base64 or PEM).
fn with_key_bytes<R>(
    obj: &Bound<'_, PyAny>,
    what: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(f(s.to_str()?.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes or str (raw, base64 or PEM), got {}",
        obj.get_type().name()?
    )))
}

/// Parses a public key argument: an `Ed25519PublicKey`, or bytes / str in any supported format.
pub fn public_key_arg(obj: &Bound<'_, PyAny>) -> PyResult<VerifyingKey> {
    public_key_arg_in(None, obj)
}

/// Like [`public_key_arg`]; a malformed key's message starts with `context` (`keys["a"]`).
pub fn public_key_arg_in(context: Option<&str>, obj: &Bound<'_, PyAny>) -> PyResult<VerifyingKey> {
    if let Ok(k) = obj.cast::<Ed25519PublicKey>() {
        return Ok(*k.get().inner.verifying_key());
    }
    with_key_bytes(obj, "public_key", core::parse_public_key)?.map_err(|e| key_error(context, e))
}

/// Parses a private key argument: an `Ed25519PrivateKey`, or bytes / str in any supported format.
pub fn private_key_arg(obj: &Bound<'_, PyAny>) -> PyResult<SigningKey> {
    if let Ok(k) = obj.cast::<Ed25519PrivateKey>() {
        return Ok(k.get().inner.clone());
    }
    with_key_bytes(obj, "private_key", core::parse_private_key)?.map_err(value_error)
}

/// An Ed25519 public key parsed once, for repeated verification.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Ed25519PublicKey {
    pub inner: PublicKey,
}

#[pymethods]
impl Ed25519PublicKey {
    #[new]
    fn new(key: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: PublicKey::new(public_key_arg(key)?),
        })
    }
    /// Strict verification; False for a bad or malformed signature.
    fn verify(&self, py: Python<'_>, message: &[u8], signature: &[u8]) -> bool {
        let key = self.inner.verifying_key();
        py.detach(|| core::verify(key, message, signature))
    }
    /// The raw 32 bytes.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }
    /// Standard base64 of the raw bytes.
    fn to_base64(&self) -> String {
        core::public_key_to_base64(self.inner.verifying_key())
    }
    /// PEM SPKI.
    fn to_pem(&self) -> String {
        core::public_key_to_pem(self.inner.verifying_key())
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Ed25519PublicKey>()
            .is_ok_and(|o| o.get().inner.to_bytes() == self.inner.to_bytes())
    }
    fn __hash__(&self) -> u64 {
        let b = self.inner.to_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
    fn __repr__(&self) -> String {
        format!("Ed25519PublicKey('{}')", self.to_base64())
    }
}

/// An Ed25519 private key parsed once, for repeated signing.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Ed25519PrivateKey {
    pub inner: SigningKey,
}

#[pymethods]
impl Ed25519PrivateKey {
    #[new]
    fn new(key: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: private_key_arg(key)?,
        })
    }
    /// A fresh key from the OS RNG.
    #[staticmethod]
    fn generate() -> Self {
        Self {
            inner: core::generate(),
        }
    }
    /// Signs `message` (64-byte signature).
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &core::sign(&self.inner, message))
    }
    /// The matching public key.
    fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey {
            inner: PublicKey::new(self.inner.verifying_key()),
        }
    }
    /// The raw 32-byte seed.
    #[getter]
    fn seed<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.as_bytes())
    }
    /// PEM PKCS#8.
    fn to_pem(&self) -> String {
        core::private_key_to_pem(&self.inner)
    }
    fn __repr__(&self) -> String {
        // Never print key material.
        format!(
            "Ed25519PrivateKey(public='{}')",
            core::public_key_to_base64(&self.inner.verifying_key())
        )
    }
}

/// Signs `message` with a private key (raw seed, base64, PEM, or Ed25519PrivateKey).
#[pyfunction]
fn ed25519_sign<'py>(
    py: Python<'py>,
    private_key: &Bound<'py, PyAny>,
    message: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let sk = private_key_arg(private_key)?;
    Ok(PyBytes::new(py, &core::sign(&sk, message)))
}

/// Strict verification; False for a bad signature, ValueError for a malformed key.
#[pyfunction]
fn ed25519_verify(
    py: Python<'_>,
    public_key: &Bound<'_, PyAny>,
    message: &[u8],
    signature: &[u8],
) -> PyResult<bool> {
    let key = public_key_arg(public_key)?;
    Ok(py.detach(|| core::verify(&key, message, signature)))
}

/// Verifies many (key, message, signature) items (see BatchMode). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (items, mode = BatchMode::Exact))]
fn ed25519_verify_batch(
    py: Python<'_>,
    items: Vec<Bound<'_, PyAny>>,
    mode: BatchMode,
) -> PyResult<Vec<bool>> {
    let mut keys = Vec::with_capacity(items.len());
    let mut data: Vec<(PyBackedBytes, PyBackedBytes)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (key, msg, sig): (Bound<'_, PyAny>, PyBackedBytes, PyBackedBytes) =
            item.extract().map_err(|e| {
                PyTypeError::new_err(format!("item {i}: expected (key, message, signature): {e}"))
            })?;
        let key = match key.cast::<Ed25519PublicKey>() {
            Ok(k) => BatchKey::Parsed(k.get().inner.clone()),
            Err(_) => BatchKey::Bare(public_key_arg_in(Some(&format!("item {i}")), &key)?),
        };
        keys.push(key);
        data.push((msg, sig));
    }
    let mode = mode.into();
    Ok(py.detach(|| {
        let batch: Vec<(BatchKey, &[u8], &[u8])> = keys
            .into_iter()
            .zip(&data)
            .map(|(k, (m, s))| (k, &m[..], &s[..]))
            .collect();
        core::verify_batch_mixed(&batch, mode)
    }))
}

/// The raw 32-byte public key of a private key.
#[pyfunction]
fn ed25519_public_from_private<'py>(
    py: Python<'py>,
    private_key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        private_key_arg(private_key)?.verifying_key().as_bytes(),
    ))
}

/// Normalises any public key input to its raw 32 bytes (ValueError if malformed).
#[pyfunction]
fn ed25519_public_raw<'py>(
    py: Python<'py>,
    public_key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, public_key_arg(public_key)?.as_bytes()))
}

/// Public key as PEM SPKI.
#[pyfunction]
fn ed25519_public_pem(public_key: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(core::public_key_to_pem(&public_key_arg(public_key)?))
}

/// Public key as standard base64.
#[pyfunction]
fn ed25519_public_b64(public_key: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(core::public_key_to_base64(&public_key_arg(public_key)?))
}

/// Private key as PEM PKCS#8.
#[pyfunction]
fn ed25519_private_pem(private_key: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(core::private_key_to_pem(&private_key_arg(private_key)?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<KeyKind>()?;
    m.add_class::<KeyFormat>()?;
    m.add_class::<KeyProblem>()?;
    m.add_class::<BatchMode>()?;
    m.add_class::<Ed25519PublicKey>()?;
    m.add_class::<Ed25519PrivateKey>()?;
    m.add_function(wrap_pyfunction!(ed25519_sign, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_verify, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_verify_batch, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_from_private, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_raw, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_pem, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_public_b64, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_private_pem, m)?)?;
    Ok(())
}
