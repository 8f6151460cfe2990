//! Row types of the audit tables, in column order, for RowBinary through the `clickhouse` crate.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_schemas::model::{Status, VerifiedEvent};

/// One `audit_events` row. Optional event fields are stored as `''` so SOC queries need no
/// `Nullable` handling; times are microseconds since the epoch (`DateTime64(6, 'UTC')`).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AuditRow {
    /// Event id (idempotency key of the producer).
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    /// When it happened (producer clock).
    pub occurred_at: i64,
    /// When the verifier decided.
    pub verified_at: i64,
    /// When the sink built the batch holding this row (equal for every row of a batch).
    pub ingested_at: i64,
    /// OCSF class symbol.
    pub class: String,
    /// Activity name.
    pub activity: String,
    /// OCSF activity id.
    pub activity_id: i32,
    /// Status symbol.
    pub status: String,
    /// Severity symbol.
    pub severity: String,
    /// Verifier verdict: valid, bad, revoked, untrusted, unknown.
    pub state: String,
    /// Why the verdict is not valid.
    pub reason: String,
    /// Producer platform.
    pub platform: String,
    /// Producer service.
    pub service: String,
    /// Producer host.
    pub host: String,
    /// Subject principal.
    pub principal: String,
    /// Key id the signature claimed (else the subject's key id).
    pub key_id: String,
    /// Client IP.
    pub client_ip: String,
    /// Tenant.
    pub tenant: String,
    /// W3C trace id.
    pub trace_id: String,
    /// W3C span id.
    pub span_id: String,
    /// Extra attributes, sorted by key.
    pub attributes: Vec<(String, String)>,
    /// The exact framed bytes the producer signed.
    #[serde(with = "serde_bytes")]
    pub signed_value: Vec<u8>,
    /// The producer's signature over `signed_value`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Topic the sink consumed.
    pub kafka_topic: String,
    /// Partition the sink consumed (one hash chain per partition).
    pub kafka_partition: i32,
    /// Offset of the verified record.
    pub kafka_offset: i64,
    /// Position in the partition's chain, from 0 without gaps.
    pub seq: u64,
    /// Chain hash of the previous row (32 zero bytes for seq 0).
    pub prev_hash: [u8; 32],
    /// This row's chain hash.
    pub chain_hash: [u8; 32],
}

impl AuditRow {
    /// Builds the row for a verified event; the chain fields are filled by [`crate::chain`].
    pub fn from_verified(
        v: &VerifiedEvent,
        topic: &str,
        partition: i32,
        offset: i64,
        ingested_at: i64,
    ) -> Self {
        let r = RowView::from_verified(v, topic, partition, offset, ingested_at);
        AuditRow {
            event_id: r.event_id,
            occurred_at: r.occurred_at,
            verified_at: r.verified_at,
            ingested_at: r.ingested_at,
            class: r.class.to_owned(),
            activity: r.activity.to_owned(),
            activity_id: r.activity_id,
            status: r.status.to_owned(),
            severity: r.severity.to_owned(),
            state: r.state.to_owned(),
            reason: r.reason.to_owned(),
            platform: r.platform.to_owned(),
            service: r.service.to_owned(),
            host: r.host.to_owned(),
            principal: r.principal.to_owned(),
            key_id: r.key_id.to_owned(),
            client_ip: r.client_ip.to_owned(),
            tenant: r.tenant.to_owned(),
            trace_id: r.trace_id.to_owned(),
            span_id: r.span_id.to_owned(),
            attributes: r
                .attributes
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            signed_value: r.signed_value.to_vec(),
            signature: r.signature.to_vec(),
            kafka_topic: r.kafka_topic.to_owned(),
            kafka_partition: r.kafka_partition,
            kafka_offset: r.kafka_offset,
            seq: 0,
            prev_hash: [0; 32],
            chain_hash: [0; 32],
        }
    }

