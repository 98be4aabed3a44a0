//! Ed25519 signatures: strict verification, exact batch verification, key parsing and export.
//!
//! Verification is `verify_strict` semantics everywhere (RFC 8032 plus the usual hardening):
//! `s` must be canonical (`s < L`), `R` must decode, and neither `R` nor the public key may be of
//! small order; the equation is the cofactorless one, `R == [s]B - [k]A`, compared byte for
//! byte, so a non-canonical `R` encoding is rejected too.
//!
//! Batch verification ([`BatchMode`]). dalek's batch equation `Σ zᵢ(Rᵢ + kᵢAᵢ - sᵢB) = 0` differs
//! from the strict single check in ways an input can exploit, so before an item may join a batch:
//! - non-canonical `s`, undecodable or non-canonically encoded `R` (y ≥ p), small-order `R` or `A`
//!   are rejected up front (strict rejects them; in a dalek batch they would fail the whole batch
//!   or, for a non-canonical `R`, be accepted, because the batch works on the decoded point);
//! - a key with a torsion component is verified on its own with the strict check (classified
//!   once per key: [`PublicKey`] caches it);
//! - torsion in `R`: the batch only proves the prime-order part of each equation. A torsion
//!   component `T` in `R` vanishes whenever `zᵢ·T = 0` (for an order-2 `T`, every even `zᵢ`, and
//!   dalek derives `zᵢ` deterministically from the inputs). Strict is cofactorless and rejects any
//!   torsion in `R`. No random linear combination can detect a per-item torsion component with
//!   negligible error (the torsion group is Z/8), so exact agreement needs a per-`R` scalar
//!   multiplication by the group order.
//!
//! Measured (release, one core, 64 distinct keys): strict single ≈ 40 µs, dalek batch ≈ 14 µs per
//! signature, the per-`R` torsion check ≈ 23 µs, prechecks ≈ 7 µs. So:
//! - [`BatchMode::Exact`] (default, [`verify_batch`], [`verify_batch_keys`]): per-item strict,
//!   the fastest way to be exactly equal to [`verify`] for every input;
//! - [`BatchMode::ExactBatched`]: prechecks + torsion check on every `R` + dalek batch + bisection;
//!   also exactly equal (up to the 2⁻¹²⁸ soundness error of the batch), but ≈ 20% slower than
//!   singles, kept to document the trade-off;
//! - [`BatchMode::Fast`]: prechecks + dalek batch + bisection, ≈ 2× faster than singles. Its only
//!   difference from strict: it may accept a signature whose `R` carries a small-order component.
//!   Making one needs the private key (the prime-order part must satisfy the equation), so this is
//!   signer-side malleability, not a forgery. Use it where two verifiers need not agree bit for
//!   bit on such signer-crafted signatures.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Length of a raw public key, a seed (private key) and a signature.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a raw private key seed.
pub const SEED_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// DER prefix of an RFC 8410 SubjectPublicKeyInfo for Ed25519 (followed by the 32 key bytes).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an RFC 8410 PKCS#8 v1 OneAsymmetricKey for Ed25519 (followed by the seed).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER encoding of the Ed25519 algorithm OID 1.3.101.112, to name "wrong algorithm" precisely.
const ED25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

const B64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const B64_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

/// Which key was being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A public (verifying) key.
    Public,
    /// A private (signing) key.
    Private,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Public => "public",
            KeyKind::Private => "private",
        })
    }
}

/// Which encoding the parser recognised (or last tried) when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// Raw key bytes.
    Raw,
    /// Base64 text (standard or URL-safe alphabet, padded or not).
    Base64,
    /// PEM text (SPKI `PUBLIC KEY` or PKCS#8 `PRIVATE KEY`).
    Pem,
    /// DER (inside PEM or base64).
    Der,
}

impl std::fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyFormat::Raw => "raw",
            KeyFormat::Base64 => "base64",
            KeyFormat::Pem => "PEM",
            KeyFormat::Der => "DER",
        })
    }
}

/// What is wrong with a key input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// Neither raw bytes of the right length nor UTF-8 text.
    NotText {
        /// Length of the input.
        len: usize,
    },
    /// Decoded to the wrong number of bytes.
    Length {
        /// What lengths would have been accepted.
        expected: &'static str,
        /// What was found.
        got: usize,
    },
    /// Invalid base64.
    Base64(String),
    /// A PEM label other than the expected one.
    PemLabel {
        /// Label found in the `-----BEGIN ...-----` line.
        found: String,
        /// Label that would have been accepted.
        expected: &'static str,
    },
    /// PEM armour is broken (missing END line, ...).
    PemStructure(&'static str),
    /// The DER structure names an algorithm other than Ed25519.
    NotEd25519,
    /// DER that does not parse as SPKI / PKCS#8.
    Der(String),
    /// The 32 bytes are not the encoding of a curve point.
    NotOnCurve,
    /// A private key carries a public key that does not match its seed.
    PublicKeyMismatch,
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::NotText { len } => {
                write!(f, "input is {len} bytes: not a 32-byte raw key and not UTF-8 text (base64 or PEM)")
            }
            KeyProblem::Length { expected, got } => {
                write!(f, "expected {expected} bytes, got {got}")
            }
            KeyProblem::Base64(e) => write!(f, "bad base64: {e}"),
            KeyProblem::PemLabel { found, expected } => {
                write!(f, "bad PEM label '{found}', expected '{expected}'")
            }
            KeyProblem::PemStructure(what) => write!(f, "bad PEM: {what}"),
            KeyProblem::NotEd25519 => {
                f.write_str("not an Ed25519 key (algorithm OID is not 1.3.101.112)")
            }
            KeyProblem::Der(e) => write!(f, "bad DER: {e}"),
            KeyProblem::NotOnCurve => f.write_str("bytes do not encode a point on edwards25519"),
            KeyProblem::PublicKeyMismatch => {
                f.write_str("embedded public key does not match the seed")
            }
        }
    }
}

