//! A bounded, read-only pass over the DLQ.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::DlqConfig;
use crate::error::DlqError;
use crate::filter::Filter;
use crate::record::{Coordinate, DeadLetter};

/// How long one poll waits before the end-of-scan check runs again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What a scan visits.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Records passing the filter.
    Filter(Filter),
    /// Exactly these coordinates (a plan, or `inspect`).
    Exact(BTreeSet<Coordinate>),
}

impl Selection {
    fn wants(&self, record: &DeadLetter) -> bool {
        match self {
            Selection::Filter(f) => f.matches(record),
            Selection::Exact(set) => set.contains(&record.at),
        }
    }
}

/// What a scan read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Records read from the DLQ (matching or not).
    pub scanned: u64,
    /// Records handed to the visitor.
    pub selected: u64,
    /// Per partition, the end offset captured at the start (the scan stops there).
    pub end_offsets: BTreeMap<i32, i64>,
}

/// Returns the partition ids of `topic`, or [`DlqError::NoSuchTopic`].
pub(crate) fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, DlqError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| DlqError::kafka(format!("reading metadata of {topic}"), e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(DlqError::NoSuchTopic(topic.to_owned()));
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(DlqError::NoSuchTopic(topic.to_owned()));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// Reads `topic` from the start offsets to the end offsets captured now, calling `visit` for
/// each record `selection` wants, in offset order per partition. Never commits offsets.
pub fn scan_topic(
    cfg: &DlqConfig,
    topic: &str,
    selection: &Selection,
    mut visit: impl FnMut(DeadLetter) -> Result<(), DlqError>,
) -> Result<ScanReport, DlqError> {
    let consumer = reader(&cfg.kafka)?;
    let low_high: BTreeMap<i32, (i64, i64)> =
        vigil_consumer::key_registry::partition_watermarks(&consumer, topic, cfg.timeout)
            .map_err(|(what, e)| DlqError::kafka(format!("{what} of {topic}"), e))?
            .ok_or_else(|| DlqError::NoSuchTopic(topic.to_owned()))?
            .into_iter()
            .collect();
    let starts = start_offsets(&consumer, topic, selection, &low_high, cfg.timeout)?;

    let mut report = ScanReport {
        end_offsets: low_high.iter().map(|(p, (_, h))| (*p, *h)).collect(),
        ..ScanReport::default()
    };
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, start) in starts {
        let high = low_high.get(&p).map_or(0, |(_, h)| *h);
        if start < high {
            remaining.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(|e| DlqError::kafka("building the assignment", e))?;
        }
    }
    if remaining.is_empty() {
        return Ok(report);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| DlqError::kafka(format!("assigning {topic}"), e))?;

    let deadline = Instant::now() + cfg.timeout;
    while !remaining.is_empty() {
        if Instant::now() >= deadline {
            return Err(DlqError::Timeout {
                what: format!("reading {topic} ({} partitions left)", remaining.len()),
                secs: cfg.timeout.as_secs(),
            });
        }
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(msg)) => {
                let p = msg.partition();
                let offset = msg.offset();
                let Some(&high) = remaining.get(&p) else {
                    continue;
                };
                if offset >= high {
                    remaining.remove(&p);
                    continue;
                }
                report.scanned += 1;
                let headers = msg
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                let record = DeadLetter::new(
                    Coordinate {
                        partition: p,
                        offset,
                    },
                    msg.timestamp().to_millis(),
                    msg.key().map(<[u8]>::to_vec),
                    msg.payload().map(<[u8]>::to_vec),
                    headers,
                );
                if offset + 1 >= high {
                    remaining.remove(&p);
                }
                if selection.wants(&record) {
                    report.selected += 1;
                    visit(record)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => return Err(DlqError::kafka(format!("reading {topic}"), e)),
            None => {
                // Transaction markers and aborted records occupy offsets that are never
                // delivered: the position, not the last record, says a partition is done.
                let positions = consumer
                    .position()
                    .map_err(|e| DlqError::kafka("reading positions", e))?;
                for e in positions.elements() {
                    if let Offset::Offset(pos) = e.offset()
                        && remaining.get(&e.partition()).is_some_and(|h| pos >= *h)
                    {
                        remaining.remove(&e.partition());
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Scans the configured DLQ topic; see [`scan_topic`].
pub fn scan(
    cfg: &DlqConfig,
    selection: &Selection,
    visit: impl FnMut(DeadLetter) -> Result<(), DlqError>,
) -> Result<ScanReport, DlqError> {
    scan_topic(cfg, &cfg.dlq_topic, selection, visit)
}

/// Scans and collects up to `cfg.max_records` selected records.
pub fn collect(cfg: &DlqConfig, selection: &Selection) -> Result<Vec<DeadLetter>, DlqError> {
    let mut out = Vec::new();
    scan(cfg, selection, |r| {
        if out.len() >= cfg.max_records {
            return Err(DlqError::TooMany(cfg.max_records));
        }
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

fn start_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    selection: &Selection,
    low_high: &BTreeMap<i32, (i64, i64)>,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, DlqError> {
    match selection {
        Selection::Exact(set) => {
            let mut starts = BTreeMap::new();
            for c in set {
                if let Some((low, _)) = low_high.get(&c.partition) {
                    let s = starts.entry(c.partition).or_insert(c.offset);
                    *s = (*s).min(c.offset).max(*low);
                }
            }
            Ok(starts)
        }
        Selection::Filter(Filter {
            from_ms: Some(from),
            ..
        }) => {
            // A DLQ record is written after its last failure, so its timestamp is never before
            // `vigil-last-failed-at`: the first record at or after `from` is a safe start.
            let mut tpl = TopicPartitionList::new();
            for &p in low_high.keys() {
                tpl.add_partition_offset(topic, p, Offset::Offset(*from))
                    .map_err(|e| DlqError::kafka("building the time query", e))?;
            }
            let found = consumer
                .offsets_for_times(tpl, timeout)
                .map_err(|e| DlqError::kafka(format!("offsets_for_times on {topic}"), e))?;
            let mut starts = BTreeMap::new();
            for e in found.elements() {
                let Some((low, high)) = low_high.get(&e.partition()) else {
                    continue;
                };
                if let Err(err) = e.error() {
                    if matches!(err, KafkaError::OffsetFetch(RDKafkaErrorCode::NoError)) {
                        continue;
                    }
                    return Err(DlqError::kafka(
                        format!("offsets_for_times on {topic}/{}", e.partition()),
                        err,
                    ));
                }
                let start = match e.offset() {
                    Offset::Offset(o) => o.max(*low),
                    // No record at or after `from`.
                    _ => *high,
                };
                starts.insert(e.partition(), start);
            }
            Ok(starts)
        }
        Selection::Filter(_) => Ok(low_high.iter().map(|(p, (low, _))| (*p, *low)).collect()),
    }
}

/// Returns a read-only consumer: assigned partitions only, never commits, read_committed.
pub(crate) fn reader(
    kafka: &vigil_topology::KafkaClientConfig,
) -> Result<rdkafka::consumer::BaseConsumer, DlqError> {
    let group = format!("vigil-dlq-reader-{}", uuid::Uuid::new_v4().simple());
    let mut config = kafka.consumer(&group);
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    config
        .create()
        .map_err(|e| DlqError::kafka("creating the dlq reader", e))
}
