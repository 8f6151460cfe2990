-- The sink's Kafka offsets, stored in ClickHouse rather than in Kafka. One row per (batch,
-- partition), written BEFORE the batch's rows (a write-ahead intent): on start the sink replays
-- the last batch's exact ranges with the same insert_deduplication_token (a no-op if the rows
-- landed, a completion if they did not), then resumes after the highest last_offset.
CREATE TABLE IF NOT EXISTS sink_offsets
(
    kafka_topic      LowCardinality(String),
    kafka_partition  Int32,
    batch_seq        UInt64,
    first_offset     Int64,
    last_offset      Int64,
    first_seq        UInt64,
    next_seq         UInt64,
    prev_hash        FixedString(32),
    last_chain_hash  FixedString(32),
    batch_created_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(last_offset)
ORDER BY (kafka_topic, kafka_partition, batch_seq)
SETTINGS non_replicated_deduplication_window = 10000