    /// Returns the row as a borrowed view (for hashing and encoding).
    pub fn view(&self) -> RowView<'_, AttrIter<'_, std::slice::Iter<'_, (String, String)>>> {
        RowView {
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            verified_at: self.verified_at,
            ingested_at: self.ingested_at,
            class: &self.class,
            activity: &self.activity,
            activity_id: self.activity_id,
            status: &self.status,
            severity: &self.severity,
            state: &self.state,
            reason: &self.reason,
            platform: &self.platform,
            service: &self.service,
            host: &self.host,
            principal: &self.principal,
            key_id: &self.key_id,
            client_ip: &self.client_ip,
            tenant: &self.tenant,
            trace_id: &self.trace_id,
            span_id: &self.span_id,
            attributes: AttrIter(self.attributes.iter()),
            signed_value: &self.signed_value,
            signature: &self.signature,
            kafka_topic: &self.kafka_topic,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            seq: self.seq,
            prev_hash: self.prev_hash,
        }
    }

    /// Returns an estimate of the row's RowBinary size, for the batch byte bound.
    pub fn encoded_len(&self) -> usize {
        let strings = [
            &self.class,
            &self.activity,
            &self.status,
            &self.severity,
            &self.state,
            &self.reason,
            &self.platform,
            &self.service,
            &self.host,
            &self.principal,
            &self.key_id,
            &self.client_ip,
            &self.tenant,
            &self.trace_id,
            &self.span_id,
            &self.kafka_topic,
        ];
        let attrs: usize = self
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        16 + 8 * 3
            + 4
            + 4
            + 8
            + 8
            + 64
            + 32
            + strings.iter().map(|s| s.len() + 2).sum::<usize>()
            + attrs
            + self.signed_value.len()
            + self.signature.len()
    }
}

/// An `audit_events` row borrowed from its source (a decoded event or an [`AuditRow`]),
/// without `chain_hash`: the sink hashes and encodes events through it with no per-field copy.
#[derive(Debug, Clone)]
pub struct RowView<'a, A> {
    /// See [`AuditRow::event_id`].
    pub event_id: Uuid,
    /// See [`AuditRow::occurred_at`].
    pub occurred_at: i64,
    /// See [`AuditRow::verified_at`].
    pub verified_at: i64,
    /// See [`AuditRow::ingested_at`].
    pub ingested_at: i64,
    /// See [`AuditRow::class`].
    pub class: &'a str,
    /// See [`AuditRow::activity`].
    pub activity: &'a str,
    /// See [`AuditRow::activity_id`].
    pub activity_id: i32,
    /// See [`AuditRow::status`].
    pub status: &'a str,
    /// See [`AuditRow::severity`].
    pub severity: &'a str,
    /// See [`AuditRow::state`].
    pub state: &'a str,
    /// See [`AuditRow::reason`].
    pub reason: &'a str,
    /// See [`AuditRow::platform`].
    pub platform: &'a str,
    /// See [`AuditRow::service`].
    pub service: &'a str,
    /// See [`AuditRow::host`].
    pub host: &'a str,
    /// See [`AuditRow::principal`].
    pub principal: &'a str,
    /// See [`AuditRow::key_id`].
    pub key_id: &'a str,
    /// See [`AuditRow::client_ip`].
    pub client_ip: &'a str,
    /// See [`AuditRow::tenant`].
    pub tenant: &'a str,
    /// See [`AuditRow::trace_id`].
    pub trace_id: &'a str,
    /// See [`AuditRow::span_id`].
    pub span_id: &'a str,
    /// Key/value pairs sorted by key (cloned to walk them more than once).
    pub attributes: A,
    /// See [`AuditRow::signed_value`].
    pub signed_value: &'a [u8],
    /// See [`AuditRow::signature`].
    pub signature: &'a [u8],
    /// See [`AuditRow::kafka_topic`].
    pub kafka_topic: &'a str,
    /// See [`AuditRow::kafka_partition`].
    pub kafka_partition: i32,
    /// See [`AuditRow::kafka_offset`].
    pub kafka_offset: i64,
    /// See [`AuditRow::seq`].
    pub seq: u64,
    /// See [`AuditRow::prev_hash`].
    pub prev_hash: [u8; 32],
}

/// Iterates key/value pairs of owned strings as `(&str, &str)`.
#[derive(Debug, Clone)]
pub struct AttrIter<'a, I>(I)
where
    I: Iterator<Item = &'a (String, String)>;

