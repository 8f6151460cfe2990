//! A key registry for one test: its own compacted keys topic, key statuses written to it
//! through [`KeyStatusWriter`] as `vigil keys` writes them, and signers for the keys.

use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_schemas::model::now_micros;
use vigil_schemas::{EventSigner, KeyId, KeyState, KeyStatus, RecordSigner, SchemaId};
use vigil_topology::KafkaClientConfig;

use crate::{create_compacted_topic, kafka_bootstrap, schema_registry_url, unique_name};

/// How long before now a test key became valid.
const VALID_FOR_MICROS: i64 = 3_600_000_000;

/// A fresh keys topic and a writer of key statuses to it.
pub struct KeyRegistryFixture {
    topic: String,
    writer: KeyStatusWriter,
}

impl KeyRegistryFixture {
    /// Creates a compacted keys topic named after `prefix` and a writer for it.
    pub async fn create(prefix: &str) -> Self {
        let topic = unique_name(prefix);
        create_compacted_topic(&topic).await;
        let writer = KeyStatusWriter::new(
            &topic,
            &schema_registry_url(),
            &KafkaClientConfig::new(kafka_bootstrap()),
        )
        .await
        .unwrap_or_else(|e| panic!("key status writer for {topic}: {e}"));
        Self { topic, writer }
    }

    /// Returns the keys topic (a service's `keys_topic`).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Returns the writer, for writes the helpers below do not cover (tombstones, batches).
    pub fn writer(&self) -> &KeyStatusWriter {
        &self.writer
    }

    /// Writes `status` and waits for the broker's acknowledgement.
    pub async fn write(&self, status: &KeyStatus) {
        self.writer
            .write(status)
            .await
            .unwrap_or_else(|e| panic!("writing the status of {}: {e}", status.key_id));
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
