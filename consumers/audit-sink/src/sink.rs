//! `vigil run audit-sink`: consumes verified events and stores them exactly once.
//!
//! Delivery guarantee: exactly-once into `audit_events`. Per batch, in this order:
//! 1. the batch's offset ranges are inserted into `sink_offsets` (a write-ahead intent carrying
//!    the chain head before and after each range and the batch time);
//! 2. the rows are inserted with `insert_deduplication_token` derived from those ranges;
//! 3. a signed digest follows every `digest_every_events` events or `digest_interval_ms`.
//!
//! On start the sink reads `sink_offsets`, re-reads the LAST batch's exact ranges from Kafka,
//! rebuilds byte-identical rows (same chain start, same `ingested_at`) and inserts them with
//! the same token: ClickHouse drops them if they had landed and completes them if not. It then
//! resumes every partition after ClickHouse's last offset; Kafka's committed offsets are never
//! read. Only the last batch can be incomplete because a batch's intent is written only after
//! the previous batch's rows were acknowledged.
//!
//! Assignment is static: one sink instance owns every partition of its topic (run one instance
//! per topic; a second instance would build a second chain over the same rows).
//!
//! Backpressure and memory: rows are encoded (RowBinary, chain hash included) into one of
//! exactly two reusable batch buffers as records arrive; one batch is written while the other
//! is built. When the writer still holds the other buffer the sink stops reading (and pauses
//! its partitions after `PAUSE_AFTER`), so memory stays at two batches plus librdkafka's
//! bounded prefetch however far behind ClickHouse is.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use vigil_consumer::dead_letter;
use vigil_consumer::{DeadLetterHeaders, ErrorClass};
use vigil_schemas::ErrorChain;
use vigil_schemas::codec::Codec;
use vigil_schemas::model::{VerifiedEvent, now_micros};
use vigil_schemas::signing::EventSigner;
use vigil_schemas::wire;
use vigil_topology::telemetry::Health;
use vigil_topology::{InternalEvent, KafkaClientConfig};

use crate::chain::ChainHead;
use crate::config::AuditSinkConfig;
use crate::digest::{self, PartitionHead};
use crate::error::AuditError;
use crate::internal_events::{
    BatchPending, BatchStored, ConsumeFailed, DigestWritten, RecordDeadLettered, RowsLanded,
    SinkPaused, WriteRetrying,
};
use crate::metrics::SinkMetrics;
use crate::row::{DigestRow, OffsetRow, RowView, encode_row_binary};
use crate::store::AuditStore;

/// How long the sink waits for a busy writer before pausing its partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkSummary {
    /// Rows written (replayed rows included; ClickHouse drops the duplicates).
    pub rows: u64,
    /// Batches written.
    pub batches: u64,
    /// Records dead-lettered.
    pub dead_letters: u64,
    /// Rows of the last batch replayed at start.
    pub replayed_rows: u64,
    /// Digests written.
    pub digests: u64,
}

/// The audit sink service.
pub struct AuditSink {
    config: AuditSinkConfig,
    kafka: KafkaClientConfig,
    store: AuditStore,
    signer: Arc<EventSigner>,
    metrics: SinkMetrics,
    health: Arc<Health>,
}

/// A record that is not a decodable `VerifiedEvent`, bound for the DLQ.
#[derive(Debug, Clone)]
struct DeadRecord {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    error: String,
}

/// One range of one partition inside a batch.
#[derive(Debug, Clone, Copy)]
struct Range {
    first_offset: i64,
    last_offset: i64,
    start: ChainHead,
}

/// Room reserved per row in a new batch buffer (a typical event encodes to 600-800 bytes).
const TYPICAL_ROW_BYTES: usize = 1024;

/// Rows are cut into compressed blocks of about this size (the `clickhouse` crate's own chunk).
const CHUNK_BYTES: usize = 256 * 1024;

