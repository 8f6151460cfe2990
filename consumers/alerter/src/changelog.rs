//! The alerter's state changelog: a compacted Kafka topic (`vigil.alerter.state` by default)
//! holding the latest version of every dedup / group mark, active alert and silence, so a
//! restarted alerter knows what it already told whom.
//!
//! Keys: `mark/<dedup key>`, `alert/<alert id>`, `silence/<silence id>`. Values: a small JSON
//! document with `"v": 1`, wall-clock times in ms since the epoch. Removal, expiry and eviction
//! write a tombstone (null value) so compaction drops the key. Writes are enqueued while the
//! [`AlertBook`](crate::state::AlertBook) lock is held, so the topic sees mutations in the order
//! they happened; callers collect them in a [`Pending`] and wait for the broker's acks before
//! storing an offset or answering an API call.
//!
//! Each record carries the header [`INSTANCE_HEADER`] naming the alerter instance that wrote
//! it (a random id drawn at start). After [`read_snapshot`] each instance keeps reading the
//! topic from the snapshot's end offsets with a [`Follower`] and applies the writes of the
//! other instances ([`follow_record`]); records without the header (written before it
//! existed) are applied too. The topic's order is the order of the state: the last write of a
//! key wins. Partitions added to the topic after the start are not followed (it has one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_consumer::InboundRecord;
use vigil_schemas::Alert;
use vigil_topology::KafkaClientConfig;

use crate::config::{EscalationTier, MatchConfig};
use crate::internal_events::AlerterMetrics;
use crate::state::{Ack, AlertBook, RemoteApplied};

/// Version written in every value; a reader refuses (counts and skips) any other.
pub const VERSION: u32 = 1;

/// Largest changelog value read back; anything bigger is refused as malformed.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// Header naming the alerter instance (a random id drawn at start) that wrote a record; the
/// follower skips its own instance's records, whose mutations are already in memory.
pub const INSTANCE_HEADER: &str = "vigil-alerter-instance";

/// Why a changelog record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangelogError {
    /// The key is not UTF-8 or has no known `<kind>/` prefix.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The value is not the JSON document its key announces.
    #[error("{kind}: malformed value: {reason}")]
    Malformed {
        /// `mark`, `alert` or `silence`.
        kind: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// The value was written by a version this alerter does not know.
    #[error("{kind}: unknown value version {version} (this alerter reads {VERSION})")]
    UnknownVersion {
        /// `mark`, `alert` or `silence`.
        kind: &'static str,
        /// The version found.
        version: u64,
    },
}

impl ChangelogError {
    /// Returns the metric label of the error.
    pub fn reason(&self) -> &'static str {
        match self {
            ChangelogError::BadKey(_) => "bad_key",
            ChangelogError::Malformed { .. } => "malformed",
            ChangelogError::UnknownVersion { .. } => "unknown_version",
        }
    }
}

/// The key of one changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// A dedup or group mark, by its dedup key.
    Mark(String),
    /// An active alert, by alert id.
    Alert(Uuid),
    /// A silence, by silence id.
    Silence(Uuid),
}

impl StateKey {
    /// Returns the record key (`mark/…`, `alert/…`, `silence/…`).
    pub fn encode(&self) -> String {
        match self {
            StateKey::Mark(k) => format!("mark/{k}"),
            StateKey::Alert(id) => format!("alert/{id}"),
            StateKey::Silence(id) => format!("silence/{id}"),
        }
    }

