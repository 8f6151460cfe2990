//! Row types of the audit tables, in column order, for RowBinary through the `clickhouse` crate.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_schemas::model::VerifiedEvent;

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
        let e = &v.event;
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        AuditRow {
            event_id: e.event_id,
            occurred_at: e.occurred_at,
            verified_at: v.verified_at,
            ingested_at,
            class: e.class_uid.as_str().to_owned(),
            activity: e.activity_name.clone(),
            activity_id: e.activity_id,
            status: match e.status_id {
                vigil_schemas::model::Status::Unknown => "unknown",
                vigil_schemas::model::Status::Success => "success",
                vigil_schemas::model::Status::Failure => "failure",
            }
            .to_owned(),
            severity: e.severity_id.as_str().to_owned(),
            state: v.state.as_str().to_owned(),
            reason: opt(&v.reason),
            platform: e.producer.platform.as_str().to_owned(),
            service: e.producer.service.clone(),
            host: opt(&e.producer.host),
            principal: opt(&e.subject.principal),
            key_id: v.key_id.clone().or_else(|| e.subject.key_id.clone()).unwrap_or_default(),
            client_ip: opt(&e.subject.client_ip),
            tenant: opt(&e.subject.tenant),
            trace_id: e.trace.as_ref().map(|t| t.trace_id.clone()).unwrap_or_default(),
            span_id: e.trace.as_ref().map(|t| t.span_id.clone()).unwrap_or_default(),
            attributes: e.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            signed_value: v.signed_value.clone(),
            signature: v.signature.clone(),
            kafka_topic: topic.to_owned(),
            kafka_partition: partition,
            kafka_offset: offset,
            seq: 0,
            prev_hash: [0; 32],
            chain_hash: [0; 32],
        }
    }

    /// Returns an estimate of the row's RowBinary size, for the batch byte bound.
    pub fn encoded_len(&self) -> usize {
        let strings = [
            &self.class, &self.activity, &self.status, &self.severity, &self.state, &self.reason,
            &self.platform, &self.service, &self.host, &self.principal, &self.key_id,
            &self.client_ip, &self.tenant, &self.trace_id, &self.span_id, &self.kafka_topic,
        ];
        let attrs: usize = self.attributes.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        16 + 8 * 3 + 4 + 4 + 8 + 8 + 64 + 32
            + strings.iter().map(|s| s.len() + 2).sum::<usize>()
            + attrs
            + self.signed_value.len()
            + self.signature.len()
    }
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
