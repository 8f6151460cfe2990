//! The key registry: every signing key's current [`KeyStatus`], read from the compacted
//! `vigil.keys` topic into memory, and the rule that turns a status into a [`KeyDecision`].
//!
//! **Loading.** [`KeyRegistry::start`] assigns every partition of the keys topic to a consumer of
//! its own (no group membership, no commits), captures the high watermarks, and reads from the
//! beginning; [`KeyRegistry::wait_loaded`] returns once every partition has been read up to the
//! watermark captured at start. The same task then keeps following the topic, so a revocation is
//! applied within one fetch round trip of being written.
//!
//! **Decision rule** ([`KeyView::decide`]), for an event that occurred at `occurred_at` and is
//! judged at `now`:
//! - unknown key → [`KeyDecision::Untrusted`];
//! - `occurred_at` before the key's `valid_from` → `Untrusted` (a key cannot vouch for the past);
//! - `Active` → [`KeyDecision::Valid`];
//! - `Rotated` → `Valid` while `now <= grace_until`, then [`KeyDecision::Expired`] (the grace
//!   is for events in flight at rotation time, so it is judged on the verifier's clock, which an
//!   attacker cannot set);
//! - `Revoked`, normal → [`KeyDecision::Revoked`] for events that occurred at or after
//!   `revoked_at`; events that occurred before it were signed while the key was good and stay
//!   `Valid` (the verifier's clock-skew window bounds how far back a holder of the key can date
//!   an event);
//! - `Revoked`, emergency → `Revoked` for everything judged after the revocation is seen,
//!   whatever the event claims as `occurred_at` (the key is assumed compromised).
//!
//! Writing statuses (for `vigil keys`) goes through [`KeyStatusWriter`]: Confluent-framed Avro
//! under `<topic>-value`, record key = key id, idempotent producer, returns after the ack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_schemas::error_chain;
use vigil_schemas::model::TimestampMicros;
use vigil_schemas::topics::value_subject;
use vigil_schemas::wire::split_frame;
use vigil_schemas::{
    Codec, KeyState, KeyStatus, PublicKey, RegistryError, SchemaId, SchemaRegistry, WireError,
};
use vigil_topology::KafkaClientConfig;