/// A batch being built or written. Its rows are kept encoded (RowBinary, chain hashes
/// included) in one buffer that is reused batch after batch: the sink owns exactly two of
/// them, so memory is two batches' bytes however far behind ClickHouse is, and no per-row
/// allocation outlives the record it came from.
#[derive(Debug, Default)]
struct Batch {
    seq: u64,
    created_at: i64,
    /// Encoded rows.
    buf: Vec<u8>,
    /// Row boundaries in `buf` where the body is cut into compressed blocks.
    chunk_ends: Vec<usize>,
    /// `verified_at` of each row, for the latency histogram.
    verified_at: Vec<i64>,
    dead: Vec<DeadRecord>,
    dead_bytes: usize,
    ranges: BTreeMap<i32, Range>,
    started: Option<Instant>,
}

/// A batch ready for the writer.
#[derive(Debug)]
struct Sealed {
    batch: Batch,
    offsets: Vec<OffsetRow>,
    token: String,
}

/// Returns the insert deduplication token of a batch: a hash of its topic, number and ranges,
/// so a replay of the same ranges gets the same token and anything else a different one.
fn batch_token(topic: &str, offsets: &[OffsetRow]) -> String {
    let mut h = Sha256::new();
    h.update(topic.as_bytes());
    for o in offsets {
        h.update(o.batch_seq.to_be_bytes());
        h.update(o.kafka_partition.to_be_bytes());
        h.update(o.first_offset.to_be_bytes());
        h.update(o.last_offset.to_be_bytes());
    }
    format!("vigil-audit-{}", hex::encode(&h.finalize()[..16]))
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Returns an empty batch whose buffer is reserved for a typical full batch up front:
    /// growing it by doubling would copy it and briefly hold old and new copies (reserved but
    /// untouched pages cost no resident memory).
    fn with_capacity(cfg: &AuditSinkConfig) -> Batch {
        let rows = cfg.batch_max_rows;
        Batch {
            buf: Vec::with_capacity(
                cfg.batch_max_bytes
                    .min(rows.saturating_mul(TYPICAL_ROW_BYTES)),
            ),
            verified_at: Vec::with_capacity(rows),
            ..Batch::default()
        }
    }

    fn rows(&self) -> usize {
        self.verified_at.len()
    }

    fn bytes(&self) -> usize {
        self.buf.len() + self.dead_bytes
    }

    /// Empties the batch for reuse as number `seq`, keeping its buffers' capacity.
    fn recycle(mut self, seq: u64) -> Batch {
        self.seq = seq;
        self.created_at = 0;
        self.buf.clear();
        self.chunk_ends.clear();
        self.verified_at.clear();
        self.dead.clear();
        self.dead_bytes = 0;
        self.ranges.clear();
        self.started = None;
        self
    }

    fn touch(&mut self, partition: i32, offset: i64, head: ChainHead) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            if self.created_at == 0 {
                self.created_at = now_micros();
            }
        }
        self.ranges
            .entry(partition)
            .and_modify(|r| r.last_offset = offset)
            .or_insert(Range {
                first_offset: offset,
                last_offset: offset,
                start: head,
            });
    }

    /// Links the event to its partition's chain and appends its encoded row.
    fn push(
        &mut self,
        v: &VerifiedEvent,
        topic: &str,
        partition: i32,
        offset: i64,
        head: &mut ChainHead,
    ) {
        let mut row = RowView::from_verified(v, topic, partition, offset, self.created_at);
        let hash = head.append_view(&mut row);
        let chunk_start = self.chunk_ends.last().copied().unwrap_or(0);
        if self.buf.len() - chunk_start >= CHUNK_BYTES {
            self.chunk_ends.push(self.buf.len());
        }
        encode_row_binary(&row, &hash, &mut self.buf);
        self.verified_at.push(v.verified_at);
    }

    fn seal(self, topic: &str, heads: &BTreeMap<i32, ChainHead>) -> Sealed {
        let offsets: Vec<OffsetRow> = self
            .ranges
            .iter()
            .map(|(&p, r)| {
                let end = heads.get(&p).copied().unwrap_or(r.start);
                OffsetRow {
                    kafka_topic: topic.to_owned(),
                    kafka_partition: p,
                    batch_seq: self.seq,
                    first_offset: r.first_offset,
                    last_offset: r.last_offset,
                    first_seq: r.start.next_seq,
                    next_seq: end.next_seq,
                    prev_hash: r.start.hash,
                    last_chain_hash: end.hash,
                    batch_created_at: self.created_at,
                }
            })
            .collect();
        let token = batch_token(topic, &offsets);
        Sealed {
            batch: self,
            offsets,
            token,
        }
    }
}