/// A key input that could not be parsed: which key, which format, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 {kind} key ({format}): {problem}")]
pub struct KeyError {
    /// Public or private.
    pub kind: KeyKind,
    /// The format recognised or tried.
    pub format: KeyFormat,
    /// What is wrong.
    pub problem: KeyProblem,
}

fn key_err(kind: KeyKind, format: KeyFormat, problem: KeyProblem) -> KeyError {
    KeyError {
        kind,
        format,
        problem,
    }
}

/// Decodes base64 in any of the usual spellings (std / URL-safe, padded or not).
fn decode_b64(kind: KeyKind, text: &str) -> Result<Vec<u8>, KeyError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = if compact.contains(['-', '_']) {
        &B64_URL
    } else {
        &B64_STD
    };
    engine
        .decode(compact.as_bytes())
        .map_err(|e| key_err(kind, KeyFormat::Base64, KeyProblem::Base64(e.to_string())))
}

/// Strips PEM armour, checks the label and returns the DER bytes.
fn pem_body(kind: KeyKind, text: &str, expected: &'static str) -> Result<Vec<u8>, KeyError> {
    let pem = |p| key_err(kind, KeyFormat::Pem, p);
    let rest = text
        .strip_prefix("-----BEGIN ")
        .ok_or(pem(KeyProblem::PemStructure("missing '-----BEGIN' line")))?;
    let (label, rest) = rest
        .split_once("-----")
        .ok_or(pem(KeyProblem::PemStructure("unterminated BEGIN line")))?;
    if label != expected {
        return Err(pem(KeyProblem::PemLabel {
            found: label.to_string(),
            expected,
        }));
    }
    let end = format!("-----END {label}-----");
    let (body, tail) = rest
        .split_once(end.as_str())
        .ok_or(pem(KeyProblem::PemStructure("missing END line")))?;
    if !tail.trim().is_empty() {
        return Err(pem(KeyProblem::PemStructure("data after the END line")));
    }
    if body.contains(':') {
        return Err(pem(KeyProblem::PemStructure(
            "encrypted or header-carrying PEM is not supported",
        )));
    }
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64_STD
        .decode(compact.as_bytes())
        .map_err(|e| key_err(kind, KeyFormat::Pem, KeyProblem::Base64(e.to_string())))
}

fn public_from_raw(format: KeyFormat, raw: &[u8]) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; PUBLIC_KEY_LEN] = raw.try_into().map_err(|_| {
        key_err(
            KeyKind::Public,
            format,
            KeyProblem::Length {
                expected: "32",
                got: raw.len(),
            },
        )
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| key_err(KeyKind::Public, format, KeyProblem::NotOnCurve))
}

fn public_from_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_der(der).map_err(|e| {
        let problem = if der
            .windows(ED25519_OID_DER.len())
            .any(|w| w == ED25519_OID_DER)
        {
            KeyProblem::Der(e.to_string())
        } else {
            KeyProblem::NotEd25519
        };
        key_err(KeyKind::Public, KeyFormat::Der, problem)
    })
}

fn private_from_der(der: &[u8]) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_der(der).map_err(|e| {
        let problem = if !der
            .windows(ED25519_OID_DER.len())
            .any(|w| w == ED25519_OID_DER)
        {
            KeyProblem::NotEd25519
        } else if matches!(e, ed25519_dalek::pkcs8::Error::KeyMalformed) {
            KeyProblem::PublicKeyMismatch
        } else {
            KeyProblem::Der(e.to_string())
        };
        key_err(KeyKind::Private, KeyFormat::Der, problem)
    })
}

fn as_text(kind: KeyKind, input: &[u8]) -> Result<&str, KeyError> {
    std::str::from_utf8(input).map(str::trim).map_err(|_| {
        key_err(
            kind,
            KeyFormat::Raw,
            KeyProblem::NotText { len: input.len() },
        )
    })
}