impl<'a, I: Iterator<Item = &'a (String, String)>> Iterator for AttrIter<'a, I> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a, I: ExactSizeIterator<Item = &'a (String, String)>> ExactSizeIterator for AttrIter<'a, I> {}

/// Iterates a `BTreeMap<String, String>` as `(&str, &str)`.
#[derive(Debug, Clone)]
pub struct MapIter<'a>(std::collections::btree_map::Iter<'a, String, String>);

impl<'a> Iterator for MapIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for MapIter<'_> {}

impl<'a> RowView<'a, MapIter<'a>> {
    /// Borrows the row of a verified event; seq and prev_hash are set by [`crate::chain`].
    pub fn from_verified(
        v: &'a VerifiedEvent,
        topic: &'a str,
        partition: i32,
        offset: i64,
        ingested_at: i64,
    ) -> Self {
        let e = &v.event;
        let opt = |s: &'a Option<String>| s.as_deref().unwrap_or_default();
        RowView {
            event_id: e.event_id,
            occurred_at: e.occurred_at,
            verified_at: v.verified_at,
            ingested_at,
            class: e.class_uid.as_str(),
            activity: &e.activity_name,
            activity_id: e.activity_id,
            status: match e.status_id {
                Status::Unknown => "unknown",
                Status::Success => "success",
                Status::Failure => "failure",
            },
            severity: e.severity_id.as_str(),
            state: v.state.as_str(),
            reason: opt(&v.reason),
            platform: e.producer.platform.as_str(),
            service: &e.producer.service,
            host: opt(&e.producer.host),
            principal: opt(&e.subject.principal),
            key_id: v
                .key_id
                .as_deref()
                .or(e.subject.key_id.as_deref())
                .unwrap_or_default(),
            client_ip: opt(&e.subject.client_ip),
            tenant: opt(&e.subject.tenant),
            trace_id: e
                .trace
                .as_ref()
                .map(|t| t.trace_id.as_str())
                .unwrap_or_default(),
            span_id: e
                .trace
                .as_ref()
                .map(|t| t.span_id.as_str())
                .unwrap_or_default(),
            attributes: MapIter(e.attributes.iter()),
            signed_value: &v.signed_value,
            signature: &v.signature,
            kafka_topic: topic,
            kafka_partition: partition,
            kafka_offset: offset,
            seq: 0,
            prev_hash: [0; 32],
        }
    }
}

