//! Writing dead letters back to their origin topic, exactly once per ledger.
//!
//! Each batch is one Kafka transaction holding the replayed records and their ledger entries;
//! the first transaction also holds the signed configuration event, so no replayed record is
//! ever visible (to `read_committed` consumers) without the event that records the replay.
//! The transactional id is fixed per DLQ topic: starting a replay fences any earlier replayer
//! of the same DLQ, and the ledger is read only after that fence, so two replays of one range
//! cannot both write a record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use vigil_schemas::RecordSigner;

use crate::config::{DlqConfig, REPLAYED_FROM};
use crate::error::DlqError;
use crate::ledger::{self, LedgerEntry};
use crate::record::{Coordinate, DeadLetter};
pub use crate::summary::{Approval, ReplaySummary};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Records per second written back (token bucket, bursts of a tenth of a second).
    pub rate_per_sec: u32,
    /// Records per transaction.
    pub batch_size: usize,
    /// Report what would be replayed and write nothing.
    pub dry_run: bool,
    /// Recorded in the configuration event.
    pub approval: Approval,
}

impl ReplayOptions {
    /// Returns 100 records/s, batches of 100.
    pub fn new(approval: Approval) -> Self {
        Self {
            rate_per_sec: 100,
            batch_size: 100,
            dry_run: false,
            approval,
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most a tenth of a second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Returns a full bucket for `rate_per_sec` (at least 1).
    pub fn new(rate_per_sec: u32) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        let capacity = (rate / 10.0).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Returns how long to wait before one more token is available, taking it.
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// Replays `records`: skips unreadable ones and those in the ledger, writes the rest back with
/// `vigil-replayed-from`, each batch in one transaction with its ledger entries. `recorder`
/// signs the configuration event (required unless `dry_run`).
pub fn replay(
    cfg: &DlqConfig,
    records: Vec<DeadLetter>,
    opts: &ReplayOptions,
    recorder: Option<&RecordSigner>,
) -> Result<ReplaySummary, DlqError> {
    let mut summary = ReplaySummary {
        replay_id: uuid::Uuid::new_v4().to_string(),
        dlq_topic: cfg.dlq_topic.clone(),
        dry_run: opts.dry_run,
        selected: records.len() as u64,
        approval: opts.approval.clone(),
        ..ReplaySummary::default()
    };
    let replayable: Vec<DeadLetter> = records
        .into_iter()
        .filter(|r| {
            let ok = r.parsed.is_ok();
            if !ok {
                summary.unreplayable += 1;
            }
            ok
        })
        .collect();

    // Fence earlier replayers of this DLQ before reading the ledger (see the module docs).
    let producer = if opts.dry_run {
        None
    } else {
        let mut config = cfg
            .kafka
            .transactional_producer(&format!("vigil-dlq-replay-{}", cfg.dlq_topic));
        config.set(
            "transaction.timeout.ms",
            cfg.timeout.as_millis().max(10_000).to_string(),
        );
        let p: BaseProducer = config
            .create()
            .map_err(|e| DlqError::kafka("creating the transactional producer", e))?;
        p.init_transactions(cfg.timeout)
            .map_err(|e| txn_error(cfg, "initializing transactions", e))?;
        Some(p)
    };
    let done = ledger::load(cfg)?;
    let pending: Vec<DeadLetter> = replayable
        .into_iter()
        .filter(|r| {
            let seen = done.contains(&r.at);
            if seen {
                summary.already_replayed += 1;
            }
            !seen
        })
        .collect();
    summary.to_replay = pending.len() as u64;
    for r in &pending {
        let range = summary
            .range
            .entry(r.at.partition)
            .or_insert((r.at.offset, r.at.offset));
        range.0 = range.0.min(r.at.offset);
        range.1 = range.1.max(r.at.offset);
        *summary
            .by_origin_topic
            .entry(r.origin_topic().to_owned())
            .or_default() += 1;
        summary.replayed.push(r.at.to_string());
    }
    let Some(producer) = producer else {
        return Ok(summary);
    };
    let recorder = recorder.ok_or_else(|| {
        DlqError::Invalid("a replay needs a key to sign its configuration event".to_owned())
    })?;

    let origin_partitions = origin_partition_counts(cfg, &pending)?;
    let event = crate::event::replay_event(&summary);
    summary.event_id = Some(event.event_id.to_string());
    let signed = recorder.sign(&event)?;

    let mut bucket = TokenBucket::new(opts.rate_per_sec);
    let now_ms = now_ms();
    let mut first = true;
    let batches: Vec<&[DeadLetter]> = if pending.is_empty() {
        vec![&[]]
    } else {
        pending.chunks(opts.batch_size.max(1)).collect()
    };
    for batch in batches {
        producer
            .begin_transaction()
            .map_err(|e| txn_error(cfg, "beginning a transaction", e))?;
        let sent = (|| {
            if first {
                let mut headers = OwnedHeaders::new_with_capacity(signed.headers.len());
                for (k, v) in &signed.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    });
                }
                send(
                    &producer,
                    BaseRecord::to(&cfg.events_topic)
                        .key(signed.key.as_slice())
                        .payload(signed.value.as_slice())
                        .headers(headers),
                )?;
            }
            for r in batch {
                let wait = bucket.take(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                write_back(
                    cfg,
                    &producer,
                    r,
                    &origin_partitions,
                    &summary.replay_id,
                    now_ms,
                )?;
            }
            Ok::<(), DlqError>(())
        })();
        if let Err(e) = sent {
            let _ = producer.abort_transaction(cfg.timeout);
            return Err(e);
        }
        if let Err(e) = producer.commit_transaction(cfg.timeout) {
            let err = txn_error(cfg, "committing a replay batch", e);
            if !matches!(err, DlqError::Fenced(_)) {
                let _ = producer.abort_transaction(cfg.timeout);
            }
            return Err(err);
        }
        first = false;
    }
    tracing::info!(
        replay_id = %summary.replay_id,
        dlq_topic = %cfg.dlq_topic,
        replayed = summary.to_replay,
        skipped = summary.already_replayed,
        "dlq replay committed"
    );
    Ok(summary)
}

fn write_back(
    cfg: &DlqConfig,
    producer: &BaseProducer,
    r: &DeadLetter,
    partitions: &HashMap<String, i32>,
    replay_id: &str,
    now_ms: i64,
) -> Result<(), DlqError> {
    let origin = r.origin_topic();
    let originals = r.original_headers();
    let from = crate::ledger::ledger_key(&cfg.dlq_topic, r.at);
    let mut headers = OwnedHeaders::new_with_capacity(originals.len() + 1);
    for (k, v) in originals {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    headers = headers.insert(Header {
        key: REPLAYED_FROM,
        value: Some(from.as_bytes()),
    });
    let mut out: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(origin).headers(headers);
    // Same partition as the original keeps per-key order; if the topic shrank (it cannot in
    // Kafka, but it may have been recreated) the partitioner decides by key.
    if let Ok(h) = &r.parsed
        && partitions
            .get(origin)
            .is_some_and(|n| h.origin_partition < *n)
    {
        out = out.partition(h.origin_partition);
    }
    if let Some(k) = &r.key {
        out = out.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        out = out.payload(v.as_slice());
    }
    send(producer, out)?;

    let entry = LedgerEntry {
        dlq_topic: cfg.dlq_topic.clone(),
        partition: r.at.partition,
        offset: r.at.offset,
        origin_topic: origin.to_owned(),
        replay_id: replay_id.to_owned(),
        replayed_at_ms: now_ms,
    };
    let value = serde_json::to_vec(&entry)
        .map_err(|e| DlqError::Invalid(format!("serializing a ledger entry: {e}")))?;
    send(
        producer,
        BaseRecord::<'_, str, [u8]>::to(&cfg.ledger_topic)
            .key(from.as_str())
            .payload(value.as_slice()),
    )
}

fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), DlqError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(50));
                record = r;
            }
            Err((e, _)) => return Err(DlqError::kafka("queueing a record", e)),
        }
    }
}