/// Parses a public key: 32 raw bytes, base64 text of the 32 bytes (or of an SPKI DER), or PEM SPKI.
pub fn parse_public_key(input: &[u8]) -> Result<VerifyingKey, KeyError> {
    if input.len() == PUBLIC_KEY_LEN {
        return public_from_raw(KeyFormat::Raw, input);
    }
    let text = as_text(KeyKind::Public, input)?;
    if text.starts_with("-----") {
        return public_from_der(&pem_body(KeyKind::Public, text, "PUBLIC KEY")?);
    }
    let bytes = decode_b64(KeyKind::Public, text)?;
    match bytes.len() {
        PUBLIC_KEY_LEN => public_from_raw(KeyFormat::Base64, &bytes),
        n if n > PUBLIC_KEY_LEN && bytes.first() == Some(&0x30) => public_from_der(&bytes),
        n => Err(key_err(
            KeyKind::Public,
            KeyFormat::Base64,
            KeyProblem::Length {
                expected: "32 (raw key) or an SPKI DER",
                got: n,
            },
        )),
    }
}

fn private_from_raw(format: KeyFormat, raw: &[u8]) -> Result<SigningKey, KeyError> {
    match raw.len() {
        SEED_LEN => {
            let mut seed = [0u8; SEED_LEN];
            seed.copy_from_slice(raw);
            Ok(SigningKey::from_bytes(&seed))
        }
        // libsodium / NaCl layout: seed || public key.
        64 => {
            let mut seed = [0u8; SEED_LEN];
            seed.copy_from_slice(&raw[..SEED_LEN]);
            let key = SigningKey::from_bytes(&seed);
            if key.verifying_key().as_bytes()[..] != raw[SEED_LEN..] {
                return Err(key_err(
                    KeyKind::Private,
                    format,
                    KeyProblem::PublicKeyMismatch,
                ));
            }
            Ok(key)
        }
        n => Err(key_err(
            KeyKind::Private,
            format,
            KeyProblem::Length {
                expected: "32 (seed) or 64 (seed || public key)",
                got: n,
            },
        )),
    }
}

/// Parses a private key: a raw 32-byte seed, base64 text of the seed (or of a PKCS#8 DER), or PEM PKCS#8.
pub fn parse_private_key(input: &[u8]) -> Result<SigningKey, KeyError> {
    // 64 bytes is either raw seed || public key or the base64 of a PKCS#8 DER: text is printable.
    if input.len() == SEED_LEN || (input.len() == 64 && !input.iter().all(u8::is_ascii_graphic)) {
        return private_from_raw(KeyFormat::Raw, input);
    }
    let text = as_text(KeyKind::Private, input)?;
    if text.starts_with("-----") {
        return private_from_der(&pem_body(KeyKind::Private, text, "PRIVATE KEY")?);
    }
    let bytes = decode_b64(KeyKind::Private, text)?;
    match bytes.len() {
        SEED_LEN | 64 => private_from_raw(KeyFormat::Base64, &bytes),
        n if n > SEED_LEN && bytes.first() == Some(&0x30) => private_from_der(&bytes),
        n => Err(key_err(
            KeyKind::Private,
            KeyFormat::Base64,
            KeyProblem::Length {
                expected: "32 (seed), 64 (seed || public key) or a PKCS#8 DER",
                got: n,
            },
        )),
    }
}

/// Strict verification; false for any malformed or wrong signature.
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    match Signature::from_slice(sig) {
        Ok(sig) => key.verify_strict(msg, &sig).is_ok(),
        Err(_) => false,
    }
}

/// Signs `msg` (deterministic, RFC 8032).
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(msg).to_bytes()
}

/// A fresh signing key from the operating system's RNG.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The public key as standard padded base64 of its 32 bytes.
pub fn public_key_to_base64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// The public key as PEM SPKI (RFC 8410), `\n` line endings.
pub fn public_key_to_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    to_pem("PUBLIC KEY", &der)
}

/// The private key as PEM PKCS#8 v1 (RFC 8410), `\n` line endings.
pub fn private_key_to_pem(key: &SigningKey) -> String {
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    let pem = to_pem("PRIVATE KEY", &der);
    // The DER copy holds the seed: wipe it rather than leave it to the allocator.
    zeroize_vec(&mut der);
    pem
}

fn zeroize_vec(v: &mut [u8]) {
    for b in v.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(v);
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `[L]P == 0`, computed in variable time (inputs are public): `[L-1]P + P`.
fn is_torsion_free(p: &EdwardsPoint) -> bool {
    let minus_one = -Scalar::ONE;
    let l_minus_one_p =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&minus_one, p, &Scalar::ZERO);
    (l_minus_one_p + p).is_identity()
}

/// A parsed public key with the facts batch verification needs, computed once.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: VerifyingKey,
    torsion_free: bool,
}

impl PublicKey {
    /// Wraps a verifying key (one scalar multiplication to classify its torsion).
    pub fn new(key: VerifyingKey) -> Self {
        let torsion_free = is_torsion_free(&key.to_edwards());
        Self { key, torsion_free }
    }
    /// Wraps a key without classifying its torsion (treated as having torsion: batch modes
    /// then verify it singly, which is always correct, just not batched).
    pub fn unclassified(key: VerifyingKey) -> Self {
        Self {
            key,
            torsion_free: false,
        }
    }
    /// Parses any supported public key format.
    pub fn parse(input: &[u8]) -> Result<Self, KeyError> {
        parse_public_key(input).map(Self::new)
    }
    /// The wrapped dalek key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
    /// Raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.key.to_bytes()
    }
    /// Strict verification (same as [`verify`]).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify(&self.key, msg, sig)
    }
    /// Whether the key has no small-order component (batchable without fallback).
    pub fn is_torsion_free(&self) -> bool {
        self.torsion_free
    }
}

