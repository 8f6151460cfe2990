//! Ed25519 signing and verification over the exact framed value bytes.
//!
//! Keys are standard files: signing keys are PKCS#8 PEM (what `openssl genpkey -algorithm ed25519`
//! writes), public keys are SPKI PEM (what `openssl pkey -pubout` writes). Secret material is
//! zeroized when dropped.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::ALGORITHM_OID;
use ed25519_dalek::pkcs8::spki::SubjectPublicKeyInfoRef;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, Document, EncodePublicKey, PrivateKeyInfo, SecretDocument,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::ErrorClass;

/// Algorithm name carried in the `vigil-alg` header.
pub const ALGORITHM: &str = "ed25519";
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a raw Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Longest accepted key id in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
/// DER of PKCS#8 v1 `PrivateKeyInfo { version 0, algorithm 1.3.101.112, OCTET STRING(OCTET STRING(seed)) }` up to the seed.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Failure to load a key or to verify a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The text is not PEM, or not the expected PEM label, or its DER is malformed.
    #[error("invalid pem: {0}")]
    InvalidPem(String),
    /// The PEM is encrypted (`ENCRYPTED PRIVATE KEY`); keys must be stored unencrypted with file permissions.
    #[error("encrypted private keys are not supported")]
    EncryptedKey,
    /// The key is for another algorithm (e.g. RSA, P-256, X25519).
    #[error("wrong key algorithm {0}, expected ed25519 (1.3.101.112)")]
    WrongAlgorithm(String),
    /// The key bytes are malformed, or the public key is a weak (small-order) point.
    #[error("invalid ed25519 key: {0}")]
    InvalidKey(String),
    /// A key file could not be read.
    #[error("cannot read key file {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A signature is not 64 bytes.
    #[error("signature is {0} bytes, expected {SIGNATURE_LEN}")]
    BadSignatureLength(usize),
    /// A raw public key is not 32 bytes.
    #[error("public key is {0} bytes, expected {PUBLIC_KEY_LEN}")]
    BadPublicKeyLength(usize),
    /// A key id is empty, too long, or has characters outside `[A-Za-z0-9._:-]`.
    #[error("invalid key id")]
    InvalidKeyId,
    /// The signature does not verify over the bytes under the key.
    #[error("signature does not verify")]
    InvalidSignature,
}

impl SigningError {
    /// Returns how a consumer must treat this error: a failed verification is `rejected`,
    /// malformed signature material from the wire is `bad_data`, unreadable files are `internal`.
    pub fn class(&self) -> ErrorClass {
        match self {
            SigningError::InvalidSignature => ErrorClass::Rejected,
            SigningError::Io { .. } => ErrorClass::Internal,
            _ => ErrorClass::BadData,
        }
    }
}

/// Identifier of a signing key, as carried in `vigil-key-id` and used as the `vigil.keys` record key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Validates a key id: 1 to 128 bytes of `[A-Za-z0-9._:-]` (safe in headers, file names, URLs).
    pub fn new(id: impl Into<String>) -> Result<Self, SigningError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(KeyId(id))
        } else {
            Err(SigningError::InvalidKeyId)
        }
    }

    /// Returns the default id of a public key: `ed25519-` plus the first 8 bytes of SHA-256 of the raw key, in hex.
    pub fn for_public_key(key: &PublicKey) -> Self {
        let digest = Sha256::digest(key.to_bytes());
        KeyId(format!("ed25519-{}", hex::encode(&digest[..8])))
    }

    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Checks the length of signature bytes from the wire.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SigningError> {
        <[u8; SIGNATURE_LEN]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| SigningError::BadSignatureLength(bytes.len()))
    }

    /// Wraps exactly 64 bytes.
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Signature(bytes)
    }

    /// Returns the raw bytes (the `vigil-sig` header value).
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }

    /// Returns the raw bytes borrowed.
    pub fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }

    /// Returns lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, SigningError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| SigningError::Io {
            path: path.display().to_string(),
            source,
        })
}

fn map_pkcs8_error(err: ed25519_dalek::pkcs8::Error) -> SigningError {
    use ed25519_dalek::pkcs8::{Error, spki};
    match err {
        Error::PublicKey(spki::Error::OidUnknown { oid }) => {
            SigningError::WrongAlgorithm(oid.to_string())
        }
        Error::KeyMalformed | Error::PublicKey(spki::Error::KeyMalformed) => {
            SigningError::InvalidKey("key data malformed".into())
        }
        other => SigningError::InvalidPem(other.to_string()),
    }
}

