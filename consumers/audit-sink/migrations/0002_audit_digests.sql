-- Periodic digests of the chain heads (CloudTrail-style), each signed by the sink's own Ed25519
-- key and chained to the previous digest by prev_digest_hash.
CREATE TABLE IF NOT EXISTS audit_digests
(
    kafka_topic       LowCardinality(String),
    digest_seq        UInt64,
    created_at        DateTime64(6, 'UTC'),
    partitions        Array(Int32),
    last_offsets      Array(Int64),
    next_seqs         Array(UInt64),
    heads             Array(FixedString(32)),
    prev_digest_hash  FixedString(32),
    digest_hash       FixedString(32),
    signer_key_id     String,
    signature         String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (kafka_topic, digest_seq)
TTL toDateTime(created_at) + INTERVAL {retention_years} YEAR
SETTINGS non_replicated_deduplication_window = 10000
