//! A key registry for one test: its own compacted keys topic, an administrator whose public
//! key is the test's trust anchor, key statuses written to the topic through
//! [`KeyStatusWriter`] as `vigil keys` writes them (signed, each version one above the last),
//! and signers for the keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_schemas::model::now_micros;
use vigil_schemas::{
    EventSigner, KeyId, KeyState, KeyStatus, RecordSigner, SchemaId, TrustAnchors,
};
use vigil_topology::KafkaClientConfig;

use crate::{create_compacted_topic, kafka_bootstrap, schema_registry_url, unique_name};

/// How long before now a test key became valid.
const VALID_FOR_MICROS: i64 = 3_600_000_000;

/// A fresh keys topic, its administrator and a writer of key statuses to it.
pub struct KeyRegistryFixture {
    topic: String,
    writer: KeyStatusWriter,
    anchors_file: PathBuf,
    admin_key_file: PathBuf,
    versions: Mutex<HashMap<String, i64>>,
}

impl KeyRegistryFixture {
    /// Creates a compacted keys topic named after `prefix`, a fresh administrator (its public
    /// key written to a trust anchors file) and a writer signing as it.
    pub async fn create(prefix: &str) -> Self {
        let topic = unique_name(prefix);
        create_compacted_topic(&topic).await;
        let admin = EventSigner::generate();
        let anchors_file = write_anchors(&topic, &[&admin]);
        let admin_key_file = anchors_file.with_extension("key.pem");
        let pem = admin
            .to_pkcs8_pem()
            .unwrap_or_else(|e| panic!("encoding the administrator key: {e}"));
        std::fs::write(&admin_key_file, pem.as_bytes())
            .unwrap_or_else(|e| panic!("writing {}: {e}", admin_key_file.display()));
        let writer = KeyStatusWriter::new(
            &topic,
            &schema_registry_url(),
            &KafkaClientConfig::new(kafka_bootstrap()),
            admin,
        )
        .await
        .unwrap_or_else(|e| panic!("key status writer for {topic}: {e}"));
        Self {
            topic,
            writer,
            anchors_file,
            admin_key_file,
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the keys topic (a service's `keys_topic`).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Returns the trust anchors file (a service's `trust_anchors`).
    pub fn anchors_path(&self) -> &Path {
        &self.anchors_file
    }

    /// Returns the administrator's private key file (`vigil keys --admin-key`).
    pub fn admin_key_path(&self) -> &Path {
        &self.admin_key_file
    }

    /// Returns the trust anchors: the fixture's administrator.
    pub fn anchors(&self) -> Arc<TrustAnchors> {
        Arc::new(TrustAnchors::new([*self.writer.admin().public_key()]))
    }

    /// Returns the writer, for writes the helpers below do not cover (exact versions, batches).
    pub fn writer(&self) -> &KeyStatusWriter {
        &self.writer
    }

    /// Writes `status` with the next version of its key, signed by the fixture's
    /// administrator, and waits for the broker's acknowledgement; returns the version written.
    pub async fn write(&self, status: &KeyStatus) -> i64 {
        let version = {
            let mut v = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            let next = v.entry(status.key_id.clone()).or_insert(0);
            *next += 1;
            *next
        };
        let status = KeyStatus {
            version,
            ..status.clone()
        };
        self.writer
            .write(&status)
            .await
            .unwrap_or_else(|e| panic!("writing the status of {}: {e}", status.key_id));
        version
    }

    /// Registers `signer`'s public key as active under `key_id` (see [`active`]).
    pub async fn activate(&self, key_id: &str, signer: &EventSigner) {
        self.write(&active(key_id, signer)).await;
    }

    /// Generates a key, registers it as active under `key_id` and returns a signer of records
    /// under `schema` with it.
    pub async fn register(&self, key_id: &str, schema: SchemaId) -> RecordSigner {
        let signer = record_signer(key_id, schema);
        self.activate(key_id, signer.signer()).await;
        signer
    }

    /// Revokes `key_id` (its key `signer`) as of `revoked_at`, for `reason`; `emergency` as
    /// `vigil keys revoke --emergency` sets it.
    pub async fn revoke(
        &self,
        key_id: &str,
        signer: &EventSigner,
        revoked_at: i64,
        reason: Option<&str>,
        emergency: bool,
    ) {
        self.write(&revoked(key_id, signer, revoked_at, reason, emergency))
            .await;
    }
}

/// Writes the public keys of `admins` to a trust anchors file named after `name` in the
/// system's temporary folder and returns its path.
pub fn write_anchors(name: &str, admins: &[&EventSigner]) -> PathBuf {
    let dir = std::env::temp_dir().join("vigil-test-anchors");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.pem"));
    let pem: String = admins
        .iter()
        .map(|a| {
            a.public_key()
                .to_spki_pem()
                .unwrap_or_else(|e| panic!("encoding an administrator key: {e}"))
        })
        .collect();
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// The status of an active key `key_id` of `signer`, valid since an hour ago.
pub fn active(key_id: &str, signer: &EventSigner) -> KeyStatus {
    KeyStatus::active(
        key_id,
        signer.public_key(),
        now_micros() - VALID_FOR_MICROS,
        "test",
    )
}

/// The status of key `key_id` of `signer` revoked at `revoked_at` for `reason`.
pub fn revoked(
    key_id: &str,
    signer: &EventSigner,
    revoked_at: i64,
    reason: Option<&str>,
    emergency: bool,
) -> KeyStatus {
    KeyStatus {
        state: KeyState::Revoked,
        revoked_at: Some(revoked_at),
        reason: reason.map(str::to_owned),
        emergency,
        ..active(key_id, signer)
    }
}

/// A signer of records under `schema` with a fresh key named `key_id`.
pub fn record_signer(key_id: &str, schema: SchemaId) -> RecordSigner {
    let key_id = KeyId::new(key_id).unwrap_or_else(|e| panic!("key id {key_id:?}: {e}"));
    RecordSigner::new(EventSigner::generate().with_key_id(key_id), schema)
        .unwrap_or_else(|e| panic!("record signer: {e}"))
}