impl AuditSink {
    /// Builds the sink; the signing key signs digests.
    pub fn new(
        config: AuditSinkConfig,
        kafka: KafkaClientConfig,
        store: AuditStore,
        signer: EventSigner,
        metrics: SinkMetrics,
        health: Arc<Health>,
    ) -> Result<Self, AuditError> {
        config.validate()?;
        Ok(AuditSink {
            config,
            kafka,
            store,
            signer: Arc::new(signer),
            metrics,
            health,
        })
    }

    /// Loads the digest-signing key named by the config or `VIGIL_AUDIT_SIGNING_KEY_FILE`.
    pub fn load_signer(config: &AuditSinkConfig) -> Result<EventSigner, AuditError> {
        let path = config
            .signing_key_file
            .clone()
            .or_else(|| std::env::var_os("VIGIL_AUDIT_SIGNING_KEY_FILE").map(Into::into))
            .ok_or_else(|| {
                AuditError::SigningKey(
                    "set signing_key_file or VIGIL_AUDIT_SIGNING_KEY_FILE".into(),
                )
            })?;
        let signer = EventSigner::from_pkcs8_pem_file(&path).map_err(|e| {
            AuditError::SigningKey(format!("{}: {}", path.display(), ErrorChain(&e)))
        })?;
        match &config.signing_key_id {
            Some(id) => {
                let id = vigil_schemas::signing::KeyId::new(id.clone()).map_err(|e| {
                    AuditError::SigningKey(format!("signing_key_id: {}", ErrorChain(&e)))
                })?;
                Ok(signer.with_key_id(id))
            }
            None => Ok(signer),
        }
    }

    /// Runs until `shutdown` resolves; writes a final digest on the way out.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<SinkSummary, AuditError> {
        let cfg = self.config.clone();
        self.store.migrate(cfg.retention_years).await?;
        let consumer: StreamConsumer = {
            let mut c = self.kafka.consumer(&cfg.group);
            // Offsets live in ClickHouse; never let the broker's group offsets matter.
            c.set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false");
            // The fetch size bound that keeps a backlog from landing in memory at once is part
            // of KafkaClientConfig::consumer (found by this sink's bench).
            c.create().map_err(|source| AuditError::Kafka {
                what: "create consumer".into(),
                source,
            })?
        };
        let producer: FutureProducer =
            self.kafka
                .producer()
                .create()
                .map_err(|source| AuditError::Kafka {
                    what: "create dlq producer".into(),
                    source,
                })?;
        let partitions = topic_partitions(&consumer, &cfg.topic).await?;
        // Independent start-up reads, concurrently (each is a round trip to ClickHouse).
        let (resume, last, last_digest) = tokio::try_join!(
            self.store.resume_points(&cfg.topic),
            self.store.last_batch(&cfg.topic),
            self.store.last_digest(&cfg.topic),
        )?;
        let mut heads: BTreeMap<i32, ChainHead> =
            resume.iter().map(|(&p, r)| (p, r.head)).collect();
        let mut committed: BTreeMap<i32, PartitionHead> = resume
            .iter()
            .map(|(&p, r)| {
                (
                    p,
                    PartitionHead {
                        partition: p,
                        last_offset: r.last_offset,
                        next_seq: r.head.next_seq,
                        head: r.head.hash,
                    },
                )
            })
            .collect();
        let codec = Codec::<VerifiedEvent>::new()
            .map_err(|e| AuditError::Inconsistent(format!("codec: {}", ErrorChain(&e))))?;
        let mut summary = SinkSummary::default();