    /// Returns the kind, also the metric label: `mark`, `alert` or `silence`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateKey::Mark(_) => "mark",
            StateKey::Alert(_) => "alert",
            StateKey::Silence(_) => "silence",
        }
    }

    /// Parses a record key.
    pub fn parse(key: &[u8]) -> Result<Self, ChangelogError> {
        let text =
            std::str::from_utf8(key).map_err(|_| ChangelogError::BadKey("not UTF-8".to_owned()))?;
        let (kind, rest) = text
            .split_once('/')
            .ok_or_else(|| ChangelogError::BadKey("no kind prefix".to_owned()))?;
        let id = |what: &str| {
            Uuid::parse_str(rest).map_err(|_| ChangelogError::BadKey(format!("{what}: not a uuid")))
        };
        match kind {
            "mark" if !rest.is_empty() => Ok(StateKey::Mark(rest.to_owned())),
            "alert" => id("alert").map(StateKey::Alert),
            "silence" => id("silence").map(StateKey::Silence),
            _ => Err(ChangelogError::BadKey(format!("unknown kind {kind:?}"))),
        }
    }
}

/// A dedup or group mark: `alert_id` was notified (or is being notified) under this key until
/// `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// The alert that set the mark; the same id arriving again is a redelivery, not a duplicate.
    pub alert_id: Uuid,
    /// End of the window, ms since the epoch.
    pub expires_at_ms: i64,
}

/// A running escalation policy of one route of an active alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationDoc {
    /// The route whose policy this is.
    pub route: String,
    /// First notification, ms since the epoch; tier delays count from here.
    pub started_at_ms: i64,
    /// Tiers already notified (0: none).
    pub fired: usize,
    /// The policy as it was when the alert was notified.
    pub tiers: Vec<EscalationTier>,
}

/// The consumed record an alert came from, kept for alerts with an escalation policy so a tier
/// that stays undeliverable after a restart can still be dead-lettered byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginDoc {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp, ms since the epoch.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// Record key, hex.
    #[serde(default)]
    pub key_hex: Option<String>,
    /// Record value, hex.
    #[serde(default)]
    pub value_hex: Option<String>,
    /// Headers in wire order, values hex.
    #[serde(default)]
    pub headers: Vec<(String, Option<String>)>,
}

impl OriginDoc {
    /// Captures a consumed record.
    pub fn from_record(r: &InboundRecord) -> Self {
        Self {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key_hex: r.key.as_deref().map(hex::encode),
            value_hex: r.value.as_deref().map(hex::encode),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(hex::encode)))
                .collect(),
        }
    }

    /// Rebuilds the record; `None` when a hex field is corrupt.
    pub fn to_record(&self) -> Option<InboundRecord> {
        let bytes = |h: &Option<String>| match h {
            Some(h) => hex::decode(h).ok().map(Some),
            None => Some(None),
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers.push((k.clone(), bytes(v)?));
        }
        Some(InboundRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: bytes(&self.key_hex)?,
            value: bytes(&self.value_hex)?,
            headers,
            attempt: 1,
        })
    }
}

/// An active (notified) alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// The alert as consumed.
    pub alert: Alert,
    /// First notification, ms since the epoch.
    pub notified_at_ms: i64,
    /// End of the active period (`state.active_ttl_ms` after the notification).
    pub expires_at_ms: i64,
    /// Routes it was notified through.
    pub routes: Vec<String>,
    /// Alerts folded into its group.
    #[serde(default)]
    pub grouped: u64,
    /// Highest escalation tier notified.
    #[serde(default)]
    pub escalation_tier: usize,
    /// The acknowledgement, once given.
    #[serde(default)]
    pub ack: Option<Ack>,
    /// Escalation policies still running.
    #[serde(default)]
    pub escalations: Vec<EscalationDoc>,
    /// The record it came from (alerts with an escalation policy only).
    #[serde(default)]
    pub origin: Option<OriginDoc>,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// Silence id.
    pub id: Uuid,
    /// What it matches.
    pub matchers: MatchConfig,
    /// End, ms since the epoch.
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Creation, ms since the epoch.
    pub created_at_ms: i64,
}

