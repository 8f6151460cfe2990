//! The key registry: every signing key's current [`KeyStatus`], read from the compacted
//! `vigil.keys` topic into memory, and the rule that turns a status into a [`KeyDecision`].
//!
//! **Loading.** [`KeyRegistry::start`] assigns every partition of the keys topic to a consumer of
//! its own (no group membership, no commits), captures the watermarks with that consumer, and
//! reads from the low watermark (an explicit offset: `Beginning` would cost an offset lookup of
//! about half a second before the first fetch); [`KeyRegistry::wait_loaded`] returns once every partition has been read up to the
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
//! A key past its `not_after` is [`KeyDecision::PastNotAfter`] for events that occurred after
//! it.
//!
//! **Trust** ([`KeyRegistryConfig::anchors`]): a record is applied only when an administrator
//! whose public key the reader was given by configuration signed it
//! ([`vigil_schemas::admin`]), and only when its `version` is above the version held for the
//! key. Everything else is refused, counted in `vigil_key_registry_records_refused_total{reason}`
//! and logged as a `key_record_refused` event:
//! `unsigned`, `unknown_admin`, `bad_signature`, `malformed` (headers, frame, body, record key
//! differing from `key_id`, public key), `stale_version` (an older signed record replayed),
//! `downgrade` (an unsigned record for a key that holds a signed one) and `tombstone` (keys are
//! revoked, never deleted: a deletion would make a reader forget the version it must not go
//! below). With [`KeyRegistryConfig::accept_unsigned`] (the migration window only) unsigned
//! records are applied, last one wins, as before signatures existed, until `vigil keys adopt`
//! re-signs them.
//!
//! Writing statuses (for `vigil keys`) goes through [`KeyStatusWriter`]: Confluent-framed Avro
//! under `<topic>-value`, record key = key id, signed by the writer's administrator key,
//! idempotent producer, returns after the ack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_schemas::admin::{self, ADMIN_KEY_ID, ADMIN_SIGNATURE, Refusal, TrustAnchors};
use vigil_schemas::error_chain;
use vigil_schemas::model::TimestampMicros;
use vigil_schemas::topics::value_subject;
use vigil_schemas::wire::split_frame;
use vigil_schemas::{
    Codec, EventSigner, KeyState, KeyStatus, PublicKey, RegistryError, SchemaId, SchemaRegistry,
    WireError,
};
use vigil_topology::{InternalEvent, KafkaClientConfig};

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
    /// Key id of the administrator whose signature was checked; `None` for an unsigned status
    /// accepted during the migration window.
    pub signed_by: Option<String>,
    /// The key is a trust anchor (an administrator), not a registered producer key: it may
    /// sign only key lifecycle and configuration events.
    pub administrator: bool,
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
        /// Revoked as an emergency (every event rejected).
        emergency: bool,
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
    /// The event occurred after the key's expiry (`not_after`).
    PastNotAfter {
        /// The key's expiry.
        not_after: TimestampMicros,
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
                    emergency: true,
                };
            }
            KeyState::Revoked => {
                // A revocation without a time is treated as effective since forever.
                if occurred_at >= s.revoked_at.unwrap_or(i64::MIN) {
                    return KeyDecision::Revoked {
                        reason: revoked_reason(),
                        emergency: false,
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
        if let Some(not_after) = s.not_after
            && occurred_at > not_after
        {
            return KeyDecision::PastNotAfter { not_after };
        }
        if occurred_at < s.valid_from {
            return KeyDecision::Untrusted {
                reason: "event predates the key's valid_from".to_owned(),
            };
        }
        KeyDecision::Valid
    }
}

/// Whether `status` still lets its key sign at `now`: active, or rotated within its grace
/// (the keys whose expiry matters).
pub fn accepted_at(status: &KeyStatus, now: TimestampMicros) -> bool {
    match status.state {
        KeyState::Active => true,
        KeyState::Rotated => status.grace_until.is_some_and(|g| now <= g),
        KeyState::Revoked => false,
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

/// Where the registry reads from, and whom it trusts.
#[derive(Debug, Clone)]
pub struct KeyRegistryConfig {
    /// The compacted keys topic (`vigil.keys`).
    pub topic: String,
    /// Schema registry URL, to resolve statuses written with another schema version.
    pub schema_registry_url: String,
    /// The administrators whose signatures make a record trusted (from configuration, never
    /// from Kafka).
    pub anchors: Arc<TrustAnchors>,
    /// Migration window only: apply unsigned records too (see the module documentation).
    pub accept_unsigned: bool,
}

/// Why a keys-topic record was not applied; [`RecordRefused::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordRefused {
    /// The administrator signature is missing, unknown or wrong.
    #[error(transparent)]
    Signature(#[from] Refusal),
    /// The record is not above the version held: an older record replayed.
    #[error("version {got} is not above the version {held} already held")]
    StaleVersion {
        /// Version held.
        held: i64,
        /// Version of the refused record.
        got: i64,
    },
    /// An unsigned record for a key whose status is signed.
    #[error("unsigned record for a key whose status is signed by an administrator")]
    Downgrade,
    /// A deletion (keys are revoked, never deleted).
    #[error("tombstone refused: keys are revoked, never deleted")]
    Tombstone,
    /// The record cannot be read as a status of its key.
    #[error("{0}")]
    Malformed(String),
}

impl RecordRefused {
    /// Every label value, for zero-initialised series.
    pub const REASONS: [&'static str; 7] = [
        "unsigned",
        "unknown_admin",
        "bad_signature",
        "malformed",
        "stale_version",
        "downgrade",
        "tombstone",
    ];

    /// The bounded label of `vigil_key_registry_records_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordRefused::Signature(r) => r.reason(),
            RecordRefused::StaleVersion { .. } => "stale_version",
            RecordRefused::Downgrade => "downgrade",
            RecordRefused::Tombstone => "tombstone",
            RecordRefused::Malformed(_) => "malformed",
        }
    }
}

/// Refused records a reader may leave unread before it lags.
pub const REFUSALS_BUFFERED: usize = 4_096;

/// One refused keys-topic record, as read, with why.
#[derive(Debug, Clone)]
pub struct RefusedKeyRecord {
    /// The record as read.
    pub record: RawKeyRecord,
    /// Why it was refused.
    pub refused: RecordRefused,
}

/// Windows of `vigil_key_registry_keys_by_expiry`: time left until `not_after` of keys that are
/// still accepted (active, or rotated within their grace).
const EXPIRY_WINDOWS: [(&str, i64); 4] = [
    ("expired", 0),
    ("within_7d", 7 * DAY_MICROS),
    ("within_14d", 14 * DAY_MICROS),
    ("within_30d", 30 * DAY_MICROS),
];
const DAY_MICROS: i64 = 86_400_000_000;
/// How often the expiry gauge is recomputed while following (time moves keys between windows).
const EXPIRY_REFRESH: Duration = Duration::from_secs(10);

/// A keys-topic record was refused.
struct KeyRecordRefused<'a> {
    metrics: &'a RegistryMetrics,
    partition: i32,
    offset: i64,
    key_id: &'a str,
    refused: &'a RecordRefused,
}