impl From<VerifyingKey> for PublicKey {
    fn from(key: VerifyingKey) -> Self {
        Self::new(key)
    }
}

/// Outcome of the cheap checks done before an item may join a batch.
enum Precheck {
    /// Strict verification would reject: no need to compute anything else.
    Reject,
    /// Verify on its own (key with torsion: the batch cannot see the difference).
    Single,
    /// Safe to batch: the batch decides exactly as strict would.
    Batch(Signature),
}

fn precheck(key: &PublicKey, sig: &[u8], check_r_torsion: bool) -> Precheck {
    let Ok(sig) = Signature::from_slice(sig) else {
        return Precheck::Reject;
    };
    if key.key.is_weak() {
        return Precheck::Reject;
    }
    if Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())).is_none() {
        return Precheck::Reject;
    }
    let compressed = CompressedEdwardsY(*sig.r_bytes());
    let Some(r) = compressed.decompress() else {
        return Precheck::Reject;
    };
    // Non-canonical encodings are y >= p (the x = 0 sign-bit case only decodes to small-order
    // points, rejected just below); a byte compare is much cheaper than re-compressing.
    if !y_is_canonical(sig.r_bytes()) || r.is_small_order() {
        return Precheck::Reject;
    }
    if !key.torsion_free {
        return Precheck::Single;
    }
    if check_r_torsion && !is_torsion_free(&r) {
        // [s]B - [k]A is torsion-free when A is, so it cannot equal an R with torsion.
        return Precheck::Reject;
    }
    Precheck::Batch(sig)
}

/// True if the y coordinate in a point encoding is below p = 2^255 - 19.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[0] >= 0xed)
}

/// Below this size a batch does not pay for itself; verify items one by one.
const MIN_BATCH: usize = 4;

struct Pending<'a> {
    index: usize,
    key: VerifyingKey,
    msg: &'a [u8],
    sig: Signature,
}

fn settle(items: &[Pending<'_>], out: &mut [bool]) {
    if items.is_empty() {
        return;
    }
    if items.len() < MIN_BATCH {
        for p in items {
            out[p.index] = p.key.verify_strict(p.msg, &p.sig).is_ok();
        }
        return;
    }
    let msgs: Vec<&[u8]> = items.iter().map(|p| p.msg).collect();
    let sigs: Vec<Signature> = items.iter().map(|p| p.sig).collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|p| p.key).collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        for p in items {
            out[p.index] = true;
        }
        return;
    }
    // Bisect: bad items are usually few, so halves that pass settle many items at once.
    let (a, b) = items.split_at(items.len() / 2);
    settle(a, out);
    settle(b, out);
}

fn batch_with_prechecks(items: &[(&PublicKey, &[u8], &[u8])], check_r_torsion: bool) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    let mut pending = Vec::with_capacity(items.len());
    for (index, (key, msg, sig)) in items.iter().enumerate() {
        match precheck(key, sig, check_r_torsion) {
            Precheck::Reject => {}
            Precheck::Single => out[index] = verify(&key.key, msg, sig),
            Precheck::Batch(sig) => pending.push(Pending {
                index,
                key: key.key,
                msg,
                sig,
            }),
        }
    }
    settle(&pending, &mut out);
    out
}

/// How [`verify_batch_keys_with`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// Exactly per-item strict [`verify`], for every input (the default).
    #[default]
    Exact,
    /// Exact, but through dalek's batch equation with a torsion check on every `R`; kept for
    /// measurement: the `R` check costs about as much as the batch saves.
    ExactBatched,
    /// dalek's batch equation without the per-`R` torsion check: may accept a signature whose `R`
    /// carries a small-order component, which strict rejects. Only the private key holder can
    /// make such a signature (it must satisfy the prime-order part of the equation), so it is a
    /// malleability difference, not a forgery; everything else is decided exactly as strict.
    Fast,
}

impl BatchMode {
    /// Every mode.
    pub const ALL: [BatchMode; 3] = [BatchMode::Exact, BatchMode::ExactBatched, BatchMode::Fast];

    /// The mode's name: "exact", "exact-batched", "fast".
    pub fn as_str(self) -> &'static str {
        match self {
            BatchMode::Exact => "exact",
            BatchMode::ExactBatched => "exact-batched",
            BatchMode::Fast => "fast",
        }
    }
}

impl std::str::FromStr for BatchMode {
    type Err = String;

    /// Parses "exact", "exact-batched" or "fast".
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&BatchMode::ALL, BatchMode::as_str, "mode", s)
    }
}