/// One decoded changelog value.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// A mark.
    Mark(MarkDoc),
    /// An active alert.
    Alert(Box<AlertDoc>),
    /// A silence.
    Silence(SilenceDoc),
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    kind: &'static str,
    value: &[u8],
) -> Result<T, ChangelogError> {
    let malformed = |reason: String| ChangelogError::Malformed { kind, reason };
    if value.len() > MAX_VALUE_BYTES {
        return Err(malformed(format!(
            "{} bytes, above {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    let probe: VersionProbe =
        serde_json::from_slice(value).map_err(|e| malformed(e.to_string()))?;
    match probe.v {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(match n.as_u64() {
                Some(version) => ChangelogError::UnknownVersion { kind, version },
                None => malformed(format!("version {n} is not an unsigned integer")),
            });
        }
        Some(_) | None => return Err(malformed("missing or non-numeric \"v\"".to_owned())),
    }
    serde_json::from_slice(value).map_err(|e| malformed(e.to_string()))
}

/// Decodes one record's value against its key; ids inside the value must match the key.
pub fn decode(key: &StateKey, value: &[u8]) -> Result<StateValue, ChangelogError> {
    match key {
        StateKey::Mark(_) => parse::<MarkDoc>("mark", value).map(StateValue::Mark),
        StateKey::Alert(id) => {
            let doc: AlertDoc = parse("alert", value)?;
            if doc.alert.alert_id != *id {
                return Err(ChangelogError::Malformed {
                    kind: "alert",
                    reason: format!("alert_id {} differs from the key", doc.alert.alert_id),
                });
            }
            Ok(StateValue::Alert(Box::new(doc)))
        }
        StateKey::Silence(id) => {
            let doc: SilenceDoc = parse("silence", value)?;
            if doc.id != *id {
                return Err(ChangelogError::Malformed {
                    kind: "silence",
                    reason: format!("id {} differs from the key", doc.id),
                });
            }
            Ok(StateValue::Silence(doc))
        }
    }
}

/// Decodes a snapshot's entries; undecodable ones are logged, counted in
/// `vigil_alerter_state_restore_skipped_total` by reason, and skipped (a value written by a
/// newer alerter is left in the topic for that alerter).
pub fn decode_snapshot(
    entries: &[(Vec<u8>, Vec<u8>)],
    metrics: &AlerterMetrics,
) -> Vec<(StateKey, StateValue)> {
    let mut values = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match StateKey::parse(key).and_then(|k| decode(&k, value).map(|v| (k, v))) {
            Ok(kv) => values.push(kv),
            Err(e) => {
                metrics
                    .state_restore_skipped
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(
                    error = %e,
                    key = %String::from_utf8_lossy(key),
                    "state changelog entry skipped"
                );
            }
        }
    }
    values
}

/// Encodes a document; serialising these plain structs cannot fail in practice, and an empty
/// value is refused by [`decode`] rather than mistaken for a tombstone.
pub fn encode<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
}

/// Why a state write was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state changelog write failed: {0}")]
pub struct StateWriteError(pub String);

/// Where state writes go: the producer, the topic, and the instance id each write is tagged
/// with ([`INSTANCE_HEADER`]).
#[derive(Clone)]
pub struct Changelog {
    producer: FutureProducer,
    topic: String,
    instance: String,
}

impl Changelog {
    /// Returns a changelog writing to `topic` through `producer` (idempotent, acks=all), each
    /// record tagged with `instance`.
    pub fn new(producer: FutureProducer, topic: String, instance: String) -> Self {
        Self {
            producer,
            topic,
            instance,
        }
    }

    /// Returns the instance id this changelog tags its writes with.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Enqueues one write (`None`: tombstone) without waiting.
    pub(crate) fn enqueue(
        &self,
        key: &StateKey,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let k = key.encode();
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: INSTANCE_HEADER,
            value: Some(self.instance.as_bytes()),
        });
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .key(&k)
            .headers(headers);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }
}

/// State writes enqueued for one record or one API call, awaited together.
#[derive(Default)]
pub struct Pending {
    futures: Vec<DeliveryFuture>,
    failed: Vec<String>,
}

