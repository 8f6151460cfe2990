//! `vigil audit export`: rows plus the chain proof (anchors and signed digests), in JSON Lines
//! or CSV, so an auditor can re-check the chain offline (`vigil audit verify --input`).
//!
//! JSON Lines: one `{"type":"event",...}` object per row in chain order, then one
//! `{"type":"digest",...}` per digest. Byte columns are lowercase hex. CSV: the rows with a
//! header line; the digests go to `<output>.digests.jsonl` beside it.

use std::io::Write;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AuditError;
use crate::row::{AuditRow, DigestRow};

/// One exported line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one record lives at a time, per line; boxing rows would only add an allocation each
pub enum ExportRecord {
    /// An audit row.
    Event(ExportedRow),
    /// A signed digest.
    Digest(ExportedDigest),
}

/// An audit row with byte columns as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ExportedRow {
    pub event_id: Uuid,
    pub occurred_at: i64,
    pub verified_at: i64,
    pub ingested_at: i64,
    pub class: String,
    pub activity: String,
    pub activity_id: i32,
    pub status: String,
    pub severity: String,
    pub state: String,
    pub reason: String,
    pub platform: String,
    pub service: String,
    pub host: String,
    pub principal: String,
    pub key_id: String,
    pub client_ip: String,
    pub tenant: String,
    pub trace_id: String,
    pub span_id: String,
    pub attributes: Vec<(String, String)>,
    pub signed_value: String,
    pub signature: String,
    pub kafka_topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub seq: u64,
    pub prev_hash: String,
    pub chain_hash: String,
}

/// A digest with byte columns as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ExportedDigest {
    pub kafka_topic: String,
    pub digest_seq: u64,
    pub created_at: i64,
    pub partitions: Vec<i32>,
    pub last_offsets: Vec<i64>,
    pub next_seqs: Vec<u64>,
    pub heads: Vec<String>,
    pub prev_digest_hash: String,
    pub digest_hash: String,
    pub signer_key_id: String,
    pub signature: String,
}

fn h32(s: &str) -> Result<[u8; 32], String> {
    let v = hex::decode(s).map_err(|e| e.to_string())?;
    v.try_into().map_err(|_| "expected 32 bytes".to_owned())
}

impl From<&AuditRow> for ExportedRow {
    fn from(r: &AuditRow) -> Self {
        ExportedRow {
            event_id: r.event_id,
            occurred_at: r.occurred_at,
            verified_at: r.verified_at,
            ingested_at: r.ingested_at,
            class: r.class.clone(),
            activity: r.activity.clone(),
            activity_id: r.activity_id,
            status: r.status.clone(),
            severity: r.severity.clone(),
            state: r.state.clone(),
            reason: r.reason.clone(),
            platform: r.platform.clone(),
            service: r.service.clone(),
            host: r.host.clone(),
            principal: r.principal.clone(),
            key_id: r.key_id.clone(),
            client_ip: r.client_ip.clone(),
            tenant: r.tenant.clone(),
            trace_id: r.trace_id.clone(),
            span_id: r.span_id.clone(),
            attributes: r.attributes.clone(),
            signed_value: hex::encode(&r.signed_value),
            signature: hex::encode(&r.signature),
            kafka_topic: r.kafka_topic.clone(),
            kafka_partition: r.kafka_partition,
            kafka_offset: r.kafka_offset,
            seq: r.seq,
            prev_hash: hex::encode(r.prev_hash),
            chain_hash: hex::encode(r.chain_hash),
        }
    }
}

impl TryFrom<ExportedRow> for AuditRow {
    type Error = String;
    fn try_from(r: ExportedRow) -> Result<Self, String> {
        Ok(AuditRow {
            event_id: r.event_id,
            occurred_at: r.occurred_at,
            verified_at: r.verified_at,
            ingested_at: r.ingested_at,
            class: r.class,
            activity: r.activity,
            activity_id: r.activity_id,
            status: r.status,
            severity: r.severity,
            state: r.state,
            reason: r.reason,
            platform: r.platform,
            service: r.service,
            host: r.host,
            principal: r.principal,
            key_id: r.key_id,
            client_ip: r.client_ip,
            tenant: r.tenant,
            trace_id: r.trace_id,
            span_id: r.span_id,
            attributes: r.attributes,
            signed_value: hex::decode(&r.signed_value).map_err(|e| e.to_string())?,
            signature: hex::decode(&r.signature).map_err(|e| e.to_string())?,
            kafka_topic: r.kafka_topic,
            kafka_partition: r.kafka_partition,
            kafka_offset: r.kafka_offset,
            seq: r.seq,
            prev_hash: h32(&r.prev_hash)?,
            chain_hash: h32(&r.chain_hash)?,
        })
    }
}

impl From<&DigestRow> for ExportedDigest {
    fn from(d: &DigestRow) -> Self {
        ExportedDigest {
            kafka_topic: d.kafka_topic.clone(),
            digest_seq: d.digest_seq,
            created_at: d.created_at,
            partitions: d.partitions.clone(),
            last_offsets: d.last_offsets.clone(),
            next_seqs: d.next_seqs.clone(),
            heads: d.heads.iter().map(hex::encode).collect(),
            prev_digest_hash: hex::encode(d.prev_digest_hash),
            digest_hash: hex::encode(d.digest_hash),
            signer_key_id: d.signer_key_id.clone(),
            signature: hex::encode(&d.signature),
        }
    }
}