impl InternalEvent for KeyRecordRefused<'_> {
    fn emit(self) {
        let reason = self.refused.reason();
        tracing::warn!(
            event = "key_record_refused",
            partition = self.partition,
            offset = self.offset,
            key_id = self.key_id,
            reason,
            error = %self.refused,
            "key registry record refused; the key keeps its previous status"
        );
        self.metrics.refused.with_label_values(&[reason]).inc();
    }
}

/// Metrics of a key registry.
#[derive(Clone)]
struct RegistryMetrics {
    keys: IntGauge,
    updates: IntCounterVec,
    refused: IntCounterVec,
    by_expiry: IntGaugeVec,
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
                "Records applied from the keys topic, by kind: signed, unsigned (migration window).",
            ),
            &["kind"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "vigil_key_registry_records_refused_total",
                "Keys-topic records not applied, by reason: unsigned, unknown_admin, \
                 bad_signature, malformed, stale_version, downgrade, tombstone.",
            ),
            &["reason"],
        )?;
        let by_expiry = IntGaugeVec::new(
            Opts::new(
                "vigil_key_registry_keys_by_expiry",
                "Accepted keys (active, or rotated within grace) by time left until not_after: \
                 expired, within_7d, within_14d, within_30d, later, none.",
            ),
            &["window"],
        )?;
        for reason in RecordRefused::REASONS {
            refused.with_label_values(&[reason]);
        }
        for kind in ["signed", "unsigned"] {
            updates.with_label_values(&[kind]);
        }
        if let Some(r) = registry {
            r.register(Box::new(keys.clone()))?;
            r.register(Box::new(updates.clone()))?;
            r.register(Box::new(refused.clone()))?;
            r.register(Box::new(by_expiry.clone()))?;
        }
        Ok(Self {
            keys,
            updates,
            refused,
            by_expiry,
        })
    }
}