fn check_label(found: &str, expected: &str) -> Result<(), SigningError> {
    if found == "ENCRYPTED PRIVATE KEY" {
        return Err(SigningError::EncryptedKey);
    }
    if found != expected {
        return Err(SigningError::InvalidPem(format!(
            "expected {expected}, found {found}"
        )));
    }
    Ok(())
}

/// Signs framed event values with one Ed25519 key.
#[derive(Clone)]
pub struct EventSigner {
    key: SigningKey,
    public: PublicKey,
    key_id: KeyId,
}

impl fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl EventSigner {
    /// Loads a PKCS#8 PEM signing key; the key id defaults to [`KeyId::for_public_key`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SigningError> {
        let (label, doc) =
            SecretDocument::from_pem(pem).map_err(|e| SigningError::InvalidPem(e.to_string()))?;
        check_label(label, PRIVATE_KEY_LABEL)?;
        // Checked here because the library's own error names the expected OID, not the found one.
        let info = PrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| SigningError::InvalidPem(e.to_string()))?;
        if info.algorithm.oid != ALGORITHM_OID {
            return Err(SigningError::WrongAlgorithm(info.algorithm.oid.to_string()));
        }
        let key = SigningKey::from_pkcs8_der(doc.as_bytes()).map_err(map_pkcs8_error)?;
        Ok(Self::from_signing_key(key))
    }

    /// Loads a PKCS#8 PEM signing key file; the file contents are zeroized after parsing.
    pub fn from_pkcs8_pem_file(path: impl AsRef<Path>) -> Result<Self, SigningError> {
        let text = read_secret_file(path.as_ref())?;
        Self::from_pkcs8_pem(&text)
    }

    /// Builds a signer from a 32-byte seed (RFC 8032 secret key); for tests and vectors.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut OsRng))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey(key.verifying_key());
        let key_id = KeyId::for_public_key(&public);
        EventSigner {
            key,
            public,
            key_id,
        }
    }

    /// Replaces the key id (e.g. with the id the key registry assigned).
    pub fn with_key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = key_id;
        self
    }

    /// Returns the key id sent in `vigil-key-id`.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Returns the public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs exactly `value` (the framed Avro bytes that are sent).
    pub fn sign(&self, value: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.key.sign(value).to_bytes())
    }

    /// Returns the key as PKCS#8 v1 PEM (zeroized on drop), byte-identical to what
    /// `openssl genpkey -algorithm ed25519` writes.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, SigningError> {
        // ed25519-dalek writes PKCS#8 v2 (with the public key); openssl and most tools write v1:
        // a fixed 16-byte DER prefix and the 32-byte seed.
        let mut der = Zeroizing::new(Vec::with_capacity(PKCS8_V1_PREFIX.len() + 32));
        der.extend_from_slice(&PKCS8_V1_PREFIX);
        der.extend_from_slice(self.key.as_bytes());
        let doc = SecretDocument::try_from(der.as_slice())
            .map_err(|e| SigningError::InvalidPem(e.to_string()))?;
        doc.to_pem(PRIVATE_KEY_LABEL, LineEnding::LF)
            .map_err(|e| SigningError::InvalidPem(e.to_string()))
    }
}

/// An Ed25519 public key that is not a weak (small-order) point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.to_bytes()))
    }
}

