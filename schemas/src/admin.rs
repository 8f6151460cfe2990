//! Administrator signatures on key registry records, and the trust anchors that check them.
//!
//! A `vigil.keys` record is trusted only when an administrator signed it: the
//! [`ADMIN_KEY_ID`] and [`ADMIN_SIGNATURE`] headers carry the administrator's key id and an
//! Ed25519 signature over [`signed_bytes`] (a context string, the record key and the exact value
//! bytes, so a signature is valid for one record of one key and for nothing else).
//!
//! Administrator keys are separate from producer keys and never come from Kafka: every reader
//! gets them as [`TrustAnchors`] from its configuration (a PEM file of one or more SPKI public
//! keys, or a folder of such files). An administrator's id is always
//! [`KeyId::for_public_key`] of its public key, so an id cannot be claimed for another key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::signing::{
    BatchItem, EventSigner, KeyId, PublicKey, SIGNATURE_LEN, Signature, verify_batch,
};

/// Header carrying the signing administrator's key id.
pub const ADMIN_KEY_ID: &str = "vigil-admin-key-id";
/// Header carrying the administrator's 64 raw signature bytes.
pub const ADMIN_SIGNATURE: &str = "vigil-admin-sig";
/// Prefix of the signed bytes, so a record signature is never valid for anything else.
const CONTEXT: &[u8] = b"vigil-key-status-v1\n";
const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";

/// Why trust anchors could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustAnchorError {
    /// A file or folder could not be read.
    #[error("cannot read trust anchors {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A PEM block is not an Ed25519 SPKI public key.
    #[error("{path}: public key {index} is not an Ed25519 SPKI PEM key: {reason}")]
    Key {
        /// The file.
        path: String,
        /// 1-based position of the block in the file.
        index: usize,
        /// Why.
        reason: String,
    },
    /// No key was found.
    #[error("{0}: no administrator public key (expected PEM `{PEM_BEGIN}` blocks)")]
    Empty(String),
}

/// Why a keys-topic record's administrator signature is refused; [`Refusal::reason`] is the
/// metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No administrator signature headers.
    #[error("record is not signed by an administrator")]
    Unsigned,
    /// Signed by a key that is not a trust anchor.
    #[error("signed by {0:?}, which is not a trusted administrator")]
    UnknownAdmin(String),
    /// The signature does not match the record.
    #[error("administrator signature by {0} does not match the record")]
    BadSignature(String),
    /// The headers are present but malformed.
    #[error("malformed administrator signature headers: {0}")]
    Malformed(String),
}

impl Refusal {
    /// The bounded label of `vigil_key_registry_records_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::UnknownAdmin(_) => "unknown_admin",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::Malformed(_) => "malformed",
        }
    }
}

/// The administrator public keys a reader trusts, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    keys: BTreeMap<String, PublicKey>,
    source: String,
}