        // Replay the last batch with its own token and chain start; its buffer then becomes
        // the second of the two the sink owns.
        let mut next_batch_seq = last.first().map(|o| o.batch_seq + 1).unwrap_or(0);
        let spare = if last.is_empty() {
            Batch::with_capacity(&cfg)
        } else {
            let sealed = self.rebuild(&consumer, &codec, &last).await?;
            summary.replayed_rows = sealed.batch.rows() as u64;
            tracing::info!(
                batch = sealed.batch.seq,
                rows = sealed.batch.rows(),
                "replaying last batch with its dedup token"
            );
            let writer = Writer::new(&self, producer.clone());
            writer.write(&sealed, &mut committed).await?;
            sealed.batch
        };

        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let offset = match resume.get(p) {
                Some(r) => Offset::Offset(r.last_offset + 1),
                None => Offset::Beginning,
            };
            tpl.add_partition_offset(&cfg.topic, *p, offset)
                .map_err(|source| AuditError::Kafka {
                    what: "build assignment".into(),
                    source,
                })?;
        }
        consumer.assign(&tpl).map_err(|source| AuditError::Kafka {
            what: "assign".into(),
            source,
        })?;
        self.health.set_ready(true);
        tracing::info!(topic = %cfg.topic, partitions = partitions.len(), "audit sink assigned");

        // Two batch buffers circulate: the writer gets sealed ones on `tx` and hands them back,
        // emptied, on `free_tx`. The channels hold at most the two buffers, never block a send,
        // and the reader waits for a returned buffer instead of building a third batch.
        let (tx, mut rx) = mpsc::channel::<Sealed>(2);
        let (free_tx, mut free_rx) = mpsc::channel::<Batch>(2);
        let _ = free_tx.try_send(spare);
        let writer = Writer::new(&self, producer.clone());
        let digest_state = DigestState::new(last_digest, &committed);
        let mut writer_committed = committed;
        let writer_task = tokio::spawn(async move {
            let mut digests = digest_state;
            let mut out = SinkSummary::default();
            while let Some(sealed) = rx.recv().await {
                writer.write(&sealed, &mut writer_committed).await?;
                let rows = sealed.batch.rows() as u64;
                out.rows += rows;
                out.batches += 1;
                out.dead_letters += sealed.batch.dead.len() as u64;
                digests.pending_events += rows;
                // The reader may be waiting for this buffer: return it before the digest.
                let _ = free_tx.try_send(sealed.batch);
                if digests.due(&writer.config) {
                    digests.write(&writer, &writer_committed).await?;
                    out.digests += 1;
                }
            }
            if digests.pending_events > 0 || digests.next_seq == 0 && !writer_committed.is_empty() {
                digests.write(&writer, &writer_committed).await?;
                out.digests += 1;
            }
            Ok::<SinkSummary, AuditError>(out)
        });

        let flush_after = Duration::from_millis(cfg.flush_interval_ms);
        let mut batch = Batch::with_capacity(&cfg).recycle(next_batch_seq);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failed: Option<AuditError> = None;
        let mut timer = std::pin::pin!(tokio::time::sleep(flush_after));
        let mut armed_for: Option<Instant> = None;
        loop {
            let deadline = batch.started.map(|s| s + flush_after);
            let full = batch.rows() >= cfg.batch_max_rows || batch.bytes() >= cfg.batch_max_bytes;
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if !batch.is_empty() && (full || timed_out) {
                next_batch_seq += 1;
                let sealed = std::mem::take(&mut batch).seal(&cfg.topic, &heads);
                if tx.try_send(sealed).is_err() {
                    break;
                }
                BatchPending {
                    metrics: &self.metrics,
                    rows: 0,
                    bytes: 0,
                }
                .emit();
                match self.free_buffer(&consumer, &mut free_rx).await {
                    Some(b) => batch = b.recycle(next_batch_seq),
                    None => break,
                }
                continue;
            }
            // One timer, re-armed per batch: a timer built per record costs a timer-wheel
            // insert and removal for every record.
            if deadline != armed_for {
                if let Some(d) = deadline {
                    timer.as_mut().reset(d.into());
                }
                armed_for = deadline;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = &mut timer, if deadline.is_some() => {}
                msg = consumer.recv() => match msg {
                    Ok(m) => {
                        let p = m.partition();
                        let head = heads.entry(p).or_default();
                        batch.touch(p, m.offset(), *head);
                        match decode(&codec, &m) {
                            Ok(v) => batch.push(&v, &cfg.topic, p, m.offset(), head),
                            Err(error) => {
                                batch.dead_bytes += m.payload().map_or(0, <[u8]>::len);
                                batch.dead.push(dead_record(&m, error));
                            }
                        }
                        BatchPending {
                            metrics: &self.metrics,
                            rows: batch.rows(),
                            bytes: batch.bytes(),
                        }
                        .emit();
                    }
                    Err(e) => {
                        ConsumeFailed { error: &e }.emit();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            // A backlog keeps recv() ready forever; without yielding, the writer task (woken
            // into this worker's LIFO slot, which other workers cannot steal) would not run
            // until the next batch is sealed.
            tokio::task::consume_budget().await;
            if tx.is_closed() {
                break;
            }
        }
        // Graceful stop: hand over what was built, then let the writer drain and digest.
        if !batch.is_empty() && !tx.is_closed() {
            let sealed = batch.seal(&cfg.topic, &heads);
            let _ = tx.send(sealed).await;
        }
        drop(tx);
        match writer_task.await {
            Ok(Ok(s)) => {
                summary.rows += s.rows;
                summary.batches += s.batches;
                summary.dead_letters += s.dead_letters;
                summary.digests += s.digests;
            }
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(AuditError::Inconsistent(format!("writer task: {e}"))),
        }
        self.health.set_ready(false);
        match failed {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Waits for the writer to return a batch buffer. A busy writer is the normal state while
    /// a backlog drains: the sink first just stops reading (librdkafka's prefetch is bounded,
    /// so memory stays at two batches plus prefetch), because pausing drops the prefetched
    /// records and stalls fetching for about a second on resume. Only a writer busy for longer
    /// than [`PAUSE_AFTER`] (ClickHouse slow or down) gets the partitions paused. Returns None
    /// if the writer has stopped.
    async fn free_buffer(
        &self,
        consumer: &StreamConsumer,
        free: &mut mpsc::Receiver<Batch>,
    ) -> Option<Batch> {
        if let Ok(b) = free.try_recv() {
            return Some(b);
        }
        if let Ok(b) = tokio::time::timeout(PAUSE_AFTER, free.recv()).await {
            return b;
        }
        let assignment = consumer.assignment().ok();
        if let Some(a) = &assignment {
            let _ = consumer.pause(a);
        }
        SinkPaused {
            metrics: &self.metrics,
            paused: true,
        }
        .emit();
        let b = free.recv().await;
        if let Some(a) = &assignment {
            let _ = consumer.resume(a);
        }
        SinkPaused {
            metrics: &self.metrics,
            paused: false,
        }
        .emit();
        b
    }

    /// Re-reads the exact ranges of a stored batch and rebuilds its rows.
    async fn rebuild(
        &self,
        consumer: &StreamConsumer,
        codec: &Codec<VerifiedEvent>,
        last: &[OffsetRow],
    ) -> Result<Sealed, AuditError> {
        let topic = &self.config.topic;
        let mut tpl = TopicPartitionList::new();
        let mut heads = BTreeMap::new();
        let mut pending: BTreeMap<i32, &OffsetRow> = BTreeMap::new();
        for o in last {
            tpl.add_partition_offset(topic, o.kafka_partition, Offset::Offset(o.first_offset))
                .map_err(|source| AuditError::Kafka {
                    what: "build replay assignment".into(),
                    source,
                })?;
            heads.insert(
                o.kafka_partition,
                ChainHead {
                    next_seq: o.first_seq,
                    hash: o.prev_hash,
                },
            );
            pending.insert(o.kafka_partition, o);
        }
        consumer.assign(&tpl).map_err(|source| AuditError::Kafka {
            what: "assign replay".into(),
            source,
        })?;
        let created_at = last.first().map(|o| o.batch_created_at).unwrap_or_default();
        let seq = last.first().map(|o| o.batch_seq).unwrap_or_default();
        let mut batch = Batch {
            seq,
            created_at,
            ..Batch::with_capacity(&self.config)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pending.is_empty() {
            let m = tokio::time::timeout_at(deadline.into(), consumer.recv())
                .await
                .map_err(|_| {
                    AuditError::Inconsistent(
                        "replay of the last batch timed out: its records are no longer readable"
                            .into(),
                    )
                })?
                .map_err(|source| AuditError::Kafka {
                    what: "replay".into(),
                    source,
                })?;
            let p = m.partition();
            let Some(o) = pending.get(&p) else { continue };
            if m.offset() < o.first_offset {
                continue;
            }
            let last_offset = o.last_offset;
            if m.offset() > last_offset {
                pending.remove(&p);
                continue;
            }
            let head = heads.entry(p).or_default();
            batch.touch(p, m.offset(), *head);
            match decode(codec, &m) {
                Ok(v) => batch.push(&v, topic, p, m.offset(), head),
                Err(error) => batch.dead.push(dead_record(&m, error)),
            }
            if m.offset() == last_offset {
                pending.remove(&p);
            }
        }
        let sealed = batch.seal(topic, &heads);
        // The rebuilt ranges must be exactly what the intent promised, or the chain would fork.
        for (want, got) in last.iter().zip(&sealed.offsets) {
            if want != got {
                return Err(AuditError::Inconsistent(format!(
                    "replayed batch {} differs from its intent on partition {}",
                    want.batch_seq, want.kafka_partition
                )));
            }
        }
        if last.len() != sealed.offsets.len() {
            return Err(AuditError::Inconsistent(
                "replayed batch covers other partitions than its intent".into(),
            ));
        }
        Ok(Sealed {
            token: batch_token(topic, last),
            ..sealed
        })
    }
}

/// Writes sealed batches and digests with retries (a clone-able part of the sink).
struct Writer {
    config: AuditSinkConfig,
    store: AuditStore,
    signer: Arc<EventSigner>,
    metrics: SinkMetrics,
    producer: FutureProducer,
}

impl Writer {
    fn new(sink: &AuditSink, producer: FutureProducer) -> Self {
        Writer {
            config: sink.config.clone(),
            store: sink.store.clone(),
            signer: sink.signer.clone(),
            metrics: sink.metrics.clone(),
            producer,
        }
    }

    /// Retries a ClickHouse write with exponential backoff while the error is transient.
    async fn retry<F, Fut>(&self, table: &str, mut op: F) -> Result<(), AuditError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AuditError>>,
    {
        let mut delay = Duration::from_millis(self.config.retry_initial_ms);
        let max = Duration::from_millis(self.config.retry_max_ms);
        loop {
            match op().await {
                Ok(()) => return Ok(()),
                Err(e) if e.class() == vigil_schemas::error::ErrorClass::Transient => {
                    WriteRetrying {
                        metrics: &self.metrics,
                        table,
                        error: &e,
                        delay,
                    }
                    .emit();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn write(
        &self,
        sealed: &Sealed,
        committed: &mut BTreeMap<i32, PartitionHead>,
    ) -> Result<(), AuditError> {
        let started = Instant::now();
        for d in &sealed.batch.dead {
            self.dead_letter(d).await?;
        }
        let batch = &sealed.batch;
        let intent_token = format!("{}-intent", sealed.token);
        self.retry("sink_offsets", || {
            self.store.insert_offsets(&sealed.offsets, &intent_token)
        })
        .await?;
        if batch.rows() > 0 {
            self.retry("audit_events", || {
                self.store
                    .insert_events_encoded(&batch.buf, &batch.chunk_ends, &sealed.token)
            })
            .await?;
        }
        SinkPaused {
            metrics: &self.metrics,
            paused: false,
        }
        .emit();
        RowsLanded {
            metrics: &self.metrics,
            verified_at: &batch.verified_at,
            now: now_micros(),
        }
        .emit();
        for o in &sealed.offsets {
            committed.insert(
                o.kafka_partition,
                PartitionHead {
                    partition: o.kafka_partition,
                    last_offset: o.last_offset,
                    next_seq: o.next_seq,
                    head: o.last_chain_hash,
                },
            );
        }
        BatchStored {
            metrics: &self.metrics,
            seq: batch.seq,
            rows: batch.rows(),
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(())
    }

    /// Parks an undecodable record in the DLQ (at-least-once: a replayed batch parks it again).
    async fn dead_letter(&self, d: &DeadRecord) -> Result<(), AuditError> {
        let now_ms = now_micros() / 1000;
        let dl = DeadLetterHeaders {
            error_class: ErrorClass::BadData,
            error: d.error.clone(),
            origin_topic: self.config.topic.clone(),
            origin_partition: d.partition,
            origin_offset: d.offset,
            origin_timestamp_ms: d.timestamp_ms,
            consumer_group: self.config.group.clone(),
            attempts: 1,
            first_failed_at_ms: now_ms,
            last_failed_at_ms: now_ms,
            retry_not_before_ms: None,
        };
        let original = dead_letter::Original {
            key: d.key.as_deref(),
            value: d.value.as_deref(),
            headers: &d.headers,
            timestamp_ms: None,
        };
        dead_letter::write(
            &self.producer,
            &self.config.dlq_topic,
            &original,
            &dl,
            Duration::from_secs(30),
        )
        .await
        .map_err(|source| AuditError::Kafka {
            what: "dead-letter".into(),
            source,
        })?;
        RecordDeadLettered {
            metrics: &self.metrics,
            partition: d.partition,
            offset: d.offset,
            error: &d.error,
        }
        .emit();
        Ok(())
    }
}

/// Digest cadence and chain state.
struct DigestState {
    next_seq: u64,
    prev_hash: [u8; 32],
    pending_events: u64,
    last_at: Instant,
}

impl DigestState {
    /// Starts from the last stored digest (if any); rows already stored but not covered by the last digest
    /// (a crash after a batch and before its digest, or the batch replayed at start) count as
    /// pending, so the next digest — at the latest the one written on stop — covers them.
    fn new(last: Option<DigestRow>, committed: &BTreeMap<i32, PartitionHead>) -> Self {
        let covered: BTreeMap<i32, u64> = last
            .as_ref()
            .map(|d| {
                d.partitions
                    .iter()
                    .copied()
                    .zip(d.next_seqs.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        let uncovered: u64 = committed
            .values()
            .map(|h| {
                h.next_seq
                    .saturating_sub(covered.get(&h.partition).copied().unwrap_or(0))
            })
            .sum();
        DigestState {
            next_seq: last.as_ref().map_or(0, |d| d.digest_seq + 1),
            prev_hash: last.as_ref().map_or([0; 32], |d| d.digest_hash),
            pending_events: uncovered,
            last_at: Instant::now(),
        }
    }

    fn due(&self, cfg: &AuditSinkConfig) -> bool {
        self.pending_events >= cfg.digest_every_events
            || (self.pending_events > 0
                && self.last_at.elapsed() >= Duration::from_millis(cfg.digest_interval_ms))
    }

    async fn write(
        &mut self,
        writer: &Writer,
        committed: &BTreeMap<i32, PartitionHead>,
    ) -> Result<(), AuditError> {
        let heads: Vec<PartitionHead> = committed.values().copied().collect();
        let row = digest::make(
            &writer.signer,
            &writer.config.topic,
            self.next_seq,
            now_micros(),
            self.prev_hash,
            &heads,
        );
        writer
            .retry("audit_digests", || writer.store.insert_digest(&row))
            .await?;
        self.next_seq += 1;
        self.prev_hash = row.digest_hash;
        self.pending_events = 0;
        self.last_at = Instant::now();
        DigestWritten {
            metrics: &writer.metrics,
        }
        .emit();
        Ok(())
    }
}

fn decode(codec: &Codec<VerifiedEvent>, m: &BorrowedMessage<'_>) -> Result<VerifiedEvent, String> {
    let value = m
        .payload()
        .ok_or_else(|| "record has no value".to_owned())?;
    let (_, body) = wire::split_frame(value).map_err(|e| format!("framing: {}", ErrorChain(&e)))?;
    codec
        .decode(body)
        .map_err(|e| format!("not a VerifiedEvent: {}", ErrorChain(&e)))
}

fn dead_record(m: &BorrowedMessage<'_>, error: String) -> DeadRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    DeadRecord {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers,
        error,
    }
}

/// Returns the partitions of `topic`, waiting up to 30 s for it to exist.
async fn topic_partitions(consumer: &StreamConsumer, topic: &str) -> Result<Vec<i32>, AuditError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(|source| AuditError::Kafka {
                what: "fetch metadata".into(),
                source,
            })?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !parts.is_empty() {
            return Ok(parts);
        }
        if Instant::now() >= deadline {
            return Err(AuditError::Inconsistent(format!(
                "topic {topic} does not exist"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
