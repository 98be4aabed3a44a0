//! Python bindings for agentgate_core::signature (Ed25519).

use std::collections::HashMap;

use agentgate_core::signature::{self as core, PublicKey, SigningKey, VerifyingKey};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};

fn value_error(e: core::KeyError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

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
    if let Ok(k) = obj.cast::<Ed25519PublicKey>() {
        return Ok(*k.get().inner.verifying_key());
    }
    with_key_bytes(obj, "public_key", core::parse_public_key)?.map_err(value_error)
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

/// A fresh key pair: (32-byte seed, 32-byte public key).
#[pyfunction]
fn ed25519_generate<'py>(py: Python<'py>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
    let sk = core::generate();
    (
        PyBytes::new(py, sk.as_bytes()),
        PyBytes::new(py, sk.verifying_key().as_bytes()),
    )
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

enum BatchKey {
    Parsed(PublicKey),
    Bare(VerifyingKey),
}

fn batch_mode(mode: &str) -> PyResult<core::BatchMode> {
    match mode {
        "exact" => Ok(core::BatchMode::Exact),
        "exact-batched" => Ok(core::BatchMode::ExactBatched),
        "fast" => Ok(core::BatchMode::Fast),
        other => Err(PyValueError::new_err(format!(
            "mode must be 'exact', 'exact-batched' or 'fast', got {other:?}"
        ))),
    }
}

/// Verifies many (key, message, signature) items (see BatchMode). Releases the GIL.
#[pyfunction]
#[pyo3(signature = (items, mode = "exact"))]
fn ed25519_verify_batch(
    py: Python<'_>,
    items: Vec<Bound<'_, PyAny>>,
    mode: &str,
) -> PyResult<Vec<bool>> {
    let mode = batch_mode(mode)?;
    let mut keys = Vec::with_capacity(items.len());
    let mut data: Vec<(PyBackedBytes, PyBackedBytes)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (key, msg, sig): (Bound<'_, PyAny>, PyBackedBytes, PyBackedBytes) =
            item.extract().map_err(|e| {
                PyTypeError::new_err(format!("item {i}: expected (key, message, signature): {e}"))
            })?;
        let key = match key.cast::<Ed25519PublicKey>() {
            Ok(k) => BatchKey::Parsed(k.get().inner.clone()),
            Err(_) => BatchKey::Bare(
                public_key_arg(&key)
                    .map_err(|e| PyValueError::new_err(format!("item {i}: {}", e.value(py))))?,
            ),
        };
        keys.push(key);
        data.push((msg, sig));
    }
    Ok(py.detach(|| {
        // Classify each distinct bare key once (a scalar multiplication each).
        let mut bare: HashMap<[u8; 32], PublicKey> = HashMap::new();
        for k in &keys {
            if let BatchKey::Bare(vk) = k {
                if mode == core::BatchMode::Exact {
                    // Exact mode never looks at torsion: skip the classification.
                    bare.entry(vk.to_bytes())
                        .or_insert_with(|| PublicKey::unclassified(*vk));
                    continue;
                }
                bare.entry(vk.to_bytes())
                    .or_insert_with(|| PublicKey::new(*vk));
            }
        }
        let refs: Vec<(&PublicKey, &[u8], &[u8])> = keys
            .iter()
            .zip(&data)
            .filter_map(|(k, (m, s))| {
                let key = match k {
                    BatchKey::Parsed(p) => p,
                    BatchKey::Bare(vk) => bare.get(vk.as_bytes())?,
                };
                Some((key, &m[..], &s[..]))
            })
            .collect();
        core::verify_batch_keys_with(&refs, mode)
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
    m.add_class::<Ed25519PublicKey>()?;
    m.add_class::<Ed25519PrivateKey>()?;
    m.add_function(wrap_pyfunction!(ed25519_generate, m)?)?;
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