impl TrustAnchors {
    /// Trusts exactly `keys` (tests and tools that hold the keys in memory).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| (KeyId::for_public_key(&k).as_str().to_owned(), k))
            .collect();
        Self {
            keys,
            source: "(in memory)".to_owned(),
        }
    }

    /// Loads every SPKI PEM public key of `path`: a file holding one or more blocks, or a folder
    /// whose `*.pem` and `*.pub` files do. An empty set is an error: a reader with no anchor
    /// would trust nothing, which is a configuration mistake rather than a policy.
    pub fn load(path: &Path) -> Result<Self, TrustAnchorError> {
        let io = |source| TrustAnchorError::Io {
            path: path.display().to_string(),
            source,
        };
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "pub"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut keys = BTreeMap::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| TrustAnchorError::Io {
                path: file.display().to_string(),
                source,
            })?;
            for (i, block) in text.split(PEM_BEGIN).skip(1).enumerate() {
                let pem = format!("{PEM_BEGIN}{block}");
                let key =
                    PublicKey::from_spki_pem(pem.trim()).map_err(|e| TrustAnchorError::Key {
                        path: file.display().to_string(),
                        index: i + 1,
                        reason: e.to_string(),
                    })?;
                keys.insert(KeyId::for_public_key(&key).as_str().to_owned(), key);
            }
        }
        if keys.is_empty() {
            return Err(TrustAnchorError::Empty(path.display().to_string()));
        }
        Ok(Self {
            keys,
            source: path.display().to_string(),
        })
    }

    /// Returns the administrator key with id `id`.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Returns whether `key` is a trust anchor.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.get(KeyId::for_public_key(key).as_str()) == Some(key)
    }

    /// Returns the administrator key ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Returns every administrator, id and public key, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.keys.iter().map(|(id, k)| (id.as_str(), k))
    }

    /// Returns how many administrators are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns true when no administrator is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the anchors were loaded from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Checks the administrator signature headers of a keys-topic record (`admin_key_id` and
    /// `signature` as read from [`ADMIN_KEY_ID`] and [`ADMIN_SIGNATURE`]) over `record_key`
    /// and `value`; returns the administrator's key id.
    pub fn check(
        &self,
        record_key: &[u8],
        value: &[u8],
        admin_key_id: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<String, Refusal> {
        let (id, key, sig) = self.resolve(admin_key_id, signature)?;
        key.verify(&signed_bytes(record_key, value), &sig)
            .map_err(|_| Refusal::BadSignature(id.clone()))?;
        Ok(id)
    }

    /// [`TrustAnchors::check`] for many records at once, one result per record in order; the
    /// well-formed signatures are verified together with [`verify_batch`] (about half the
    /// cost of checking each alone: what loading a registry of thousands of keys costs).
    pub fn check_many(&self, records: &[SignedKeyRecord<'_>]) -> Vec<Result<String, Refusal>> {
        let mut out: Vec<Result<String, Refusal>> = Vec::with_capacity(records.len());
        let mut pending: Vec<(usize, Vec<u8>, &PublicKey, Signature)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match self.resolve(r.admin_key_id, r.signature) {
                Ok((id, key, sig)) => {
                    pending.push((i, signed_bytes(r.record_key, r.value), key, sig));
                    out.push(Ok(id));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let items: Vec<BatchItem<'_>> = pending
            .iter()
            .map(|(_, bytes, key, sig)| BatchItem {
                value: bytes,
                signature: sig,
                key,
            })
            .collect();
        for ((i, ..), checked) in pending.iter().zip(verify_batch(&items)) {
            if checked.is_err()
                && let Some(slot) = out.get_mut(*i)
                && let Ok(id) = slot
            {
                *slot = Err(Refusal::BadSignature(std::mem::take(id)));
            }
        }
        out
    }

    /// The administrator named by the headers, its key and the parsed signature.
    fn resolve(
        &self,
        admin_key_id: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<(String, &PublicKey, Signature), Refusal> {
        let (id, sig) = match (admin_key_id, signature) {
            (None, None) => return Err(Refusal::Unsigned),
            (Some(id), Some(sig)) => (id, sig),
            _ => {
                return Err(Refusal::Malformed(format!(
                    "{ADMIN_KEY_ID} and {ADMIN_SIGNATURE} must both be present"
                )));
            }
        };
        let id = std::str::from_utf8(id)
            .map_err(|_| Refusal::Malformed(format!("{ADMIN_KEY_ID} is not UTF-8")))?;
        let Some(key) = self.keys.get(id) else {
            return Err(Refusal::UnknownAdmin(id.chars().take(128).collect()));
        };
        if sig.len() != SIGNATURE_LEN {
            return Err(Refusal::Malformed(format!(
                "{ADMIN_SIGNATURE} has {} bytes, not {SIGNATURE_LEN}",
                sig.len()
            )));
        }
        let sig = Signature::from_slice(sig).map_err(|e| Refusal::Malformed(e.to_string()))?;
        Ok((id.to_owned(), key, sig))
    }
}

/// One keys-topic record as read, for [`TrustAnchors::check_many`].
#[derive(Debug, Clone, Copy)]
pub struct SignedKeyRecord<'a> {
    /// The record key (the key id).
    pub record_key: &'a [u8],
    /// The exact value bytes.
    pub value: &'a [u8],
    /// The [`ADMIN_KEY_ID`] header.
    pub admin_key_id: Option<&'a [u8]>,
    /// The [`ADMIN_SIGNATURE`] header.
    pub signature: Option<&'a [u8]>,
}

/// The bytes an administrator signs for a keys-topic record: context, record key, newline,
/// value.
pub fn signed_bytes(record_key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTEXT.len() + record_key.len() + 1 + value.len());
    out.extend_from_slice(CONTEXT);
    out.extend_from_slice(record_key);
    out.push(b'\n');
    out.extend_from_slice(value);
    out
}

/// The two headers that carry an administrator's signature of a keys-topic record.
pub type AdminHeaders = [(&'static str, Vec<u8>); 2];

/// The administrator id of `admin`: the id every reader knows its public key by.
pub fn admin_id(admin: &EventSigner) -> KeyId {
    KeyId::for_public_key(admin.public_key())
}

/// Signs a keys-topic record as `admin`: the two headers to send with it.
pub fn sign_record(admin: &EventSigner, record_key: &[u8], value: &[u8]) -> AdminHeaders {
    let sig = admin.sign(&signed_bytes(record_key, value));
    [
        (ADMIN_KEY_ID, admin_id(admin).as_str().as_bytes().to_vec()),
        (ADMIN_SIGNATURE, sig.to_bytes().to_vec()),
    ]
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin(seed: u8) -> EventSigner {
        EventSigner::from_seed(&[seed; 32])
    }

    fn headers<'a>(h: &'a [(&'static str, Vec<u8>); 2]) -> (Option<&'a [u8]>, Option<&'a [u8]>) {
        (Some(h[0].1.as_slice()), Some(h[1].1.as_slice()))
    }

    #[test]
    fn a_trusted_signature_passes_and_names_the_administrator() {
        let a = admin(1);
        let anchors = TrustAnchors::new([*a.public_key()]);
        let h = sign_record(&a, b"k1", b"value");
        let (id, sig) = headers(&h);
        assert_eq!(
            anchors.check(b"k1", b"value", id, sig),
            Ok(admin_id(&a).as_str().to_owned())
        );
        assert!(anchors.contains(a.public_key()));
    }

    #[test]
    fn unsigned_foreign_tampered_and_moved_records_are_refused() {
        let a = admin(1);
        let anchors = TrustAnchors::new([*a.public_key()]);
        assert_eq!(
            anchors.check(b"k1", b"v", None, None),
            Err(Refusal::Unsigned)
        );
        let h = sign_record(&admin(2), b"k1", b"v");
        let (id, sig) = headers(&h);
        assert_eq!(
            anchors.check(b"k1", b"v", id, sig).unwrap_err().reason(),
            "unknown_admin"
        );
        let h = sign_record(&a, b"k1", b"v");
        let (id, sig) = headers(&h);
        for (key, value) in [
            (&b"k1"[..], &b"w"[..]),
            (b"k2", b"v"),
            (b"k1v", b""),
            (b"", b"k1\nv"),
        ] {
            assert_eq!(
                anchors.check(key, value, id, sig).unwrap_err().reason(),
                "bad_signature",
                "{key:?} {value:?}"
            );
        }
        assert_eq!(
            anchors.check(b"k1", b"v", id, None).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(
            anchors
                .check(b"k1", b"v", id, Some(&[0; 10]))
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn many_records_checked_together_give_the_same_answers_as_one_by_one() {
        let a = admin(1);
        let anchors = TrustAnchors::new([*a.public_key()]);
        let good = sign_record(&a, b"k1", b"v1");
        let other = sign_record(&a, b"k2", b"v2");
        let stranger = sign_record(&admin(2), b"k3", b"v3");
        fn rec<'a>(
            key: &'a [u8],
            value: &'a [u8],
            h: Option<&'a AdminHeaders>,
        ) -> SignedKeyRecord<'a> {
            SignedKeyRecord {
                record_key: key,
                value,
                admin_key_id: h.map(|h| h[0].1.as_slice()),
                signature: h.map(|h| h[1].1.as_slice()),
            }
        }
        let records: Vec<SignedKeyRecord<'_>> = vec![
            rec(b"k1", b"v1", Some(&good)),
            rec(b"k2", b"tampered", Some(&other)),
            rec(b"k3", b"v3", Some(&stranger)),
            rec(b"k4", b"v4", None),
            rec(b"k2", b"v2", Some(&other)),
        ];
        let many = anchors.check_many(&records);
        let one_by_one: Vec<_> = records
            .iter()
            .map(|r| anchors.check(r.record_key, r.value, r.admin_key_id, r.signature))
            .collect();
        assert_eq!(many, one_by_one);
        let reasons: Vec<&str> = many
            .iter()
            .map(|r| r.as_ref().map_or_else(Refusal::reason, |_| "ok"))
            .collect();
        assert_eq!(
            reasons,
            ["ok", "bad_signature", "unknown_admin", "unsigned", "ok"]
        );
    }

    #[test]
    fn anchors_load_from_a_file_of_several_keys_or_a_folder() {
        let dir = std::env::temp_dir().join(format!("vigil-anchors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = |s| admin(s).public_key().to_spki_pem().unwrap();
        let file = dir.join("all.pem");
        std::fs::write(&file, format!("# admins\n{}\n{}", pem(1), pem(2))).unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        assert_eq!(TrustAnchors::load(&file).unwrap().len(), 2);
        std::fs::write(dir.join("third.pub"), pem(3)).unwrap();
        assert_eq!(TrustAnchors::load(&dir).unwrap().len(), 3);
        std::fs::write(&file, "nothing here").unwrap();
        assert!(matches!(
            TrustAnchors::load(&file),
            Err(TrustAnchorError::Empty(_))
        ));
        std::fs::write(
            &file,
            format!("{PEM_BEGIN}\nAAAA\n-----END PUBLIC KEY-----\n"),
        )
        .unwrap();
        assert!(matches!(
            TrustAnchors::load(&file),
            Err(TrustAnchorError::Key { index: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