/// The key of one batch item: parsed beforehand ([`PublicKey`]), or bare.
#[derive(Clone, Debug)]
pub enum BatchKey {
    /// Parsed once by the caller, torsion already classified.
    Parsed(PublicKey),
    /// A bare key: classified here, once per distinct key (a scalar multiplication each).
    Bare(VerifyingKey),
}

/// Verifies items whose keys are a mix of parsed and bare keys, in `mode`; the answer is the
/// same as [`verify_batch_keys_with`] over the parsed forms.
pub fn verify_batch_mixed(items: &[(BatchKey, &[u8], &[u8])], mode: BatchMode) -> Vec<bool> {
    let mut bare: HashMap<[u8; PUBLIC_KEY_LEN], PublicKey> = HashMap::new();
    for (k, _, _) in items {
        if let BatchKey::Bare(vk) = k {
            bare.entry(vk.to_bytes()).or_insert_with(|| {
                if mode == BatchMode::Exact {
                    // Exact mode never looks at torsion: skip the classification.
                    PublicKey::unclassified(*vk)
                } else {
                    PublicKey::new(*vk)
                }
            });
        }
    }
    let refs: Vec<(&PublicKey, &[u8], &[u8])> = items
        .iter()
        .filter_map(|(k, m, s)| {
            let key = match k {
                BatchKey::Parsed(p) => p,
                BatchKey::Bare(vk) => bare.get(vk.as_bytes())?,
            };
            Some((key, *m, *s))
        })
        .collect();
    verify_batch_keys_with(&refs, mode)
}

/// Verifies many signatures in the given mode.
pub fn verify_batch_keys_with(items: &[(&PublicKey, &[u8], &[u8])], mode: BatchMode) -> Vec<bool> {
    match mode {
        BatchMode::Exact => items.iter().map(|(k, m, s)| verify(&k.key, m, s)).collect(),
        BatchMode::ExactBatched => batch_with_prechecks(items, true),
        BatchMode::Fast => batch_with_prechecks(items, false),
    }
}

/// Verifies many signatures; the result equals per-item [`verify`] for every input.
pub fn verify_batch_keys(items: &[(&PublicKey, &[u8], &[u8])]) -> Vec<bool> {
    verify_batch_keys_with(items, BatchMode::Exact)
}

/// Verifies many signatures with bare dalek keys; equals per-item [`verify`].
pub fn verify_batch(items: &[(&VerifyingKey, &[u8], &[u8])]) -> Vec<bool> {
    items.iter().map(|(k, m, s)| verify(k, m, s)).collect()
}

/// [`verify_batch_keys_with`] over bare dalek keys (torsion of each distinct key computed once).
pub fn verify_batch_with(items: &[(&VerifyingKey, &[u8], &[u8])], mode: BatchMode) -> Vec<bool> {
    if mode == BatchMode::Exact {
        return verify_batch(items);
    }
    let mut classified: HashMap<[u8; PUBLIC_KEY_LEN], PublicKey> = HashMap::new();
    for (key, _, _) in items {
        classified
            .entry(key.to_bytes())
            .or_insert_with(|| PublicKey::new(**key));
    }
    let refs: Vec<(&PublicKey, &[u8], &[u8])> = items
        .iter()
        .filter_map(|(key, msg, sig)| classified.get(key.as_bytes()).map(|k| (k, *msg, *sig)))
        .collect();
    verify_batch_keys_with(&refs, mode)
}