/// How long one metadata or watermark request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Failure to start, load or write the key registry.
#[derive(Debug, thiserror::Error)]
pub enum KeyRegistryError {
    /// A Kafka client could not be created or queried.
    #[error("kafka: cannot {what}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The keys topic does not exist.
    #[error("key registry topic {0:?} does not exist")]
    MissingTopic(String),
    /// The schema registry refused or could not be reached.
    #[error("schema registry")]
    Registry(#[source] RegistryError),
    /// A status could not be encoded (a bug).
    #[error("cannot encode key status")]
    Encode(#[source] WireError),
    /// The registry was not loaded within the allowed time.
    #[error("key registry not loaded after {0:?}")]
    LoadTimeout(Duration),
    /// The metrics could not be registered.
    #[error("cannot register key registry metrics")]
    Metrics(#[source] prometheus::Error),
    /// A status to write is invalid.
    #[error("invalid key status: {0}")]
    Invalid(String),
}

/// What the registry knows about one key, with its public key parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// The parsed public key.
    pub public_key: PublicKey,
    /// The status as last written.
    pub status: KeyStatus,
    /// When this process applied the status (for emergency revocations).
    pub seen_at: TimestampMicros,
}

/// The verdict on a key for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDecision {
    /// The key may vouch for the event.
    Valid,
    /// The key is revoked for this event.
    Revoked {
        /// The revocation reason, if given.
        reason: String,
    },
    /// The key is unknown or not valid for the event's time.
    Untrusted {
        /// Why.
        reason: String,
    },
    /// The key was rotated and its grace period has ended.
    Expired {
        /// End of the grace period.
        grace_until: TimestampMicros,
    },
}

impl KeyView {
    /// Decides whether this key may vouch for an event that occurred at `occurred_at`, judged at
    /// `now` (see the module documentation for the rule).
    pub fn decide(&self, occurred_at: TimestampMicros, now: TimestampMicros) -> KeyDecision {
        let s = &self.status;
        let revoked_reason = || s.reason.clone().unwrap_or_else(|| "key revoked".to_owned());
        match s.state {
            KeyState::Revoked if s.emergency => {
                return KeyDecision::Revoked {
                    reason: revoked_reason(),
                };
            }
            KeyState::Revoked => {
                // A revocation without a time is treated as effective since forever.
                if occurred_at >= s.revoked_at.unwrap_or(i64::MIN) {
                    return KeyDecision::Revoked {
                        reason: revoked_reason(),
                    };
                }
            }
            KeyState::Rotated => {
                let grace_until = s.grace_until.unwrap_or(i64::MIN);
                if now > grace_until {
                    return KeyDecision::Expired { grace_until };
                }
            }
            KeyState::Active => {}
        }
        if occurred_at < s.valid_from {
            return KeyDecision::Untrusted {
                reason: "event predates the key's valid_from".to_owned(),
            };
        }
        KeyDecision::Valid
    }
}

/// Decides for a key looked up in a registry: `None` (unknown key) is untrusted.
pub fn decide(
    view: Option<&KeyView>,
    occurred_at: TimestampMicros,
    now: TimestampMicros,
) -> KeyDecision {
    match view {
        Some(v) => v.decide(occurred_at, now),
        None => KeyDecision::Untrusted {
            reason: "unknown key".to_owned(),
        },
    }
}

/// Where the registry reads from.
#[derive(Debug, Clone)]
pub struct KeyRegistryConfig {
    /// The compacted keys topic (`vigil.keys`).
    pub topic: String,
    /// Schema registry URL, to resolve statuses written with another schema version.
    pub schema_registry_url: String,
}

/// Metrics of a key registry.
#[derive(Clone)]
struct RegistryMetrics {
    keys: IntGauge,
    updates: IntCounterVec,
}

impl RegistryMetrics {
    fn new(registry: Option<&Registry>) -> Result<Self, prometheus::Error> {
        let keys = IntGauge::new(
            "vigil_key_registry_keys",
            "Keys currently held by the in-memory key registry.",
        )?;
        let updates = IntCounterVec::new(
            Opts::new(
                "vigil_key_registry_updates_total",
                "Records applied from the keys topic, by kind: upsert, tombstone, invalid.",
            ),
            &["kind"],
        )?;
        if let Some(r) = registry {
            r.register(Box::new(keys.clone()))?;
            r.register(Box::new(updates.clone()))?;
        }
        Ok(Self { keys, updates })
    }
}

/// The in-memory key registry; cheap to share (`Arc`), lookups take a read lock.
pub struct KeyRegistry {
    keys: RwLock<HashMap<String, Arc<KeyView>>>,
    loaded: watch::Sender<bool>,
    is_loaded: AtomicBool,
    applied: AtomicU64,
    metrics: RegistryMetrics,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry")
            .field("keys", &self.len())
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl KeyRegistry {
    /// Returns an empty, unloaded registry that follows no topic (tests, tools).
    pub fn empty() -> Arc<Self> {
        // Unregistered metrics cannot fail to build with static names.
        let metrics = match RegistryMetrics::new(None) {
            Ok(m) => m,
            Err(_) => unreachable_metrics(),
        };
        Arc::new(Self::with_metrics(metrics))
    }

    fn with_metrics(metrics: RegistryMetrics) -> Self {
        let (loaded, _) = watch::channel(false);
        Self {
            keys: RwLock::new(HashMap::new()),
            loaded,
            is_loaded: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            metrics,
        }
    }

    /// Starts following `config.topic` from its beginning in a background task and returns the
    /// registry at once; call [`KeyRegistry::wait_loaded`] before trusting its answers.
    /// Metrics are registered in `metrics` when given.
    pub async fn start(
        config: &KeyRegistryConfig,
        kafka: &KafkaClientConfig,
        metrics: Option<&Registry>,
    ) -> Result<(Arc<Self>, JoinHandle<()>), KeyRegistryError> {
        let metrics = RegistryMetrics::new(metrics).map_err(KeyRegistryError::Metrics)?;
        let registry = Arc::new(Self::with_metrics(metrics));
        let schemas =
            SchemaRegistry::new(&config.schema_registry_url).map_err(KeyRegistryError::Registry)?;
        let own_id = schemas
            .register(
                &value_subject(&config.topic),
                vigil_schemas::schema::KEY_STATUS_AVSC,
            )
            .await
            .map_err(KeyRegistryError::Registry)?;
        let codec = Codec::<KeyStatus>::new().map_err(KeyRegistryError::Encode)?;

        let mut client = kafka.consumer(&format!("vigil-key-registry-{}", uuid_like()));
        client
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // The registry must see every status, committed or not (writers are not transactional).
            .set("isolation.level", "read_uncommitted")
            // A revocation must reach every verifier fast; the topic is small, idle polls are cheap.
            .set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer =
            client.create().map_err(|source| KeyRegistryError::Kafka {
                what: "create key registry consumer",
                source,
            })?;
        let topic = config.topic.clone();
        let ends = {
            let probe: BaseConsumer = kafka
                .consumer("vigil-key-registry-probe")
                .create()
                .map_err(|source| KeyRegistryError::Kafka {
                    what: "create metadata client",
                    source,
                })?;
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || high_watermarks(&probe, &topic))
                .await
                .map_err(|_| KeyRegistryError::Invalid("metadata task panicked".into()))??
        };
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)
                .map_err(|source| KeyRegistryError::Kafka {
                    what: "assign key registry partitions",
                    source,
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| KeyRegistryError::Kafka {
                what: "assign key registry partitions",
                source,
            })?;
        let task = tokio::spawn(follow(
            registry.clone(),
            consumer,
            topic,
            ends,
            schemas,
            own_id,
            codec,
        ));
        Ok((registry, task))
    }