/// `audit_events` columns in [`AuditRow`] field order with their ClickHouse types, as the
/// migrations create them. [`encode_row_binary`] writes exactly these; the insert sends them
/// as a `RowBinaryWithNamesAndTypes` header, so the server refuses the batch if the table's
/// types ever differ (the check the `clickhouse` crate's validation does on the client).
pub const AUDIT_EVENT_COLUMNS: [(&str, &str); 29] = [
    ("event_id", "UUID"),
    ("occurred_at", "DateTime64(6, 'UTC')"),
    ("verified_at", "DateTime64(6, 'UTC')"),
    ("ingested_at", "DateTime64(6, 'UTC')"),
    ("class", "LowCardinality(String)"),
    ("activity", "LowCardinality(String)"),
    ("activity_id", "Int32"),
    ("status", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("state", "LowCardinality(String)"),
    ("reason", "String"),
    ("platform", "LowCardinality(String)"),
    ("service", "LowCardinality(String)"),
    ("host", "String"),
    ("principal", "String"),
    ("key_id", "String"),
    ("client_ip", "String"),
    ("tenant", "LowCardinality(String)"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("attributes", "Map(String, String)"),
    ("signed_value", "String"),
    ("signature", "String"),
    ("kafka_topic", "LowCardinality(String)"),
    ("kafka_partition", "Int32"),
    ("kafka_offset", "Int64"),
    ("seq", "UInt64"),
    ("prev_hash", "FixedString(32)"),
    ("chain_hash", "FixedString(32)"),
];

fn put_leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_leb128(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends the `RowBinaryWithNamesAndTypes` header of [`AUDIT_EVENT_COLUMNS`] to `out`.
pub fn encode_header(out: &mut Vec<u8>) {
    put_leb128(out, AUDIT_EVENT_COLUMNS.len() as u64);
    for (name, _) in AUDIT_EVENT_COLUMNS {
        put_bytes(out, name.as_bytes());
    }
    for (_, ty) in AUDIT_EVENT_COLUMNS {
        put_bytes(out, ty.as_bytes());
    }
}

/// Returns the column list for `INSERT INTO audit_events (...)`.
pub fn column_list() -> String {
    AUDIT_EVENT_COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends one row in RowBinary (the encoding of [`AUDIT_EVENT_COLUMNS`]) to `out`; byte for
/// byte what the `clickhouse` crate writes for the equal [`AuditRow`].
pub fn encode_row_binary<'a, A>(row: &RowView<'a, A>, chain_hash: &[u8; 32], out: &mut Vec<u8>)
where
    A: Iterator<Item = (&'a str, &'a str)> + ExactSizeIterator + Clone,
{
    let (hi, lo) = row.event_id.as_u64_pair();
    out.extend_from_slice(&hi.to_le_bytes());
    out.extend_from_slice(&lo.to_le_bytes());
    out.extend_from_slice(&row.occurred_at.to_le_bytes());
    out.extend_from_slice(&row.verified_at.to_le_bytes());
    out.extend_from_slice(&row.ingested_at.to_le_bytes());
    put_bytes(out, row.class.as_bytes());
    put_bytes(out, row.activity.as_bytes());
    out.extend_from_slice(&row.activity_id.to_le_bytes());
    for s in [
        row.status,
        row.severity,
        row.state,
        row.reason,
        row.platform,
        row.service,
        row.host,
        row.principal,
        row.key_id,
        row.client_ip,
        row.tenant,
        row.trace_id,
        row.span_id,
    ] {
        put_bytes(out, s.as_bytes());
    }
    let attributes = row.attributes.clone();
    put_leb128(out, attributes.len() as u64);
    for (k, v) in attributes {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
    put_bytes(out, row.signed_value);
    put_bytes(out, row.signature);
    put_bytes(out, row.kafka_topic.as_bytes());
    out.extend_from_slice(&row.kafka_partition.to_le_bytes());
    out.extend_from_slice(&row.kafka_offset.to_le_bytes());
    out.extend_from_slice(&row.seq.to_le_bytes());
    out.extend_from_slice(&row.prev_hash);
    out.extend_from_slice(chain_hash);
}

/// One `sink_offsets` row: the range of one partition a batch covers, written before the batch.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct OffsetRow {
    /// Topic consumed.
    pub kafka_topic: String,
    /// Partition consumed.
    pub kafka_partition: i32,
    /// Sink-wide batch number (the insert deduplication token derives from it).
    pub batch_seq: u64,
    /// First offset of the range.
    pub first_offset: i64,
    /// Last offset of the range (inclusive): the sink resumes after it.
    pub last_offset: i64,
    /// Chain seq of the range's first row.
    pub first_seq: u64,
    /// Chain seq the next row after the range gets (equal to `first_seq` if the range held
    /// only dead-lettered records).
    pub next_seq: u64,
    /// Chain head before the range.
    pub prev_hash: [u8; 32],
    /// Chain head after the range.
    pub last_chain_hash: [u8; 32],
    /// Batch build time, reused as `ingested_at` so a replay writes identical rows.
    pub batch_created_at: i64,
}

/// One `audit_digests` row.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DigestRow {
    /// Topic whose chains this digest covers.
    pub kafka_topic: String,
    /// Digest number, from 0 without gaps.
    pub digest_seq: u64,
    /// When the digest was made.
    pub created_at: i64,
    /// Partitions covered.
    pub partitions: Vec<i32>,
    /// Last offset stored per partition.
    pub last_offsets: Vec<i64>,
    /// Next chain seq per partition (rows `0..next_seq` are covered).
    pub next_seqs: Vec<u64>,
    /// Chain head per partition.
    pub heads: Vec<[u8; 32]>,
    /// `digest_hash` of the previous digest (zeros for the first).
    pub prev_digest_hash: [u8; 32],
    /// SHA-256 of the signed payload and the signature.
    pub digest_hash: [u8; 32],
    /// Key id of the sink's signing key.
    pub signer_key_id: String,
    /// Ed25519 signature over the digest payload.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}