impl TryFrom<ExportedDigest> for DigestRow {
    type Error = String;
    fn try_from(d: ExportedDigest) -> Result<Self, String> {
        Ok(DigestRow {
            kafka_topic: d.kafka_topic,
            digest_seq: d.digest_seq,
            created_at: d.created_at,
            partitions: d.partitions,
            last_offsets: d.last_offsets,
            next_seqs: d.next_seqs,
            heads: d.heads.iter().map(|h| h32(h)).collect::<Result<_, _>>()?,
            prev_digest_hash: h32(&d.prev_digest_hash)?,
            digest_hash: h32(&d.digest_hash)?,
            signer_key_id: d.signer_key_id,
            signature: hex::decode(&d.signature).map_err(|e| e.to_string())?,
        })
    }
}

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// JSON Lines, rows then digests.
    Jsonl,
    /// CSV rows; digests in a JSON Lines sidecar.
    Csv,
}

const CSV_COLUMNS: [&str; 29] = [
    "event_id",
    "occurred_at",
    "verified_at",
    "ingested_at",
    "class",
    "activity",
    "activity_id",
    "status",
    "severity",
    "state",
    "reason",
    "platform",
    "service",
    "host",
    "principal",
    "key_id",
    "client_ip",
    "tenant",
    "trace_id",
    "span_id",
    "attributes",
    "signed_value",
    "signature",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "seq",
    "prev_hash",
    "chain_hash",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes one row as a CSV line.
pub fn write_csv_row(out: &mut impl Write, r: &AuditRow) -> std::io::Result<()> {
    let e = ExportedRow::from(r);
    let attrs = serde_json::to_string(&e.attributes).unwrap_or_default();
    let fields: [String; 29] = [
        e.event_id.to_string(),
        e.occurred_at.to_string(),
        e.verified_at.to_string(),
        e.ingested_at.to_string(),
        e.class,
        e.activity,
        e.activity_id.to_string(),
        e.status,
        e.severity,
        e.state,
        e.reason,
        e.platform,
        e.service,
        e.host,
        e.principal,
        e.key_id,
        e.client_ip,
        e.tenant,
        e.trace_id,
        e.span_id,
        attrs,
        e.signed_value,
        e.signature,
        e.kafka_topic,
        e.kafka_partition.to_string(),
        e.kafka_offset.to_string(),
        e.seq.to_string(),
        e.prev_hash,
        e.chain_hash,
    ];
    let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    writeln!(out, "{}", line.join(","))
}

/// Writes the CSV header line.
pub fn write_csv_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))
}

/// Writes one JSON Lines record.
pub fn write_jsonl(out: &mut impl Write, rec: &ExportRecord) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *out, rec).map_err(|e| AuditError::Io(std::io::Error::other(e)))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reads a JSON Lines export back into rows (chain order) and digests.
pub fn read_jsonl(text: &str) -> Result<(Vec<AuditRow>, Vec<DigestRow>), String> {
    let mut rows = Vec::new();
    let mut digests = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<ExportRecord>(line)
            .map_err(|e| format!("line {}: {e}", i + 1))?
        {
            ExportRecord::Event(r) => {
                rows.push(AuditRow::try_from(r).map_err(|e| format!("line {}: {e}", i + 1))?)
            }
            ExportRecord::Digest(d) => {
                digests.push(DigestRow::try_from(d).map_err(|e| format!("line {}: {e}", i + 1))?)
            }
        }
    }
    Ok((rows, digests))
}

/// Exports `topic` rows in an `ingested_at` window and every digest. Returns (rows, digests).
pub async fn export(
    store: &crate::store::AuditStore,
    topic: &str,
    from_micros: Option<i64>,
    to_micros: Option<i64>,
    format: ExportFormat,
    out: &mut impl Write,
    digests_out: &mut impl Write,
) -> Result<(u64, u64), AuditError> {
    let mut cursor = store.rows(topic, None, from_micros, to_micros)?;
    let mut n = 0u64;
    if format == ExportFormat::Csv {
        write_csv_header(out)?;
    }
    while let Some(row) = cursor
        .next()
        .await
        .map_err(|e| AuditError::clickhouse("read audit_events", e))?
    {
        match format {
            ExportFormat::Jsonl => write_jsonl(out, &ExportRecord::Event(ExportedRow::from(&row)))?,
            ExportFormat::Csv => write_csv_row(out, &row)?,
        }
        n += 1;
    }
    let digests = store.digests(topic).await?;
    for d in &digests {
        let rec = ExportRecord::Digest(ExportedDigest::from(d));
        match format {
            ExportFormat::Jsonl => write_jsonl(out, &rec)?,
            ExportFormat::Csv => write_jsonl(digests_out, &rec)?,
        }
    }
    out.flush()?;
    digests_out.flush()?;
    Ok((n, digests.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tests::sample_row;

    #[test]
    fn jsonl_round_trips_rows_and_digests() {
        let r = sample_row(3);
        let d = crate::digest::make(
            &vigil_schemas::signing::EventSigner::from_seed(&[1; 32]),
            "t",
            0,
            1,
            [0; 32],
            &[],
        );
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &ExportRecord::Event(ExportedRow::from(&r))).unwrap_or_default();
        write_jsonl(&mut buf, &ExportRecord::Digest(ExportedDigest::from(&d))).unwrap_or_default();
        let (rows, digests) = read_jsonl(&String::from_utf8_lossy(&buf)).unwrap_or_default();
        assert_eq!(rows, vec![r.clone()]);
        assert_eq!(digests, vec![d]);
        let mut csv = Vec::new();
        write_csv_row(&mut csv, &r).unwrap_or_default();
        assert!(String::from_utf8_lossy(&csv).split(',').count() >= 29);
    }
}