impl PublicKey {
    /// Loads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<Self, SigningError> {
        let (label, doc) =
            Document::from_pem(pem).map_err(|e| SigningError::InvalidPem(e.to_string()))?;
        check_label(label, PUBLIC_KEY_LABEL)?;
        let info = SubjectPublicKeyInfoRef::try_from(doc.as_bytes())
            .map_err(|e| SigningError::InvalidPem(e.to_string()))?;
        if info.algorithm.oid != ALGORITHM_OID {
            return Err(SigningError::WrongAlgorithm(info.algorithm.oid.to_string()));
        }
        let key = VerifyingKey::from_public_key_der(doc.as_bytes()).map_err(|e| match e {
            ed25519_dalek::pkcs8::spki::Error::OidUnknown { oid } => {
                SigningError::WrongAlgorithm(oid.to_string())
            }
            other => SigningError::InvalidKey(other.to_string()),
        })?;
        Self::checked(key)
    }

    /// Loads an SPKI PEM public key file.
    pub fn from_spki_pem_file(path: impl AsRef<Path>) -> Result<Self, SigningError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_spki_pem(&text)
    }

    /// Parses a raw 32-byte key (as stored in `KeyStatus.public_key`).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SigningError> {
        let raw = <[u8; PUBLIC_KEY_LEN]>::try_from(bytes)
            .map_err(|_| SigningError::BadPublicKeyLength(bytes.len()))?;
        let key =
            VerifyingKey::from_bytes(&raw).map_err(|e| SigningError::InvalidKey(e.to_string()))?;
        Self::checked(key)
    }

    fn checked(key: VerifyingKey) -> Result<Self, SigningError> {
        // Small-order keys verify forged signatures under lenient checks; refusing them at load
        // time also makes batch and single verification agree.
        if key.is_weak() {
            return Err(SigningError::InvalidKey(
                "weak (small-order) public key".into(),
            ));
        }
        Ok(PublicKey(key))
    }

    /// Returns the raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Returns the key as SPKI PEM, as `openssl pkey -pubout` would write it.
    pub fn to_spki_pem(&self) -> Result<String, SigningError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SigningError::InvalidPem(e.to_string()))
    }

    /// Returns the default key id of this key.
    pub fn key_id(&self) -> KeyId {
        KeyId::for_public_key(self)
    }

    /// Verifies `signature` over exactly `value` with strict RFC 8032 checks.
    pub fn verify(&self, value: &[u8], signature: &Signature) -> Result<(), SigningError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(value, &sig)
            .map_err(|_| SigningError::InvalidSignature)
    }
}

/// One (value, signature, key) triple for [`verify_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// The exact signed bytes.
    pub value: &'a [u8],
    /// The claimed signature.
    pub signature: &'a Signature,
    /// The key to verify under.
    pub key: &'a PublicKey,
}

