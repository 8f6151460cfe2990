//! Signed digests of the chain heads (CloudTrail-style digest files, as rows).
//!
//! The signed payload is `"vigil-audit-digest-v1" || topic || digest_seq || created_at ||
//! prev_digest_hash || n || (partition, last_offset, next_seq, head)*`, lengths and numbers
//! big-endian; `digest_hash = SHA-256(payload || signature)` chains the next digest to this one,
//! so deleting or forging a digest breaks the digest chain or its signature.

use sha2::{Digest, Sha256};
use vigil_schemas::signing::{EventSigner, PublicKey, Signature};

use crate::row::DigestRow;

const DOMAIN: &[u8] = b"vigil-audit-digest-v1";

/// The head of one partition as recorded in a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionHead {
    /// Kafka partition.
    pub partition: i32,
    /// Last offset stored.
    pub last_offset: i64,
    /// Seq the next row gets.
    pub next_seq: u64,
    /// Chain hash of the last row.
    pub head: [u8; 32],
}

/// Returns the bytes a digest's signature covers.
pub fn payload(row: &DigestRow) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + row.partitions.len() * 52);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(
        &u32::try_from(row.kafka_topic.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(row.kafka_topic.as_bytes());
    out.extend_from_slice(&row.digest_seq.to_be_bytes());
    out.extend_from_slice(&row.created_at.to_be_bytes());
    out.extend_from_slice(&row.prev_digest_hash);
    let n = row.partitions.len();
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    for i in 0..n {
        out.extend_from_slice(&row.partitions[i].to_be_bytes());
        out.extend_from_slice(&row.last_offsets.get(i).copied().unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&row.next_seqs.get(i).copied().unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&row.heads.get(i).copied().unwrap_or([0; 32]));
    }
    out
}

/// Returns `SHA-256(payload || signature)`.
pub fn digest_hash(payload: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(payload);
    h.update(signature);
    h.finalize().into()
}

/// Builds and signs the digest following `prev` (or the first one).
pub fn make(
    signer: &EventSigner,
    topic: &str,
    digest_seq: u64,
    created_at: i64,
    prev_digest_hash: [u8; 32],
    heads: &[PartitionHead],
) -> DigestRow {
    let mut row = DigestRow {
        kafka_topic: topic.to_owned(),
        digest_seq,
        created_at,
        partitions: heads.iter().map(|h| h.partition).collect(),
        last_offsets: heads.iter().map(|h| h.last_offset).collect(),
        next_seqs: heads.iter().map(|h| h.next_seq).collect(),
        heads: heads.iter().map(|h| h.head).collect(),
        prev_digest_hash,
        digest_hash: [0; 32],
        signer_key_id: signer.key_id().as_str().to_owned(),
        signature: Vec::new(),
    };
    let p = payload(&row);
    let sig = signer.sign(&p).to_bytes().to_vec();
    row.digest_hash = digest_hash(&p, &sig);
    row.signature = sig;
    row
}

/// Why a digest does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The arrays have different lengths.
    #[error("head arrays have different lengths")]
    Malformed,
    /// The signature does not verify under the sink's public key.
    #[error("signature does not verify under the sink key")]
    BadSignature,
    /// `digest_hash` is not the hash of the payload and signature.
    #[error("digest_hash does not match its content")]
    BadHash,
}

/// Checks a digest's shape, signature and self hash.
pub fn check(row: &DigestRow, key: &PublicKey) -> Result<(), DigestError> {
    let n = row.partitions.len();
    if row.last_offsets.len() != n || row.next_seqs.len() != n || row.heads.len() != n {
        return Err(DigestError::Malformed);
    }
    let p = payload(row);
    let sig = Signature::from_slice(&row.signature).map_err(|_| DigestError::BadSignature)?;
    key.verify(&p, &sig)
        .map_err(|_| DigestError::BadSignature)?;
    if digest_hash(&p, &row.signature) != row.digest_hash {
        return Err(DigestError::BadHash);
    }
    Ok(())
}

/// Returns the heads of a digest as structs (arrays already checked by [`check`]).
pub fn heads(row: &DigestRow) -> Vec<PartitionHead> {
    (0..row.partitions.len())
        .filter_map(|i| {
            Some(PartitionHead {
                partition: *row.partitions.get(i)?,
                last_offset: *row.last_offsets.get(i)?,
                next_seq: *row.next_seqs.get(i)?,
                head: *row.heads.get(i)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_digest_checks_and_any_change_is_caught() {
        let signer = EventSigner::from_seed(&[9; 32]);
        let heads = [PartitionHead {
            partition: 0,
            last_offset: 5,
            next_seq: 6,
            head: [1; 32],
        }];
        let d = make(&signer, "t", 0, 42, [0; 32], &heads);
        assert_eq!(check(&d, signer.public_key()), Ok(()));
        let mut forged = d.clone();
        forged.next_seqs[0] = 7;
        assert_eq!(
            check(&forged, signer.public_key()),
            Err(DigestError::BadSignature)
        );
        let other = EventSigner::from_seed(&[8; 32]);
        assert_eq!(
            check(&d, other.public_key()),
            Err(DigestError::BadSignature)
        );
        let mut rehashed = d.clone();
        rehashed.digest_hash[0] ^= 1;
        assert_eq!(
            check(&rehashed, signer.public_key()),
            Err(DigestError::BadHash)
        );
        assert_eq!(super::heads(&d), heads.to_vec());
    }
}