/// The in-memory key registry; cheap to share (`Arc`), lookups take a read lock.
pub struct KeyRegistry {
    keys: RwLock<HashMap<String, Arc<KeyView>>>,
    /// Every refused record, for whoever reports them as events (the verifier); the first
    /// receiver is kept from construction so refusals of the initial load are not missed.
    refusals: tokio::sync::broadcast::Sender<Arc<RefusedKeyRecord>>,
    first_refusals:
        std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<Arc<RefusedKeyRecord>>>>,
    anchors: Arc<TrustAnchors>,
    /// One view per trust anchor, for events administrators sign (key operations).
    administrators: HashMap<String, Arc<KeyView>>,
    accept_unsigned: bool,
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
    /// Returns an empty, unloaded registry trusting `anchors` that follows no topic (tests,
    /// tools).
    pub fn empty(anchors: Arc<TrustAnchors>) -> Arc<Self> {
        // Unregistered metrics cannot fail to build with static names.
        let metrics = match RegistryMetrics::new(None) {
            Ok(m) => m,
            Err(_) => unreachable_metrics(),
        };
        Arc::new(Self::with_metrics(metrics, anchors, false))
    }

    fn with_metrics(
        metrics: RegistryMetrics,
        anchors: Arc<TrustAnchors>,
        accept_unsigned: bool,
    ) -> Self {
        let (loaded, _) = watch::channel(false);
        let administrators = anchors
            .iter()
            .map(|(id, &public_key)| {
                let status = KeyStatus {
                    reason: Some("trust anchor".into()),
                    ..KeyStatus::active(id, &public_key, i64::MIN, id)
                };
                let view = KeyView {
                    public_key,
                    status,
                    seen_at: 0,
                    signed_by: Some(id.to_owned()),
                    administrator: true,
                };
                (id.to_owned(), Arc::new(view))
            })
            .collect();
        let (refusals, first) = tokio::sync::broadcast::channel(REFUSALS_BUFFERED);
        Self {
            keys: RwLock::new(HashMap::new()),
            refusals,
            first_refusals: std::sync::Mutex::new(Some(first)),
            administrators,
            anchors,
            accept_unsigned,
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
        let registry = Arc::new(Self::with_metrics(
            metrics,
            config.anchors.clone(),
            config.accept_unsigned,
        ));
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
        // The watermarks come from the registry's own consumer, which warms its connection
        // for the first fetch (a second client would cost its own connection set-up).
        let (consumer, ends) = {
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || {
                let marks = partition_watermarks_of(&consumer, &topic);
                (consumer, marks)
            })
            .await
            .map_err(|_| KeyRegistryError::Invalid("metadata task panicked".into()))?
        };
        let ends = ends?;
        // From the low watermark rather than `Beginning`, which would cost the consumer an
        // offset lookup (about half a second) before its first fetch.
        let mut tpl = TopicPartitionList::new();
        for (p, (low, _)) in &ends {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*low))
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
            ends.into_iter().map(|(p, (_, high))| (p, high)).collect(),
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