/// Parsed public keys by key id: lock-free reads, copy-on-write updates (for the gateway).
#[derive(Default)]
pub struct KeyRing {
    keys: ArcSwap<HashMap<String, Arc<PublicKey>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("len", &self.len()).finish()
    }
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        Self::default()
    }
    /// The key for `keyid`, if any (one atomic load, no lock).
    pub fn get(&self, keyid: &str) -> Option<Arc<PublicKey>> {
        self.keys.load().get(keyid).cloned()
    }
    /// Adds or replaces one key.
    pub fn insert(&self, keyid: &str, key: PublicKey) {
        let key = Arc::new(key);
        self.keys.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            next.insert(keyid.to_string(), Arc::clone(&key));
            next
        });
    }
    /// Removes one key; true if it was present.
    pub fn remove(&self, keyid: &str) -> bool {
        let mut removed = false;
        self.keys.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            removed = next.remove(keyid).is_some();
            next
        });
        removed
    }
    /// Swaps in a whole new set of keys atomically (a control-plane snapshot).
    pub fn replace(&self, keys: HashMap<String, PublicKey>) {
        self.keys.store(Arc::new(
            keys.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        ));
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.load().len()
    }
    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let sk = key(7);
        let pk = sk.verifying_key();
        let sig = sign(&sk, b"hello");
        assert!(verify(&pk, b"hello", &sig));
        assert!(!verify(&pk, b"hellp", &sig));
        assert!(!verify(&pk, b"hello", &sig[..63]));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!verify(&pk, b"hello", &bad));
    }

    #[test]
    fn mixed_batches_equal_singles_in_every_mode() {
        let keys: Vec<SigningKey> = (1..=4).map(key).collect();
        let msgs: Vec<Vec<u8>> = (0..8).map(|i| format!("m{i}").into_bytes()).collect();
        let mut sigs: Vec<[u8; SIGNATURE_LEN]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| sign(&keys[i % 4], m))
            .collect();
        sigs[5][0] ^= 1;
        let items: Vec<(BatchKey, &[u8], &[u8])> = msgs
            .iter()
            .zip(&sigs)
            .enumerate()
            .map(|(i, (m, s))| {
                let vk = keys[i % 4].verifying_key();
                let k = if i % 2 == 0 {
                    BatchKey::Parsed(PublicKey::new(vk))
                } else {
                    BatchKey::Bare(vk)
                };
                (k, m.as_slice(), s.as_slice())
            })
            .collect();
        let want: Vec<bool> = (0..8).map(|i| i != 5).collect();
        for mode in BatchMode::ALL {
            assert_eq!(verify_batch_mixed(&items, mode), want, "{mode:?}");
            assert_eq!(mode.as_str().parse::<BatchMode>(), Ok(mode));
        }
        assert!("quick".parse::<BatchMode>().is_err());
    }

    #[test]
    fn key_formats_roundtrip() {
        let sk = key(3);
        let pk = sk.verifying_key();
        let b64 = public_key_to_base64(&pk);
        let pem = public_key_to_pem(&pk);
        assert_eq!(parse_public_key(pk.as_bytes()), Ok(pk));
        assert_eq!(parse_public_key(b64.as_bytes()), Ok(pk));
        assert_eq!(
            parse_public_key(b64.trim_end_matches('=').as_bytes()),
            Ok(pk)
        );
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pk.as_bytes());
        assert_eq!(parse_public_key(url.as_bytes()), Ok(pk));
        assert_eq!(parse_public_key(pem.as_bytes()), Ok(pk));
        let spki_b64 = pem.lines().nth(1).unwrap_or_default();
        assert_eq!(parse_public_key(spki_b64.as_bytes()), Ok(pk));
        let priv_pem = private_key_to_pem(&sk);
        assert_eq!(
            parse_private_key(priv_pem.as_bytes()).map(|k| k.to_bytes()),
            Ok(sk.to_bytes())
        );
        assert_eq!(
            parse_private_key(sk.as_bytes()).map(|k| k.to_bytes()),
            Ok(sk.to_bytes())
        );
        let seed_b64 = base64::engine::general_purpose::STANDARD.encode(sk.as_bytes());
        assert_eq!(
            parse_private_key(seed_b64.as_bytes()).map(|k| k.to_bytes()),
            Ok(sk.to_bytes())
        );
        let mut kp = sk.to_bytes().to_vec();
        kp.extend_from_slice(pk.as_bytes());
        assert_eq!(
            parse_private_key(&kp).map(|k| k.to_bytes()),
            Ok(sk.to_bytes())
        );
        kp[40] ^= 1;
        assert_eq!(
            parse_private_key(&kp).map_err(|e| e.problem),
            Err(KeyProblem::PublicKeyMismatch)
        );
    }

    #[test]
    fn malformed_keys_name_the_problem() {
        let e = parse_public_key(b"abc").unwrap_err();
        assert_eq!(e.format, KeyFormat::Base64);
        assert!(
            matches!(e.problem, KeyProblem::Length { got: 2, .. }),
            "{e}"
        );
        let e = parse_public_key(b"!!!!not base64!!!!").unwrap_err();
        assert!(matches!(e.problem, KeyProblem::Base64(_)), "{e}");
        let e = parse_public_key(
            b"-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(matches!(e.problem, KeyProblem::PemLabel { .. }), "{e}");
        assert!(e.to_string().contains("RSA PUBLIC KEY"));
        let e = parse_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAA\n").unwrap_err();
        assert_eq!(e.problem, KeyProblem::PemStructure("missing END line"));
        // X25519 SPKI (OID 1.3.101.110): right shape, wrong algorithm.
        let x25519 = "MCowBQYDK2VuAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
        let e = parse_public_key(x25519.as_bytes()).unwrap_err();
        assert_eq!(e.problem, KeyProblem::NotEd25519, "{e}");
        let e = parse_public_key(&[0xffu8; 33]).unwrap_err();
        assert!(matches!(e.problem, KeyProblem::NotText { len: 33 }), "{e}");
        let e =
            parse_private_key(public_key_to_pem(&key(1).verifying_key()).as_bytes()).unwrap_err();
        assert_eq!(e.kind, KeyKind::Private);
        assert!(matches!(e.problem, KeyProblem::PemLabel { .. }), "{e}");
        // y = 2 is not on the curve.
        let mut raw = [0u8; 32];
        raw[0] = 2;
        assert_eq!(
            parse_public_key(&raw).map_err(|e| e.problem),
            Err(KeyProblem::NotOnCurve)
        );
    }

    /// A signature by `sk` whose R carries the torsion point `t`: strict rejects it, while a
    /// plain dalek batch accepts it whenever the batch coefficient kills `t`.
    fn torsion_signature(sk: &SigningKey, msg: &[u8], t: &EdwardsPoint) -> [u8; 64] {
        use sha2::{Digest, Sha512};
        let a = sk.to_scalar();
        let r_scalar = Scalar::from(12345u64);
        let r_point = ED25519_BASEPOINT_POINT * r_scalar + t;
        let r_bytes = r_point.compress().to_bytes();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(sk.verifying_key().as_bytes())
                .chain_update(msg),
        );
        let s = r_scalar + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn batch_rejects_torsion_r_like_strict() {
        let sk = key(9);
        let pk = sk.verifying_key();
        let mut sigs = Vec::new();
        let msgs: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 10]).collect();
        for (i, m) in msgs.iter().enumerate() {
            sigs.push(torsion_signature(&sk, m, &EIGHT_TORSION[4 * (i % 2)]));
        }
        let items: Vec<(&VerifyingKey, &[u8], &[u8])> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (&pk, m.as_slice(), s.as_slice()))
            .collect();
        let singles: Vec<bool> = items.iter().map(|(k, m, s)| verify(k, m, s)).collect();
        // Odd items have an order-2 torsion in R: strict rejects, even items are valid.
        assert_eq!(singles, (0..16).map(|i| i % 2 == 0).collect::<Vec<_>>());
        assert_eq!(verify_batch(&items), singles);
        assert_eq!(verify_batch_with(&items, BatchMode::ExactBatched), singles);
        // Fast may accept the signer-crafted torsion items, never anything else strict rejects.
        let fast = verify_batch_with(&items, BatchMode::Fast);
        for (i, (f, s)) in fast.iter().zip(&singles).enumerate() {
            assert!(*f || !*s, "fast rejected a valid item {i}");
            assert!(
                i % 2 == 1 || f == s,
                "fast differs on a torsion-free item {i}"
            );
        }
    }

    #[test]
    fn batch_with_mixed_order_key_matches_strict() {
        // A key with a torsion component: A = aB + T. Signatures by `a` fail the cofactorless
        // check unless k·T = 0, and the batch must agree item by item.
        let sk = key(5);
        let a = sk.to_scalar();
        let a_point = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1];
        let Ok(vk) = VerifyingKey::from_bytes(&a_point.compress().to_bytes()) else {
            panic!("mixed-order point must decode")
        };
        assert!(!PublicKey::new(vk).is_torsion_free());
        use sha2::{Digest, Sha512};
        let msgs: Vec<Vec<u8>> = (0..24u8).map(|i| vec![i; 3]).collect();
        let sigs: Vec<[u8; 64]> = msgs
            .iter()
            .map(|m| {
                let r = Scalar::from(777u64);
                let r_bytes = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
                let k = Scalar::from_hash(
                    Sha512::new()
                        .chain_update(r_bytes)
                        .chain_update(vk.as_bytes())
                        .chain_update(m),
                );
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r_bytes);
                sig[32..].copy_from_slice((r + k * a).as_bytes());
                sig
            })
            .collect();
        let items: Vec<(&VerifyingKey, &[u8], &[u8])> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (&vk, m.as_slice(), s.as_slice()))
            .collect();
        let singles: Vec<bool> = items.iter().map(|(k, m, s)| verify(k, m, s)).collect();
        for mode in MODES {
            assert_eq!(verify_batch_with(&items, mode), singles, "{mode:?}");
        }
    }

    const MODES: [BatchMode; 3] = [BatchMode::Exact, BatchMode::ExactBatched, BatchMode::Fast];

    #[test]
    fn batch_finds_bad_items() {
        let keys: Vec<SigningKey> = (1..=20u8).map(key).collect();
        let pks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 32]).collect();
        let mut sigs: Vec<[u8; 64]> = keys.iter().zip(&msgs).map(|(k, m)| sign(k, m)).collect();
        sigs[3][5] ^= 0x10;
        sigs[17][40] ^= 0x01;
        let items: Vec<(&VerifyingKey, &[u8], &[u8])> = pks
            .iter()
            .zip(&msgs)
            .zip(&sigs)
            .map(|((k, m), s)| (k, m.as_slice(), s.as_slice()))
            .collect();
        let expected: Vec<bool> = (0..20).map(|i| i != 3 && i != 17).collect();
        for mode in MODES {
            assert_eq!(verify_batch_with(&items, mode), expected, "{mode:?}");
            assert!(verify_batch_with(&[], mode).is_empty());
        }
    }

    #[test]
    fn canonical_y_matches_recompression() {
        // Every y >= p that decodes must re-encode differently; every y < p re-encodes the same.
        for low in 0xe0u8..=0xff {
            for sign in [0u8, 0x80] {
                let mut bytes = [0xffu8; 32];
                bytes[0] = low;
                bytes[31] = 0x7f | sign;
                let c = CompressedEdwardsY(bytes);
                if let Some(p) = c.decompress() {
                    let same = p.compress() == c;
                    assert!(
                        !same || y_is_canonical(&bytes) || p.is_small_order(),
                        "{low:x}"
                    );
                    assert!(
                        same || !y_is_canonical(&bytes) || p.is_small_order(),
                        "{low:x}"
                    );
                }
            }
        }
        assert!(y_is_canonical(&[0u8; 32]));
    }

    #[test]
    fn key_ring_get_insert_replace() {
        let ring = KeyRing::new();
        assert!(ring.get("a").is_none());
        ring.insert("a", PublicKey::new(key(1).verifying_key()));
        assert_eq!(
            ring.get("a").map(|k| k.to_bytes()),
            Some(key(1).verifying_key().to_bytes())
        );
        assert!(ring.remove("a"));
        assert!(!ring.remove("a"));
        let mut m = HashMap::new();
        m.insert("b".to_string(), PublicKey::new(key(2).verifying_key()));
        ring.replace(m);
        assert_eq!(ring.len(), 1);
        assert!(ring.get("b").is_some());
    }

    #[test]
    #[ignore = "timing report, run by hand"]
    fn timing_report() {
        let keys: Vec<SigningKey> = (1..=64u8).map(key).collect();
        let pks: Vec<PublicKey> = keys
            .iter()
            .map(|k| PublicKey::new(k.verifying_key()))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 32]).collect();
        let sigs: Vec<[u8; 64]> = keys.iter().zip(&msgs).map(|(k, m)| sign(k, m)).collect();
        let items: Vec<(&PublicKey, &[u8], &[u8])> = pks
            .iter()
            .zip(&msgs)
            .zip(&sigs)
            .map(|((k, m), s)| (k, m.as_slice(), s.as_slice()))
            .collect();
        let t = std::time::Instant::now();
        for _ in 0..20 {
            for (k, m, s) in &items {
                assert!(k.verify(m, s));
            }
        }
        println!("single: {:?}/sig", t.elapsed() / (20 * 64));
        for mode in MODES {
            let t = std::time::Instant::now();
            for _ in 0..20 {
                assert!(verify_batch_keys_with(&items, mode).iter().all(|b| *b));
            }
            println!("{mode:?}: {:?}/sig", t.elapsed() / (20 * 64));
        }
        let t = std::time::Instant::now();
        let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
        let ss: Vec<Signature> = sigs.iter().map(Signature::from_bytes).collect();
        let ms: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
        for _ in 0..20 {
            assert!(ed25519_dalek::verify_batch(&ms, &ss, &vks).is_ok());
        }
        println!("dalek batch: {:?}/sig", t.elapsed() / (20 * 64));
        let p = ED25519_BASEPOINT_POINT * Scalar::from(99u64);
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(is_torsion_free(&p));
        }
        println!("torsion check: {:?}", t.elapsed() / 1000);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Batch == singles on a mix of good, tampered, truncated and torsion-carrying items.
            #[test]
            fn batch_equals_singles(
                seeds in proptest::collection::vec((any::<u8>(), any::<[u8; 8]>(), 0u8..6, any::<u8>()), 0..24)
            ) {
                let mut keys = Vec::new();
                let mut msgs = Vec::new();
                let mut sigs: Vec<Vec<u8>> = Vec::new();
                for (seed, msg, mode, pos) in &seeds {
                    let sk = key(*seed);
                    let mut sig = sign(&sk, msg).to_vec();
                    match mode {
                        0 | 1 => {}
                        2 => sig[*pos as usize % 64] ^= 1 << (pos % 8),
                        3 => sig.truncate(*pos as usize % 64),
                        4 => sig = torsion_signature(&sk, msg, &EIGHT_TORSION[(*pos % 8) as usize]).to_vec(),
                        _ => sig[32..].copy_from_slice(&[0xff; 32]),
                    }
                    keys.push(sk.verifying_key());
                    msgs.push(msg.to_vec());
                    sigs.push(sig);
                }
                let items: Vec<(&VerifyingKey, &[u8], &[u8])> = keys.iter().zip(&msgs).zip(&sigs)
                    .map(|((k, m), s)| (k, m.as_slice(), s.as_slice())).collect();
                let singles: Vec<bool> = items.iter().map(|(k, m, s)| verify(k, m, s)).collect();
                prop_assert_eq!(&verify_batch(&items), &singles);
                prop_assert_eq!(&verify_batch_with(&items, BatchMode::ExactBatched), &singles);
                let fast = verify_batch_with(&items, BatchMode::Fast);
                for (i, (f, s)) in fast.iter().zip(&singles).enumerate() {
                    // Only mode 4 (signer-crafted torsion in R) may differ, and only towards accept.
                    prop_assert!(f == s || (seeds[i].2 == 4 && *f && !*s), "item {}", i);
                }
            }

            /// Any base64 spelling of a key parses to the same key.
            #[test]
            fn base64_spellings_parse(seed in any::<u8>()) {
                let pk = key(seed).verifying_key();
                for engine in [
                    base64::engine::general_purpose::STANDARD,
                    base64::engine::general_purpose::STANDARD_NO_PAD,
                    base64::engine::general_purpose::URL_SAFE,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ] {
                    prop_assert_eq!(parse_public_key(engine.encode(pk.as_bytes()).as_bytes()), Ok(pk));
                }
            }
        }
    }
}
