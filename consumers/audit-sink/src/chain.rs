//! The per-partition hash chain.
//!
//! `chain_hash = SHA-256("vigil-audit-chain-v1" || prev_hash || canonical(row))`, where the
//! canonical encoding covers every stored column except `chain_hash` itself, each string or byte
//! field prefixed with its u32 big-endian length and each number big-endian. Covering all
//! columns (not only the signed bytes) makes the verifier's verdict, the derived columns and the
//! Kafka position tamper-evident too; the signed bytes and signature are covered verbatim.

use sha2::{Digest, Sha256};

use crate::row::{AuditRow, RowView};

/// Chain hash before the first row of a partition.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"vigil-audit-chain-v1";

/// The running head of one partition's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Seq the next row gets.
    pub next_seq: u64,
    /// Hash of the last row (or [`GENESIS`]).
    pub hash: [u8; 32],
}

impl Default for ChainHead {
    fn default() -> Self {
        ChainHead {
            next_seq: 0,
            hash: GENESIS,
        }
    }
}

impl ChainHead {
    /// Links `row` to this head (sets seq, prev_hash, chain_hash) and advances the head.
    pub fn append(&mut self, row: &mut AuditRow) {
        row.seq = self.next_seq;
        row.prev_hash = self.hash;
        row.chain_hash = link_hash(row);
        self.next_seq = self.next_seq.saturating_add(1);
        self.hash = row.chain_hash;
    }

    /// Links a borrowed row to this head (sets its seq and prev_hash), advances the head and
    /// returns the row's chain hash.
    pub fn append_view<'a, A>(&mut self, row: &mut RowView<'a, A>) -> [u8; 32]
    where
        A: Iterator<Item = (&'a str, &'a str)> + ExactSizeIterator + Clone,
    {
        row.seq = self.next_seq;
        row.prev_hash = self.hash;
        let hash = link_hash_view(row);
        self.next_seq = self.next_seq.saturating_add(1);
        self.hash = hash;
        hash
    }
}

/// Returns the chain hash `row` must carry given its `prev_hash` and other columns.
pub fn link_hash(row: &AuditRow) -> [u8; 32] {
    link_hash_view(&row.view())
}

/// Returns the chain hash of a borrowed row: the sink hashes the decoded event's fields in
/// place, without first copying them into an [`AuditRow`].
pub fn link_hash_view<'a, A>(row: &RowView<'a, A>) -> [u8; 32]
where
    A: Iterator<Item = (&'a str, &'a str)> + ExactSizeIterator + Clone,
{
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(row.prev_hash);
    let bytes = |h: &mut Sha256, b: &[u8]| {
        h.update(u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(b);
    };
    bytes(&mut h, row.signed_value);
    bytes(&mut h, row.signature);
    bytes(&mut h, row.kafka_topic.as_bytes());
    h.update(row.kafka_partition.to_be_bytes());
    h.update(row.kafka_offset.to_be_bytes());
    h.update(row.seq.to_be_bytes());
    h.update(row.event_id.as_bytes());
    h.update(row.occurred_at.to_be_bytes());
    h.update(row.verified_at.to_be_bytes());
    h.update(row.ingested_at.to_be_bytes());
    h.update(row.activity_id.to_be_bytes());
    for s in [
        row.class,
        row.activity,
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
        bytes(&mut h, s.as_bytes());
    }
    let attributes = row.attributes.clone();
    h.update(
        u32::try_from(attributes.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for (k, v) in attributes {
        bytes(&mut h, k.as_bytes());
        bytes(&mut h, v.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn sample_row(offset: i64) -> AuditRow {
        AuditRow {
            event_id: Uuid::from_u128(offset as u128 + 1),
            occurred_at: 1_795_000_000_000_000 + offset,
            verified_at: 1_795_000_000_000_100 + offset,
            ingested_at: 1_795_000_000_001_000,
            class: "signature_verification".into(),
            activity: "verify".into(),
            activity_id: 1,
            status: "success".into(),
            severity: "informational".into(),
            state: "valid".into(),
            reason: String::new(),
            platform: "rust".into(),
            service: "api".into(),
            host: "h".into(),
            principal: "alice".into(),
            key_id: "k1".into(),
            client_ip: "10.0.0.1".into(),
            tenant: "t".into(),
            trace_id: String::new(),
            span_id: String::new(),
            attributes: vec![("a".into(), "b".into())],
            signed_value: vec![0, 0, 0, 0, 1, offset as u8],
            signature: vec![7; 64],
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: offset,
            seq: 0,
            prev_hash: [0; 32],
            chain_hash: [0; 32],
        }
    }

    #[test]
    fn every_column_changes_the_link() {
        let mut head = ChainHead::default();
        let mut r = sample_row(0);
        head.append(&mut r);
        assert_eq!(r.prev_hash, GENESIS);
        assert_eq!(head.next_seq, 1);
        let base = link_hash(&r);
        assert_eq!(base, r.chain_hash);
        let mutations: Vec<fn(&mut AuditRow)> = vec![
            |r| r.state = "bad".into(),
            |r| r.principal = "mallory".into(),
            |r| r.signature[0] ^= 1,
            |r| r.signed_value.push(0),
            |r| r.kafka_offset += 1,
            |r| r.seq += 1,
            |r| r.prev_hash[31] ^= 1,
            |r| r.attributes[0].1 = "c".into(),
            |r| r.occurred_at += 1,
            // Length prefixes keep field boundaries: moving a byte between fields is a change.
            |r| {
                r.service = "ap".into();
                r.host = "ih".into();
            },
        ];
        for (i, m) in mutations.iter().enumerate() {
            let mut t = r.clone();
            m(&mut t);
            assert_ne!(link_hash(&t), base, "mutation {i} must change the hash");
        }
    }

    #[test]
    fn rows_link_to_their_predecessor() {
        let mut head = ChainHead::default();
        let mut a = sample_row(0);
        let mut b = sample_row(1);
        head.append(&mut a);
        head.append(&mut b);
        assert_eq!(b.prev_hash, a.chain_hash);
        assert_eq!(b.seq, 1);
        assert_eq!(head.hash, b.chain_hash);
    }
}