    /// Returns the current view of registered key `key_id`.
    pub fn get(&self, key_id: &str) -> Option<Arc<KeyView>> {
        read(&self.keys).get(key_id).cloned()
    }

    /// Returns the key that signs as `key_id`: an administrator (trust anchor) first, then a
    /// registered key. Administrators come from configuration, so no registry record can
    /// shadow one.
    pub fn signer(&self, key_id: &str) -> Option<Arc<KeyView>> {
        self.administrators
            .get(key_id)
            .cloned()
            .or_else(|| self.get(key_id))
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

    /// Returns the administrators this registry trusts.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// Returns the receiver of every refused record since the registry was built (the first
    /// call; later calls get the refusals from then on). At most [`REFUSALS_BUFFERED`] wait
    /// unread; a slower reader is told how many it missed (`RecvError::Lagged`), and every
    /// refusal is counted and logged regardless.
    pub fn refusals(&self) -> tokio::sync::broadcast::Receiver<Arc<RefusedKeyRecord>> {
        self.first_refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| self.refusals.subscribe())
    }

    /// Checks one keys-topic record as read (record key, value, administrator signature
    /// headers) and returns the administrator who signed it, `None` for an unsigned record
    /// accepted in the migration window.
    pub fn check_record(
        &self,
        record_key: &[u8],
        value: Option<&[u8]>,
        admin_key_id: Option<&[u8]>,
        signature: Option<&[u8]>,
    ) -> Result<Option<String>, RecordRefused> {
        let record = RawKeyRecord {
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: Some(record_key.to_vec()),
            value: value.map(<[u8]>::to_vec),
            admin_key_id: admin_key_id.map(<[u8]>::to_vec),
            signature: signature.map(<[u8]>::to_vec),
        };
        self.check_records(std::slice::from_ref(&record))
            .pop()
            .unwrap_or(Err(RecordRefused::Malformed("no record".into())))
    }