    /// Waits until the statuses present at start have all been applied.
    pub async fn wait_loaded(&self, timeout: Duration) -> Result<(), KeyRegistryError> {
        let mut rx = self.loaded.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| *l))
            .await
            .map_err(|_| KeyRegistryError::LoadTimeout(timeout))?
            .map(|_| ())
            .map_err(|_| KeyRegistryError::LoadTimeout(timeout))
    }

    /// Returns whether the initial load is complete.
    pub fn is_loaded(&self) -> bool {
        self.is_loaded.load(Ordering::Acquire)
    }

    /// Returns the current view of `key_id`.
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyView>> {
        read(&self.keys).get(key_id).cloned()
    }

    /// Returns the number of keys held.
    pub fn len(&self) -> usize {
        read(&self.keys).len()
    }

    /// Returns true when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns how many records have been applied since start (for tests and tools).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Returns every view, sorted by key id.
    pub fn snapshot(&self) -> Vec<Arc<KeyView>> {
        let mut all: Vec<Arc<KeyView>> = read(&self.keys).values().cloned().collect();
        all.sort_by(|a, b| a.status.key_id.cmp(&b.status.key_id));
        all
    }

    /// Applies one status (`None` = tombstone of `key_id`) as if read from the topic.
    pub fn apply(&self, key_id: &str, status: Option<KeyStatus>) -> Result<(), String> {
        let now = vigil_schemas::model::now_micros();
        match status {
            None => {
                write(&self.keys).remove(key_id);
                self.metrics.updates.with_label_values(&["tombstone"]).inc();
            }
            Some(status) => {
                if status.key_id != key_id {
                    self.metrics.updates.with_label_values(&["invalid"]).inc();
                    return Err(format!(
                        "record key {key_id:?} differs from key_id {:?}",
                        status.key_id
                    ));
                }
                let public_key = match PublicKey::from_slice(&status.public_key) {
                    Ok(k) => k,
                    Err(e) => {
                        self.metrics.updates.with_label_values(&["invalid"]).inc();
                        return Err(format!("public key of {key_id:?}: {e}"));
                    }
                };
                let view = Arc::new(KeyView {
                    public_key,
                    status,
                    seen_at: now,
                });
                write(&self.keys).insert(key_id.to_owned(), view);
                self.metrics.updates.with_label_values(&["upsert"]).inc();
            }
        }
        self.metrics
            .keys
            .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
        self.applied.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn mark_loaded(&self) {
        if !self.is_loaded.swap(true, Ordering::AcqRel) {
            tracing::info!(keys = self.len(), "key registry loaded");
            self.loaded.send_replace(true);
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_metrics() -> RegistryMetrics {
    panic!("static metric definitions are valid")
}

fn read<'a>(
    lock: &'a RwLock<HashMap<String, Arc<KeyView>>>,
) -> std::sync::RwLockReadGuard<'a, HashMap<String, Arc<KeyView>>> {
    // A writer panicking mid-insert leaves a consistent map (insert is one call): keep serving.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<'a>(
    lock: &'a RwLock<HashMap<String, Arc<KeyView>>>,
) -> std::sync::RwLockWriteGuard<'a, HashMap<String, Arc<KeyView>>> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Low and high watermark by partition.
pub type Watermarks = HashMap<i32, (i64, i64)>;

/// The low and high watermark of every partition of `topic`, or `None` when the broker does
/// not know the topic. Blocking: for compacted topics read to their end at start (the key
/// registry, the alerter's state changelog).
///
/// A topic created moments ago answers "not leader" or "leader not available" until its
/// partitions have elected a leader; those answers are retried until `timeout` has passed, so a
/// service started right after `vigil init` does not refuse to start over an election.
pub fn partition_watermarks(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Watermarks>, (&'static str, KafkaError)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match watermarks_once(client, topic, left.max(Duration::from_millis(100))) {
            Err((_, e)) if is_election(&e) && std::time::Instant::now() < deadline => {
                tracing::debug!(topic, error = %e, "partition leader not elected yet; retrying");
                std::thread::sleep(ELECTION_RETRY);
            }
            other => return other,
        }
    }
}