impl Pending {
    /// Returns an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, r: Result<DeliveryFuture, KafkaError>) {
        match r {
            Ok(f) => self.futures.push(f),
            Err(e) => self.failed.push(e.to_string()),
        }
    }

    /// Returns how many writes are enqueued or failed to enqueue.
    pub fn len(&self) -> usize {
        self.futures.len() + self.failed.len()
    }

    /// Returns true when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the broker acknowledged every write; the first failure is the error.
    pub async fn acked(self) -> Result<usize, StateWriteError> {
        let n = self.len();
        let mut failed = self.failed;
        for r in futures::future::join_all(self.futures).await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed.push(e.to_string()),
                Err(_) => failed.push("producer dropped the write".to_owned()),
            }
        }
        match failed.into_iter().next() {
            None => Ok(n),
            Some(e) => Err(StateWriteError(e)),
        }
    }
}

/// Why the changelog could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Kafka refused or failed.
    #[error("state topic {topic}: {what}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What was being done.
        what: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist.
    #[error("state topic {0} does not exist (create it with `vigil topology apply`)")]
    Missing(String),
    /// The reading thread died (a bug).
    #[error("state restore task failed")]
    Task,
    /// The end was not reached in time.
    #[error("state topic {topic}: end not reached within {timeout_ms} ms")]
    Timeout {
        /// The topic.
        topic: String,
        /// The bound.
        timeout_ms: u64,
    },
}

/// The raw latest value per key, as read from the changelog (tombstoned keys removed), in the
/// order each key was last written.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Key bytes and value bytes.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records read, tombstones and superseded values included.
    pub records: u64,
    /// The high watermark of every partition when the read started: where following goes on.
    pub ends: Vec<(i32, i64)>,
}

/// Reads `topic` from the beginning to the high watermarks taken at start, with a consumer that
/// joins no group and commits nothing. Blocking: run it on a blocking thread.
pub fn read_snapshot(
    kafka: &KafkaClientConfig,
    group_hint: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Snapshot, RestoreError> {
    let kerr = |what: &'static str| {
        let topic = topic.to_owned();
        move |source| RestoreError::Kafka {
            topic: topic.clone(),
            what,
            source,
        }
    };
    let mut client = kafka.consumer(&format!("{group_hint}-state-restore"));
    client
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = client.create().map_err(kerr("create restore consumer"))?;
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let marks = vigil_consumer::key_registry::partition_watermarks(&consumer, topic, left())
        .map_err(|(what, source)| kerr(what)(source))?
        .ok_or_else(|| RestoreError::Missing(topic.to_owned()))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, (low, high)) in &marks {
        if high > low {
            ends.insert(*p, *high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(kerr("assign"))?;
        }
    }
    let mut latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
    let mut snapshot = Snapshot {
        ends: marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
        ..Snapshot::default()
    };
    if ends.is_empty() {
        return Ok(snapshot);
    }
    consumer.assign(&tpl).map_err(kerr("assign"))?;
    let mut seq = 0u64;
    while !ends.is_empty() {
        if left().is_zero() {
            return Err(RestoreError::Timeout {
                topic: topic.to_owned(),
                timeout_ms: timeout.as_millis() as u64,
            });
        }
        let Some(m) = consumer.poll(left().min(Duration::from_millis(200))) else {
            // Nothing more to read: a partition whose position passed its end (a trailing
            // transaction marker is never delivered) is done.
            if let Ok(pos) = consumer.position() {
                for e in pos.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && ends.get(&e.partition()).is_some_and(|end| o >= *end)
                    {
                        ends.remove(&e.partition());
                    }
                }
            }
            continue;
        };
        let m = m.map_err(kerr("read"))?;
        snapshot.records += 1;
        seq += 1;
        if let Some(k) = m.key() {
            latest.insert(k.to_vec(), (seq, m.payload().map(<[u8]>::to_vec)));
        }
        // Transaction markers and compacted-away offsets leave gaps: the end is reached once the
        // position passes the last offset below the high watermark.
        if let Some(end) = ends.get(&m.partition())
            && m.offset() + 1 >= *end
        {
            ends.remove(&m.partition());
        }
    }
    let mut kept: Vec<(u64, Vec<u8>, Vec<u8>)> = latest
        .into_iter()
        .filter_map(|(k, (s, v))| v.map(|v| (s, k, v)))
        .collect();
    kept.sort_by_key(|(s, _, _)| *s);
    snapshot.entries = kept.into_iter().map(|(_, k, v)| (k, v)).collect();
    Ok(snapshot)
}