fn origin_partition_counts(
    cfg: &DlqConfig,
    pending: &[DeadLetter],
) -> Result<HashMap<String, i32>, DlqError> {
    let consumer = crate::scan::reader(&cfg.kafka)?;
    let mut out = HashMap::new();
    for r in pending {
        let topic = r.origin_topic();
        if !out.contains_key(topic) {
            let parts = crate::scan::partitions(&consumer, topic, cfg.timeout)?;
            out.insert(topic.to_owned(), parts.len() as i32);
        }
    }
    Ok(out)
}

fn txn_error(cfg: &DlqConfig, what: &str, e: KafkaError) -> DlqError {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::InvalidProducerEpoch)
    );
    if fenced {
        DlqError::Fenced(cfg.dlq_topic.clone())
    } else {
        DlqError::kafka(what, e)
    }
}

fn now_ms() -> i64 {
    vigil_schemas::model::now_micros() / 1000
}

/// Returns the coordinates `records` would replay, for reporting.
pub fn coordinates(records: &[DeadLetter]) -> Vec<Coordinate> {
    records.iter().map(|r| r.at).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_small_burst_then_paces() {
        let mut b = TokenBucket::new(100);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..12).map(|_| b.take(t0)).collect();
        assert!(waits[..10].iter().all(Duration::is_zero));
        assert!(waits[10] > Duration::ZERO && waits[11] > waits[10]);
        // A second later the bucket is full again, but never above its capacity.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.take(t1).is_zero());
    }
}