    /// [`KeyRegistry::check_record`] for many records, one result each, in order; their
    /// signatures are verified as one batch.
    pub fn check_records(
        &self,
        records: &[RawKeyRecord],
    ) -> Vec<Result<Option<String>, RecordRefused>> {
        let signed: Vec<admin::SignedKeyRecord<'_>> = records
            .iter()
            .map(|r| admin::SignedKeyRecord {
                record_key: r.key.as_deref().unwrap_or_default(),
                value: r.value.as_deref().unwrap_or_default(),
                admin_key_id: r.admin_key_id.as_deref(),
                signature: r.signature.as_deref(),
            })
            .collect();
        let checked = self.anchors.check_many(&signed);
        records
            .iter()
            .zip(checked)
            .map(|(r, checked)| {
                if r.key.is_none() {
                    return Err(RecordRefused::Malformed("record without a key".into()));
                }
                if r.value.is_none() {
                    return Err(RecordRefused::Tombstone);
                }
                match checked {
                    Ok(admin) => Ok(Some(admin)),
                    Err(Refusal::Unsigned) if self.accept_unsigned => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .collect()
    }

    /// Applies one status of `key_id` whose record was signed by `signed_by` (checked by
    /// [`KeyRegistry::check_record`]; `None` = unsigned, migration window): refused when it is
    /// not above the version held, or unsigned for a key that holds a signed status.
    pub fn apply(
        &self,
        key_id: &str,
        status: KeyStatus,
        signed_by: Option<String>,
    ) -> Result<(), RecordRefused> {
        if status.key_id != key_id {
            return Err(RecordRefused::Malformed(format!(
                "record key {key_id:?} differs from key_id {:?}",
                status.key_id
            )));
        }
        let public_key = PublicKey::from_slice(&status.public_key)
            .map_err(|e| RecordRefused::Malformed(format!("public key of {key_id:?}: {e}")))?;
        let view = Arc::new(KeyView {
            public_key,
            status,
            seen_at: vigil_schemas::model::now_micros(),
            signed_by,
            administrator: false,
        });
        {
            let mut keys = write(&self.keys);
            if let Some(held) = keys.get(key_id)
                && held.signed_by.is_some()
            {
                if view.signed_by.is_none() {
                    return Err(RecordRefused::Downgrade);
                }
                if view.status.version <= held.status.version {
                    return Err(RecordRefused::StaleVersion {
                        held: held.status.version,
                        got: view.status.version,
                    });
                }
            }
            let kind = if view.signed_by.is_some() {
                "signed"
            } else {
                "unsigned"
            };
            keys.insert(key_id.to_owned(), view);
            self.metrics.updates.with_label_values(&[kind]).inc();
            self.metrics
                .keys
                .set(i64::try_from(keys.len()).unwrap_or(i64::MAX));
        }
        self.applied.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Counts the accepted keys by time left until their `not_after`, judged at `now`.
    fn refresh_expiry(&self, now: TimestampMicros) {
        let mut counts = [0_i64; EXPIRY_WINDOWS.len() + 2];
        for v in read(&self.keys).values() {
            let s = &v.status;
            if !accepted_at(s, now) {
                continue;
            }
            let slot = match s.not_after {
                None => EXPIRY_WINDOWS.len() + 1,
                Some(t) => EXPIRY_WINDOWS
                    .iter()
                    .position(|(_, within)| t.saturating_sub(now) <= *within)
                    .unwrap_or(EXPIRY_WINDOWS.len()),
            };
            counts[slot] += 1;
        }
        let names = EXPIRY_WINDOWS
            .iter()
            .map(|(n, _)| *n)
            .chain(["later", "none"]);
        for (name, n) in names.zip(counts) {
            self.metrics.by_expiry.with_label_values(&[name]).set(n);
        }
    }

    fn mark_loaded(&self) {
        if !self.is_loaded.swap(true, Ordering::AcqRel) {
            self.refresh_expiry(vigil_schemas::model::now_micros());
            tracing::info!(
                keys = self.len(),
                anchors = self.anchors.len(),
                "key registry loaded"
            );
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
pub fn partition_watermarks<X: ConsumerContext + 'static>(
    client: &impl Consumer<X>,
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

fn watermarks_once<X: ConsumerContext + 'static>(
    client: &impl Consumer<X>,
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

/// Returns the low and high watermark of every partition of `topic`.
fn partition_watermarks_of<X: ConsumerContext + 'static>(
    client: &impl Consumer<X>,
    topic: &str,
) -> Result<Watermarks, KeyRegistryError> {
    match partition_watermarks(client, topic, METADATA_TIMEOUT) {
        Ok(Some(marks)) => Ok(marks),
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

/// Most records whose signatures are checked together while loading.
const CHECK_CHUNK: usize = 512;

/// One keys-topic record as read from Kafka.
#[derive(Debug, Clone)]
pub struct RawKeyRecord {
    /// Partition read from.
    pub partition: i32,
    /// Offset read from.
    pub offset: i64,
    /// The record's timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// Record key (the key id).
    pub key: Option<Vec<u8>>,
    /// Value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The administrator key id header.
    pub admin_key_id: Option<Vec<u8>>,
    /// The administrator signature header.
    pub signature: Option<Vec<u8>>,
}

impl RawKeyRecord {
    fn read(msg: &rdkafka::message::BorrowedMessage<'_>) -> Self {
        let header = |name: &str| {
            msg.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        };
        Self {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            admin_key_id: header(ADMIN_KEY_ID),
            signature: header(ADMIN_SIGNATURE),
        }
    }
}

/// A chunk of records whose signatures are being checked on a blocking thread.
type Checking = JoinHandle<(
    Vec<RawKeyRecord>,
    Vec<Result<Option<String>, RecordRefused>>,
)>;

/// Reads the keys topic for ever. Records are taken in chunks of what is ready (thousands at
/// start, usually one when following); a chunk's signatures are checked as one batch on a
/// blocking thread while the next chunk is read, and chunks are applied in order. The registry
/// counts as loaded once nothing is in flight and every partition's position reached the
/// watermark captured at start.
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
    let mut last_expiry = std::time::Instant::now();
    let mut in_flight: Option<Checking> = None;
    loop {
        if in_flight.is_none() && !registry.is_loaded() {
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
        } else if registry.is_loaded() && last_expiry.elapsed() >= EXPIRY_REFRESH {
            registry.refresh_expiry(vigil_schemas::model::now_micros());
            last_expiry = std::time::Instant::now();
        }
        let mut chunk = Vec::new();
        // What is ready now, without waiting (a timeout polls the receive once first).
        while chunk.len() < CHECK_CHUNK {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => chunk.push(RawKeyRecord::read(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "key registry consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        if chunk.is_empty() {
            // Nothing ready: finish the chunk in flight before waiting, so a record is applied
            // as soon as it is read.
            if let Some(checking) = in_flight.take() {
                apply_checked(&registry, &schemas, own_id, &codec, checking).await;
                continue;
            }
            match tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
                Err(_) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "key registry consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Ok(Ok(m)) => chunk.push(RawKeyRecord::read(&m)),
            }
        }
        for r in &chunk {
            if let Some(high) = remaining.get(&r.partition)
                && r.offset + 1 >= *high
            {
                remaining.remove(&r.partition);
            }
        }
        let previous = in_flight.take();
        let checker = registry.clone();
        in_flight = Some(tokio::task::spawn_blocking(move || {
            let checked = checker.check_records(&chunk);
            (chunk, checked)
        }));
        if let Some(checking) = previous {
            apply_checked(&registry, &schemas, own_id, &codec, checking).await;
        }
    }
}

/// Decodes and applies a checked chunk in order; every refusal is reported.
async fn apply_checked(
    registry: &KeyRegistry,
    schemas: &SchemaRegistry,
    own_id: SchemaId,
    codec: &Codec<KeyStatus>,
    checking: Checking,
) {
    let Ok((records, checked)) = checking.await else {
        // The check cannot panic on any input; if the thread died the records were not
        // applied, so say so loudly rather than pretend.
        tracing::error!("key registry signature check thread failed; records not applied");
        return;
    };
    for (r, signed_by) in records.iter().zip(checked) {
        let outcome = match signed_by {
            Err(e) => Err(e),
            Ok(signed_by) => apply_record(registry, schemas, own_id, codec, r, signed_by).await,
        };
        if let Err(refused) = outcome {
            let key_id = r
                .key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            KeyRecordRefused {
                metrics: &registry.metrics,
                partition: r.partition,
                offset: r.offset,
                key_id: &key_id,
                refused: &refused,
            }
            .emit();
            // No reader is not an error: the refusal is counted and logged above.
            let _ = registry.refusals.send(Arc::new(RefusedKeyRecord {
                record: r.clone(),
                refused,
            }));
        }
    }
}

/// Decodes and applies one record whose signature was checked.
async fn apply_record(
    registry: &KeyRegistry,
    schemas: &SchemaRegistry,
    own_id: SchemaId,
    codec: &Codec<KeyStatus>,
    r: &RawKeyRecord,
    signed_by: Option<String>,
) -> Result<(), RecordRefused> {
    let key_id = std::str::from_utf8(r.key.as_deref().unwrap_or_default())
        .map_err(|_| RecordRefused::Malformed("record key is not UTF-8".into()))?;
    let status = decode_status(
        schemas,
        own_id,
        codec,
        r.value.as_deref().unwrap_or_default(),
    )
    .await
    .map_err(RecordRefused::Malformed)?;
    registry.apply(key_id, status, signed_by)
}

/// Writes key statuses to the keys topic, signed by one administrator, and waits for the
/// broker's acknowledgement.
pub struct KeyStatusWriter {
    producer: FutureProducer,
    topic: String,
    schema_id: SchemaId,
    codec: Codec<KeyStatus>,
    admin: EventSigner,
}

impl std::fmt::Debug for KeyStatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStatusWriter")
            .field("topic", &self.topic)
            .field("schema_id", &self.schema_id)
            .field("admin", &admin::admin_id(&self.admin).as_str())
            .finish_non_exhaustive()
    }
}

impl KeyStatusWriter {
    /// Registers the `KeyStatus` schema under `<topic>-value` and builds an idempotent producer
    /// whose records `admin` signs.
    pub async fn new(
        topic: &str,
        schema_registry_url: &str,
        kafka: &KafkaClientConfig,
        admin: EventSigner,
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
            admin,
        })
    }

    /// Returns the key id of the administrator who signs this writer's records.
    pub fn admin_id(&self) -> String {
        admin::admin_id(&self.admin).as_str().to_owned()
    }

    /// Returns the administrator key that signs this writer's records.
    pub fn admin(&self) -> &EventSigner {
        &self.admin
    }

    /// Encodes `status` and signs it as the writer's administrator: (framed value, headers).
    pub fn sign(
        &self,
        status: &KeyStatus,
    ) -> Result<(Vec<u8>, admin::AdminHeaders), KeyRegistryError> {
        PublicKey::from_slice(&status.public_key)
            .map_err(|e| KeyRegistryError::Invalid(e.to_string()))?;
        let value = self
            .codec
            .encode_framed(self.schema_id, status)
            .map_err(KeyRegistryError::Encode)?;
        let headers = admin::sign_record(&self.admin, status.key_id.as_bytes(), &value);
        Ok((value, headers))
    }

    /// Writes `status` keyed by its key id, signed, and returns once the broker acknowledged
    /// it. The caller sets `status.version` one above the version it replaces.
    pub async fn write(&self, status: &KeyStatus) -> Result<(), KeyRegistryError> {
        let (value, headers) = self.sign(status)?;
        let mut owned = rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
        for (name, v) in &headers {
            owned = owned.insert(rdkafka::message::Header {
                key: name,
                value: Some(v),
            });
        }
        let record = FutureRecord::<str, Vec<u8>>::to(&self.topic)
            .key(&status.key_id)
            .payload(&value)
            .headers(owned);
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
            state,
            valid_from: 1_000,
            updated_at: 1_000,
            ..KeyStatus::active(
                "k1",
                EventSigner::from_seed(&[3; 32]).public_key(),
                0,
                "test",
            )
        }
    }

    fn view(s: KeyStatus) -> KeyView {
        KeyView {
            public_key: PublicKey::from_slice(&s.public_key).unwrap(),
            status: s,
            seen_at: 0,
            signed_by: Some("admin".into()),
            administrator: false,
        }
    }

    fn admin() -> EventSigner {
        EventSigner::from_seed(&[9; 32])
    }

    fn registry(accept_unsigned: bool) -> Arc<KeyRegistry> {
        let metrics = RegistryMetrics::new(None).unwrap();
        let anchors = Arc::new(TrustAnchors::new([*admin().public_key()]));
        Arc::new(KeyRegistry::with_metrics(metrics, anchors, accept_unsigned))
    }

    #[test]
    fn active_rotated_expired_and_unknown_keys() {
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
        let mut s = status(KeyState::Active);
        s.not_after = Some(3_000);
        let expiring = view(s);
        assert_eq!(expiring.decide(3_000, 9_000), KeyDecision::Valid);
        assert_eq!(
            expiring.decide(3_001, 9_000),
            KeyDecision::PastNotAfter { not_after: 3_000 }
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
                reason: "leaked".into(),
                emergency: false,
            }
        );
        s.emergency = true;
        let emergency = view(s);
        assert!(matches!(
            emergency.decide(2_000, 9_000),
            KeyDecision::Revoked {
                emergency: true,
                ..
            }
        ));
    }

    #[test]
    fn apply_refuses_mismatched_keys_bad_keys_and_versions_that_do_not_grow() {
        let r = registry(false);
        let signed = || Some("admin".to_owned());
        r.apply("k1", status(KeyState::Active), signed()).unwrap();
        assert_eq!(r.len(), 1);
        let refused = |e: Result<(), RecordRefused>| e.unwrap_err().reason();
        assert_eq!(
            refused(r.apply("other", status(KeyState::Active), signed())),
            "malformed"
        );
        let mut bad = status(KeyState::Active);
        bad.public_key = vec![1, 2, 3];
        bad.version = 9;
        assert_eq!(refused(r.apply("k1", bad, signed())), "malformed");
        let mut revoked = status(KeyState::Revoked);
        revoked.version = 2;
        r.apply("k1", revoked, signed()).unwrap();
        // The active record of version 1, replayed after the revocation.
        assert_eq!(
            refused(r.apply("k1", status(KeyState::Active), signed())),
            "stale_version"
        );
        let mut same = status(KeyState::Active);
        same.version = 2;
        assert_eq!(refused(r.apply("k1", same, signed())), "stale_version");
        let mut unsigned = status(KeyState::Active);
        unsigned.version = 3;
        assert_eq!(refused(r.apply("k1", unsigned, None)), "downgrade");
        assert_eq!(r.get("k1").unwrap().status.state, KeyState::Revoked);
    }

    #[test]
    fn only_administrator_signed_records_pass_unless_migrating() {
        let strict = registry(false);
        let a = admin();
        let value = b"framed value";
        let h = admin::sign_record(&a, b"k1", value);
        let (id, sig) = (Some(h[0].1.as_slice()), Some(h[1].1.as_slice()));
        assert_eq!(
            strict.check_record(b"k1", Some(value), id, sig),
            Ok(Some(admin::admin_id(&a).as_str().to_owned()))
        );
        let reason = |r: Result<Option<String>, RecordRefused>| r.unwrap_err().reason();
        assert_eq!(
            reason(strict.check_record(b"k1", Some(value), None, None)),
            "unsigned"
        );
        assert_eq!(
            reason(strict.check_record(b"k1", None, id, sig)),
            "tombstone"
        );
        let producer = EventSigner::from_seed(&[3; 32]);
        let h = admin::sign_record(&producer, b"k1", value);
        assert_eq!(
            reason(strict.check_record(b"k1", Some(value), Some(&h[0].1), Some(&h[1].1))),
            "unknown_admin"
        );
        let migrating = registry(true);
        assert_eq!(
            migrating.check_record(b"k1", Some(value), None, None),
            Ok(None)
        );
        assert_eq!(
            reason(migrating.check_record(b"k1", Some(b"x"), id, sig)),
            "bad_signature"
        );
    }

    #[test]
    fn keys_are_counted_by_time_left_until_expiry() {
        let r = registry(false);
        let day = DAY_MICROS;
        let now = 100 * day;
        for (i, (state, not_after)) in [
            (KeyState::Active, Some(now - 1)),
            (KeyState::Active, Some(now + 3 * day)),
            (KeyState::Active, Some(now + 10 * day)),
            (KeyState::Active, Some(now + 20 * day)),
            (KeyState::Active, Some(now + 90 * day)),
            (KeyState::Active, None),
            (KeyState::Revoked, Some(now + 3 * day)),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("k{i}");
            let s = KeyStatus {
                key_id: id.clone(),
                state,
                not_after,
                ..status(KeyState::Active)
            };
            r.apply(&id, s, Some("admin".into())).unwrap();
        }
        r.refresh_expiry(now);
        let g = |w: &str| r.metrics.by_expiry.with_label_values(&[w]).get();
        assert_eq!(
            [
                "expired",
                "within_7d",
                "within_14d",
                "within_30d",
                "later",
                "none"
            ]
            .map(g),
            [1, 1, 1, 1, 1, 1]
        );
    }
}