/// Pause between watermark reads while a new topic's partitions elect leaders.
const ELECTION_RETRY: Duration = Duration::from_millis(200);

/// Whether `e` is the broker saying a partition has no leader yet: transient right after a
/// topic is created or a broker restarts.
fn is_election(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotLeaderForPartition | C::LeaderNotAvailable | C::UnknownTopicOrPartition)
    )
}

fn watermarks_once(
    client: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Watermarks>, (&'static str, KafkaError)> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| ("fetch metadata", e))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut marks = HashMap::with_capacity(partitions.len());
    for p in partitions {
        let lh = client
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| ("fetch watermarks", e))?;
        marks.insert(p, lh);
    }
    Ok(Some(marks))
}

/// Returns the high watermark of every partition of `topic`.
fn high_watermarks(
    client: &BaseConsumer,
    topic: &str,
) -> Result<HashMap<i32, i64>, KeyRegistryError> {
    match partition_watermarks(client, topic, METADATA_TIMEOUT) {
        Ok(Some(marks)) => Ok(marks.into_iter().map(|(p, (_, high))| (p, high)).collect()),
        Ok(None) => Err(KeyRegistryError::MissingTopic(topic.to_owned())),
        Err((what, source)) => Err(KeyRegistryError::Kafka { what, source }),
    }
}