/// What the follower did with one changelog record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Written by this instance: its mutation is already in memory.
    Own,
    /// Another instance's write, applied; the kind (`mark`, `alert`, `silence`, `tombstone`).
    Applied(&'static str),
    /// Not applied; the reason (see `vigil_alerter_state_follow_skipped_total`).
    Skipped(&'static str),
}

/// Applies one record read by the follower to `book` unless `instance` wrote it, and counts
/// the outcome. Records without [`INSTANCE_HEADER`] (written before instances were tagged) are
/// applied. Decoding is [`StateKey::parse`] and [`decode`], as at restore; applying is
/// [`AlertBook::apply_remote`], which writes nothing back.
pub fn follow_record(
    book: &AlertBook,
    instance: &str,
    writer: Option<&[u8]>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    metrics: &AlerterMetrics,
) -> Followed {
    let followed = apply_followed(book, instance, writer, key, value);
    match followed {
        Followed::Own => metrics.state_follow_skipped.with_label_values(&["own"]),
        Followed::Applied(kind) => metrics.state_follow_applied.with_label_values(&[kind]),
        Followed::Skipped(reason) => metrics.state_follow_skipped.with_label_values(&[reason]),
    }
    .inc();
    followed
}

fn apply_followed(
    book: &AlertBook,
    instance: &str,
    writer: Option<&[u8]>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Followed {
    if writer == Some(instance.as_bytes()) {
        return Followed::Own;
    }
    let Some(key) = key else {
        return Followed::Skipped("no_key");
    };
    let decoded = StateKey::parse(key).and_then(|k| match value {
        None => Ok((k, None)),
        Some(v) => decode(&k, v).map(|v| (k, Some(v))),
    });
    let (key, value) = match decoded {
        Ok(kv) => kv,
        Err(e) => {
            tracing::warn!(
                error = %e,
                key = %String::from_utf8_lossy(key),
                "followed state changelog record skipped"
            );
            return Followed::Skipped(e.reason());
        }
    };
    let kind = if value.is_some() {
        key.kind()
    } else {
        "tombstone"
    };
    match book.apply_remote(key, value) {
        RemoteApplied::Upserted | RemoteApplied::Removed => Followed::Applied(kind),
        other => Followed::Skipped(other.as_str()),
    }
}

/// Keeps reading the state changelog after the start-up restore and applies the other
/// instances' writes to this instance's [`AlertBook`], in offset order. Its consumer joins no
/// group and commits nothing; it starts at the restore's end offsets, and after an error it is
/// recreated from the next unread offsets (with a growing pause), so it never silently stops.
pub struct Follower {
    kafka: KafkaClientConfig,
    group_hint: String,
    topic: String,
    instance: String,
    next: HashMap<i32, i64>,
    book: Arc<AlertBook>,
    metrics: AlerterMetrics,
}

/// Consecutive read errors after which the follower's consumer is recreated.
const FOLLOW_MAX_ERRORS: u32 = 5;
/// Pause after a read error.
const FOLLOW_ERROR_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause before recreating the consumer.
const FOLLOW_MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Follower {
    /// Returns a follower of `topic` from `ends` (the snapshot's end offsets) that skips the
    /// writes of `instance`.
    pub fn new(
        kafka: &KafkaClientConfig,
        group_hint: &str,
        topic: &str,
        instance: &str,
        ends: &[(i32, i64)],
        book: Arc<AlertBook>,
        metrics: AlerterMetrics,
    ) -> Self {
        Self {
            kafka: kafka.clone(),
            group_hint: group_hint.to_owned(),
            topic: topic.to_owned(),
            instance: instance.to_owned(),
            next: ends.iter().copied().collect(),
            book,
            metrics,
        }
    }

    /// Follows until the task is aborted (the service stops or is dropped).
    pub async fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.consumer() {
                Ok(consumer) => {
                    self.metrics.state_follower_up.set(1);
                    if self.read(&consumer).await {
                        backoff = Duration::from_secs(1);
                    }
                }
                Err(e) => self
                    .metrics
                    .follow_failed("create consumer", &e.to_string()),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(FOLLOW_MAX_BACKOFF);
        }
    }

    fn consumer(&self) -> Result<StreamConsumer, KafkaError> {
        let mut client = self
            .kafka
            .consumer(&format!("{}-state-follow", self.group_hint));
        client
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // Another instance's ack or silence should apply here within a fetch round trip,
            // while under load (this instance's own writes come back too) fetches stay few and
            // large rather than one per write.
            .set("fetch.wait.max.ms", "100")
            .set("fetch.min.bytes", "65536")
            // An offset compaction made invalid: read again from the start (writes are
            // idempotent, the last one per key still wins).
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = client.create()?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.next {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Reads until too many consecutive errors; returns whether any record was read.
    async fn read(&mut self, consumer: &StreamConsumer) -> bool {
        let (mut errors, mut read_any) = (0, false);
        loop {
            let m = match consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    self.metrics.follow_failed("read", &e.to_string());
                    errors += 1;
                    if errors >= FOLLOW_MAX_ERRORS {
                        return read_any;
                    }
                    tokio::time::sleep(FOLLOW_ERROR_PAUSE).await;
                    continue;
                }
            };
            if errors > 0 {
                self.metrics.state_follower_up.set(1);
                errors = 0;
            }
            read_any = true;
            let writer = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == INSTANCE_HEADER)
                    .and_then(|h| h.value)
            });
            follow_record(
                &self.book,
                &self.instance,
                writer,
                m.key(),
                m.payload(),
                &self.metrics,
            );
            if let Some(ts) = m.timestamp().to_millis() {
                let now = vigil_schemas::model::now_micros() / 1_000;
                let delay_ms = now.saturating_sub(ts).max(0);
                self.metrics
                    .state_follow_delay_seconds
                    .set(delay_ms as f64 / 1_000.0);
            }
            self.next.insert(m.partition(), m.offset() + 1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;
    use vigil_schemas::Severity;

    #[test]
    fn keys_round_trip_and_bad_keys_are_typed_errors() {
        let id = Uuid::new_v4();
        for k in [
            StateKey::Mark("d\u{1f}route\u{1f}fp/with/slashes".into()),
            StateKey::Alert(id),
            StateKey::Silence(id),
        ] {
            assert_eq!(StateKey::parse(k.encode().as_bytes()).unwrap(), k);
        }
        assert_eq!(StateKey::Alert(id).encode(), format!("alert/{id}"));
        for bad in [
            &b"\xff\xfe"[..],
            b"nokind",
            b"alert/not-a-uuid",
            b"thing/x",
            b"mark/",
        ] {
            let e = StateKey::parse(bad).unwrap_err();
            assert_eq!(e.reason(), "bad_key", "{bad:?}: {e}");
        }
    }

    #[test]
    fn mark_value_is_versioned_json_with_wall_clock_times() {
        let id = Uuid::new_v4();
        let doc = MarkDoc {
            v: VERSION,
            alert_id: id,
            expires_at_ms: 1_800_000_000_123,
        };
        let bytes = encode(&doc);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["alert_id"], id.to_string());
        assert_eq!(json["expires_at_ms"], 1_800_000_000_123_i64);
        let key = StateKey::Mark("k".into());
        assert_eq!(decode(&key, &bytes).unwrap(), StateValue::Mark(doc));
    }

    #[test]
    fn alert_and_silence_values_round_trip() {
        let a = alert("r1", Severity::Critical, &[("tenant", "acme")]);
        let record = InboundRecord {
            topic: "vigil.alerts".into(),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"fp".to_vec()),
            value: Some(vec![0, 0, 0, 0, 1, 0xff]),
            headers: vec![
                ("traceparent".into(), Some(b"00-ab".to_vec())),
                ("n".into(), None),
            ],
            attempt: 3,
        };
        let doc = AlertDoc {
            v: VERSION,
            alert: a.clone(),
            notified_at_ms: 1_700_000_000_500,
            expires_at_ms: 1_700_086_400_500,
            routes: vec!["route".into()],
            grouped: 2,
            escalation_tier: 1,
            ack: Some(Ack {
                by: "alice".into(),
                comment: "mine".into(),
                at_ms: 1_700_000_001_000,
            }),
            escalations: vec![EscalationDoc {
                route: "route".into(),
                started_at_ms: 1_700_000_000_500,
                fired: 1,
                tiers: vec![EscalationTier {
                    receivers: vec!["lead".into()],
                    after_ms: 800,
                }],
            }],
            origin: Some(OriginDoc::from_record(&record)),
        };
        let key = StateKey::Alert(a.alert_id);
        let back = decode(&key, &encode(&doc)).unwrap();
        assert_eq!(back, StateValue::Alert(Box::new(doc.clone())));
        let rebuilt = doc.origin.as_ref().unwrap().to_record().unwrap();
        assert_eq!(rebuilt.value, record.value);
        assert_eq!(rebuilt.headers, record.headers);
        assert_eq!((rebuilt.offset, rebuilt.attempt), (42, 1));
        // The key names another alert: refused.
        let other = StateKey::Alert(Uuid::new_v4());
        assert_eq!(
            decode(&other, &encode(&doc)).unwrap_err().reason(),
            "malformed"
        );

        let s = SilenceDoc {
            v: VERSION,
            id: Uuid::new_v4(),
            matchers: MatchConfig {
                rule_id: vec!["noisy".into()],
                ..MatchConfig::default()
            },
            ends_at_ms: 1_700_000_600_000,
            created_by: "bob".into(),
            comment: "maintenance".into(),
            created_at_ms: 1_700_000_000_000,
        };
        let key = StateKey::Silence(s.id);
        assert_eq!(decode(&key, &encode(&s)).unwrap(), StateValue::Silence(s));
    }

    #[test]
    fn unknown_versions_and_garbage_are_typed_errors_not_panics() {
        let key = StateKey::Mark("k".into());
        let id = Uuid::new_v4();
        let v2 = format!(r#"{{"v":2,"alert_id":"{id}","expires_at_ms":1,"new":true}}"#);
        assert_eq!(
            decode(&key, v2.as_bytes()).unwrap_err(),
            ChangelogError::UnknownVersion {
                kind: "mark",
                version: 2
            }
        );
        for bad in [
            &b""[..],
            b"\x00\x01\x02",
            b"null",
            b"[]",
            b"{}",
            br#"{"v":"1"}"#,
            br#"{"v":-1}"#,
            br#"{"v":1.5}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"alert_id":"nope","expires_at_ms":1}"#,
            br#"{"v":1,"alert_id":"00000000-0000-0000-0000-000000000000","expires_at_ms":"soon"}"#,
        ] {
            let e = decode(&key, bad).unwrap_err();
            assert_eq!(
                e.reason(),
                "malformed",
                "{:?}: {e}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_VALUE_BYTES + 1];
        assert_eq!(decode(&key, &huge).unwrap_err().reason(), "malformed");
        let alert_key = StateKey::Alert(id);
        let e = decode(&alert_key, br#"{"v":7}"#).unwrap_err();
        assert_eq!(e.reason(), "unknown_version");
        assert!(e.to_string().contains("unknown value version 7"), "{e}");
    }

    #[test]
    fn a_snapshot_keeps_good_entries_and_counts_the_bad_ones() {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        let id = Uuid::new_v4();
        let good = encode(&MarkDoc {
            v: VERSION,
            alert_id: id,
            expires_at_ms: 5,
        });
        let entries = vec![
            (b"mark/a".to_vec(), good.clone()),
            (b"mark/b".to_vec(), br#"{"v":2}"#.to_vec()),
            (b"mark/c".to_vec(), b"{not json".to_vec()),
            (b"bogus".to_vec(), good.clone()),
            (format!("silence/{id}").into_bytes(), good),
        ];
        let values = decode_snapshot(&entries, &metrics);
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0, StateKey::Mark("a".into()));
        assert_eq!(metrics.restore_skipped("unknown_version"), 1);
        assert_eq!(
            metrics.restore_skipped("malformed"),
            2,
            "garbage, and a mark under a silence key"
        );
        assert_eq!(metrics.restore_skipped("bad_key"), 1);
    }

    #[test]
    fn the_follower_skips_own_writes_applies_others_and_writes_nothing() {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        let book = AlertBook::new(crate::config::StateConfig::default(), metrics.clone());
        let own = "instance-a";
        let doc = |id: Uuid| {
            encode(&MarkDoc {
                v: VERSION,
                alert_id: id,
                expires_at_ms: vigil_schemas::model::now_micros() / 1_000 + 60_000,
            })
        };
        let (theirs, mine, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let follow = |writer: Option<&str>, key: &str, value: Option<&[u8]>| {
            follow_record(
                &book,
                own,
                writer.map(str::as_bytes),
                Some(key.as_bytes()),
                value,
                &metrics,
            )
        };
        let now = Instant::now();
        let w = Duration::from_secs(60);
        // Own write: skipped, the book does not learn it from the topic.
        assert_eq!(
            follow(Some(own), "mark/own", Some(&doc(mine))),
            Followed::Own
        );
        assert_eq!(book.mark("own", w, other, now, &mut Pending::new()), None);
        // Another instance's write, and an untagged (older) one: applied.
        assert_eq!(
            follow(Some("instance-b"), "mark/b", Some(&doc(theirs))),
            Followed::Applied("mark")
        );
        assert_eq!(
            follow(None, "mark/old", Some(&doc(theirs))),
            Followed::Applied("mark")
        );
        for k in ["b", "old"] {
            assert_eq!(
                book.mark(k, w, other, now, &mut Pending::new()),
                Some(theirs)
            );
        }
        assert_eq!(
            follow(Some("instance-b"), "mark/b", None),
            Followed::Applied("tombstone")
        );
        assert_eq!(
            follow(Some("instance-b"), "mark/c", Some(b"{garbage")),
            Followed::Skipped("malformed")
        );
        assert_eq!(
            follow(Some("instance-b"), "thing/x", None),
            Followed::Skipped("bad_key")
        );
        assert_eq!(metrics.follow_skipped("own"), 1);
        assert_eq!(metrics.follow_applied("mark"), 2);
        assert_eq!(metrics.follow_applied("tombstone"), 1);
        assert_eq!(metrics.follow_skipped("malformed"), 1);
        // Only the one local mark (the "own" key) was written; following wrote nothing.
        assert_eq!(metrics.state_writes("mark"), 1);
        assert_eq!(metrics.state_writes("tombstone"), 0);
    }
}