/// Verifies many signatures at once; returns one result per item, in order.
///
/// A passing batch (the common case, about twice as fast per signature as single checks)
/// accepts every item. A failing batch is re-checked item by item with [`PublicKey::verify`]
/// so the bad ones are named. Batch checks use random linear combinations: their acceptance
/// matches strict single checks for keys accepted by [`PublicKey`] and honestly produced signatures.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SigningError>> {
    if items.is_empty() {
        return Vec::new();
    }
    let values: Vec<&[u8]> = items.iter().map(|i| i.value).collect();
    let signatures: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|i| ed25519_dalek::Signature::from_bytes(&i.signature.0))
        .collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|i| i.key.0).collect();
    if ed25519_dalek::verify_batch(&values, &signatures, &keys).is_ok() {
        return items.iter().map(|_| Ok(())).collect();
    }
    items
        .iter()
        .map(|i| i.key.verify(i.value, i.signature))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL_KEY: &str = include_str!("../testdata/keys/openssl_ed25519.pem");
    const OPENSSL_PUB: &str = include_str!("../testdata/keys/openssl_ed25519.pub.pem");
    const OPENSSL_MSG: &[u8] = include_bytes!("../testdata/keys/openssl_message.bin");
    const OPENSSL_SIG: &[u8] = include_bytes!("../testdata/keys/openssl_message.sig");

    fn openssl_signer() -> EventSigner {
        EventSigner::from_pkcs8_pem(OPENSSL_KEY).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn openssl_keys_load_and_signatures_match_byte_for_byte() {
        let signer = openssl_signer();
        let public = PublicKey::from_spki_pem(OPENSSL_PUB).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signer.public_key(), &public);
        // Ed25519 is deterministic: our signature equals `openssl pkeyutl -sign -rawin`.
        assert_eq!(signer.sign(OPENSSL_MSG).as_bytes()[..], OPENSSL_SIG[..]);
        let openssl_sig = Signature::from_slice(OPENSSL_SIG).unwrap_or_else(|e| panic!("{e}"));
        assert!(public.verify(OPENSSL_MSG, &openssl_sig).is_ok());
        // Our PEM output is what openssl writes.
        assert_eq!(
            signer.to_pkcs8_pem().map(|p| p.to_string()).ok().as_deref(),
            Some(OPENSSL_KEY)
        );
        assert_eq!(public.to_spki_pem().ok().as_deref(), Some(OPENSSL_PUB));
    }

    #[test]
    fn key_files_load_from_disk() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key_path = dir.path().join("k.pem");
        let pub_path = dir.path().join("k.pub.pem");
        std::fs::write(&key_path, OPENSSL_KEY).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&pub_path, OPENSSL_PUB).unwrap_or_else(|e| panic!("{e}"));
        let signer = EventSigner::from_pkcs8_pem_file(&key_path).unwrap_or_else(|e| panic!("{e}"));
        let public = PublicKey::from_spki_pem_file(&pub_path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(signer.public_key(), &public);
        let missing = EventSigner::from_pkcs8_pem_file(dir.path().join("nope.pem")).err();
        assert!(matches!(missing, Some(SigningError::Io { .. })));
    }

    #[test]
    fn tampering_is_rejected() {
        let signer = openssl_signer();
        let sig = signer.sign(b"value");
        assert!(signer.public_key().verify(b"value", &sig).is_ok());
        let err = signer.public_key().verify(b"valuE", &sig).err();
        assert_eq!(err.map(|e| e.class()), Some(ErrorClass::Rejected));
        let mut bytes = sig.to_bytes();
        bytes[0] ^= 1;
        assert!(
            signer
                .public_key()
                .verify(b"value", &Signature::from_bytes(bytes))
                .is_err()
        );
        let other = EventSigner::generate();
        assert!(other.public_key().verify(b"value", &sig).is_err());
    }

    #[test]
    fn wrong_material_gives_typed_errors() {
        let p256 = include_str!("../testdata/keys/openssl_p256.pem");
        let p256_pub = include_str!("../testdata/keys/openssl_p256.pub.pem");
        let x25519 = include_str!("../testdata/keys/openssl_x25519.pem");
        assert!(matches!(
            EventSigner::from_pkcs8_pem(p256),
            Err(SigningError::WrongAlgorithm(_))
        ));
        let x = EventSigner::from_pkcs8_pem(x25519);
        assert!(
            matches!(&x, Err(SigningError::WrongAlgorithm(oid)) if oid == "1.3.101.110"),
            "{x:?}"
        );
        assert!(matches!(
            PublicKey::from_spki_pem(p256_pub),
            Err(SigningError::WrongAlgorithm(_))
        ));
        assert!(matches!(
            EventSigner::from_pkcs8_pem(OPENSSL_PUB),
            Err(SigningError::InvalidPem(_))
        ));
        assert!(matches!(
            PublicKey::from_spki_pem(OPENSSL_KEY),
            Err(SigningError::InvalidPem(_))
        ));
        for junk in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(
                matches!(
                    EventSigner::from_pkcs8_pem(junk),
                    Err(SigningError::InvalidPem(_))
                ),
                "{junk}"
            );
        }
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            EventSigner::from_pkcs8_pem(encrypted),
            Err(SigningError::EncryptedKey)
        ));
        assert!(matches!(
            Signature::from_slice(&[0; 63]),
            Err(SigningError::BadSignatureLength(63))
        ));
        assert!(matches!(
            PublicKey::from_slice(&[0; 31]),
            Err(SigningError::BadPublicKeyLength(31))
        ));
        // The identity point is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_slice(&identity),
            Err(SigningError::InvalidKey(_))
        ));
    }

    #[test]
    fn key_ids_are_validated_and_derived() {
        assert!(KeyId::new("k-2026.01:a_b").is_ok());
        for bad in ["", "has space", "new\nline", &"x".repeat(129)] {
            assert!(KeyId::new(bad).is_err(), "{bad:?}");
        }
        let signer = openssl_signer();
        let id = signer.key_id().as_str().to_owned();
        assert!(id.starts_with("ed25519-") && id.len() == 24, "{id}");
        assert_eq!(signer.public_key().key_id().as_str(), id);
        let renamed =
            signer.with_key_id(KeyId::new("payments-1").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(renamed.key_id().as_str(), "payments-1");
        assert!(!format!("{renamed:?}").contains("key:"));
    }

    #[test]
    fn batch_verification_names_the_bad_items() {
        let signers: Vec<EventSigner> = (0..4).map(|_| EventSigner::generate()).collect();
        let values: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100]).collect();
        let mut sigs: Vec<Signature> = signers
            .iter()
            .zip(&values)
            .map(|(s, v)| s.sign(v))
            .collect();
        let items = |sigs: &[Signature]| -> Vec<Result<(), SigningError>> {
            let batch: Vec<BatchItem<'_>> = (0..4)
                .map(|i| BatchItem {
                    value: &values[i],
                    signature: &sigs[i],
                    key: signers[i].public_key(),
                })
                .collect();
            verify_batch(&batch)
        };
        assert!(items(&sigs).iter().all(Result::is_ok));
        sigs[2] = signers[2].sign(b"something else");
        let results = items(&sigs);
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, false, true]);
        assert!(verify_batch(&[]).is_empty());
    }
}