/// Decodes one keys-topic value: the own schema id on the fast path, any other through the
/// schema registry.
async fn decode_status(
    schemas: &SchemaRegistry,
    own_id: SchemaId,
    codec: &Codec<KeyStatus>,
    value: &[u8],
) -> Result<KeyStatus, String> {
    let (id, body) = split_frame(value).map_err(|e| e.to_string())?;
    if id == own_id {
        return codec.decode(body).map_err(|e| error_chain(&e));
    }
    let writer = schemas
        .schema_by_id(id)
        .await
        .map_err(|e| error_chain(&e))?;
    codec
        .decode_with(&writer, body)
        .map_err(|e| error_chain(&e))
}

async fn follow(
    registry: Arc<KeyRegistry>,
    consumer: StreamConsumer,
    topic: String,
    mut remaining: HashMap<i32, i64>,
    schemas: SchemaRegistry,
    own_id: SchemaId,
    codec: Codec<KeyStatus>,
) {
    remaining.retain(|_, high| *high > 0);
    loop {
        if !registry.is_loaded() {
            // Positions move past records compaction removed and past control records, so they
            // are the reliable "read up to the watermark" test.
            if let Ok(pos) = consumer.position() {
                for e in pos.elements_for_topic(&topic) {
                    if let (Offset::Offset(o), Some(high)) =
                        (e.offset(), remaining.get(&e.partition()))
                        && o >= *high
                    {
                        remaining.remove(&e.partition());
                    }
                }
            }
            if remaining.is_empty() {
                registry.mark_loaded();
            }
        }
        let msg = match tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "key registry consume error");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Ok(Ok(m)) => m,
        };
        let partition = msg.partition();
        let offset = msg.offset();
        let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let value = msg.payload().map(<[u8]>::to_vec);
        drop(msg);
        if let Some(high) = remaining.get(&partition)
            && offset + 1 >= *high
        {
            remaining.remove(&partition);
        }
        let Some(key) = key else {
            registry
                .metrics
                .updates
                .with_label_values(&["invalid"])
                .inc();
            tracing::warn!(partition, offset, "key status without a record key ignored");
            continue;
        };
        let status = match value {
            None => None,
            Some(v) => match decode_status(&schemas, own_id, &codec, &v).await {
                Ok(s) => Some(s),
                Err(e) => {
                    registry
                        .metrics
                        .updates
                        .with_label_values(&["invalid"])
                        .inc();
                    tracing::warn!(
                        partition,
                        offset,
                        key_id = key,
                        error = e,
                        "undecodable key status ignored"
                    );
                    continue;
                }
            },
        };
        if let Err(e) = registry.apply(&key, status) {
            tracing::warn!(partition, offset, error = e, "invalid key status ignored");
        }
    }
}

/// Writes key statuses to the keys topic and waits for the broker's acknowledgement.
pub struct KeyStatusWriter {
    producer: FutureProducer,
    topic: String,
    schema_id: SchemaId,
    codec: Codec<KeyStatus>,
}

impl std::fmt::Debug for KeyStatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStatusWriter")
            .field("topic", &self.topic)
            .field("schema_id", &self.schema_id)
            .finish_non_exhaustive()
    }
}

