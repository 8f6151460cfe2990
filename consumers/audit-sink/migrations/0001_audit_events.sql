-- The audit trail: one row per verified event (rejected ones included), hash-chained per Kafka
-- partition. {retention_years} is substituted by the migration runner (default 7).
--
-- ORDER BY (class, state, occurred_at, event_id) — why:
--   * Most SOC questions filter first on the kind of event and the verdict ("failed
--     verifications in the last 24 h", "rejected events by producer", "key_lifecycle events"):
--     class and state are low-cardinality, so leading with them lets the primary index skip
--     whole granules and keeps the per-granule ranges of occurred_at tight.
--   * occurred_at third serves every time-window query inside one (class, state) slice, and
--     monthly partitions prune the rest.
--   * event_id last makes the sort total (deterministic exports). Trace and key lookups use
--     the bloom-filter skip indexes below instead of the sort key.
-- The chain walk (kafka_partition, seq) reads the whole range anyway and sorts in memory.
CREATE TABLE IF NOT EXISTS audit_events
(
    event_id        UUID,
    occurred_at     DateTime64(6, 'UTC'),
    verified_at     DateTime64(6, 'UTC'),
    ingested_at     DateTime64(6, 'UTC'),
    class           LowCardinality(String),
    activity        LowCardinality(String),
    activity_id     Int32,
    status          LowCardinality(String),
    severity        LowCardinality(String),
    state           LowCardinality(String),
    reason          String,
    platform        LowCardinality(String),
    service         LowCardinality(String),
    host            String,
    principal       String,
    key_id          String,
    client_ip       String,
    tenant          LowCardinality(String),
    trace_id        String,
    span_id         String,
    attributes      Map(String, String),
    signed_value    String CODEC(ZSTD(3)),
    signature       String,
    kafka_topic     LowCardinality(String),
    kafka_partition Int32,
    kafka_offset    Int64,
    seq             UInt64,
    prev_hash       FixedString(32),
    chain_hash      FixedString(32),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_key_id key_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_client_ip client_ip TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (class, state, occurred_at, event_id)
TTL toDateTime(occurred_at) + INTERVAL {retention_years} YEAR
-- A retried or replayed batch carries the same insert_deduplication_token: keep enough block
-- ids to recognise it on a single (non-replicated) node too.
SETTINGS non_replicated_deduplication_window = 10000