impl KeyStatusWriter {
    /// Registers the `KeyStatus` schema under `<topic>-value` and builds an idempotent producer.
    pub async fn new(
        topic: &str,
        schema_registry_url: &str,
        kafka: &KafkaClientConfig,
    ) -> Result<Self, KeyRegistryError> {
        let schemas =
            SchemaRegistry::new(schema_registry_url).map_err(KeyRegistryError::Registry)?;
        let schema_id = schemas
            .register(
                &value_subject(topic),
                vigil_schemas::schema::KEY_STATUS_AVSC,
            )
            .await
            .map_err(KeyRegistryError::Registry)?;
        let mut config = kafka.producer();
        // An operator waits on the command: one record, sent at once.
        config
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000");
        let producer: FutureProducer =
            config.create().map_err(|source| KeyRegistryError::Kafka {
                what: "create key status producer",
                source,
            })?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            schema_id,
            codec: Codec::new().map_err(KeyRegistryError::Encode)?,
        })
    }

    /// Writes `status` keyed by its key id and returns once the broker acknowledged it.
    pub async fn write(&self, status: &KeyStatus) -> Result<(), KeyRegistryError> {
        PublicKey::from_slice(&status.public_key)
            .map_err(|e| KeyRegistryError::Invalid(e.to_string()))?;
        let value = self
            .codec
            .encode_framed(self.schema_id, status)
            .map_err(KeyRegistryError::Encode)?;
        self.send(&status.key_id, Some(&value)).await
    }

    /// Writes a tombstone for `key_id` (the key disappears from every registry).
    pub async fn delete(&self, key_id: &str) -> Result<(), KeyRegistryError> {
        self.send(key_id, None).await
    }

    async fn send(&self, key: &str, value: Option<&Vec<u8>>) -> Result<(), KeyRegistryError> {
        let mut record = FutureRecord::<str, Vec<u8>>::to(&self.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| KeyRegistryError::Kafka {
                what: "write key status",
                source,
            })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use vigil_schemas::EventSigner;

    fn status(state: KeyState) -> KeyStatus {
        KeyStatus {
            key_id: "k1".into(),
            algorithm: "ed25519".into(),
            public_key: EventSigner::from_seed(&[3; 32])
                .public_key()
                .to_bytes()
                .to_vec(),
            state,
            valid_from: 1_000,
            grace_until: None,
            revoked_at: None,
            reason: None,
            emergency: false,
            replaced_by: None,
            updated_at: 1_000,
            updated_by: "test".into(),
        }
    }

    fn view(s: KeyStatus) -> KeyView {
        KeyView {
            public_key: PublicKey::from_slice(&s.public_key).unwrap(),
            status: s,
            seen_at: 0,
        }
    }

    #[test]
    fn active_rotated_and_unknown_keys() {
        let active = view(status(KeyState::Active));
        assert_eq!(active.decide(2_000, 5_000), KeyDecision::Valid);
        assert!(matches!(
            active.decide(500, 5_000),
            KeyDecision::Untrusted { .. }
        ));
        let mut s = status(KeyState::Rotated);
        s.grace_until = Some(10_000);
        let rotated = view(s);
        assert_eq!(rotated.decide(2_000, 10_000), KeyDecision::Valid);
        assert_eq!(
            rotated.decide(2_000, 10_001),
            KeyDecision::Expired {
                grace_until: 10_000
            }
        );
        assert!(matches!(decide(None, 0, 0), KeyDecision::Untrusted { .. }));
    }

    #[test]
    fn normal_revocation_keeps_earlier_events_and_emergency_rejects_all() {
        let mut s = status(KeyState::Revoked);
        s.revoked_at = Some(5_000);
        s.reason = Some("leaked".into());
        let normal = view(s.clone());
        assert_eq!(normal.decide(4_999, 9_000), KeyDecision::Valid);
        assert_eq!(
            normal.decide(5_000, 9_000),
            KeyDecision::Revoked {
                reason: "leaked".into()
            }
        );
        s.emergency = true;
        let emergency = view(s);
        assert!(matches!(
            emergency.decide(2_000, 9_000),
            KeyDecision::Revoked { .. }
        ));
    }

    #[test]
    fn apply_upserts_removes_and_refuses_mismatched_or_bad_keys() {
        let r = KeyRegistry::empty();
        r.apply("k1", Some(status(KeyState::Active))).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r.apply("other", Some(status(KeyState::Active))).is_err());
        let mut bad = status(KeyState::Active);
        bad.public_key = vec![1, 2, 3];
        assert!(r.apply("k1", Some(bad)).is_err());
        assert_eq!(r.get("k1").unwrap().status.state, KeyState::Active);
        r.apply("k1", None).unwrap();
        assert!(r.get("k1").is_none());
        assert!(r.is_empty());
    }
}
