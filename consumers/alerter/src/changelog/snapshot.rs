//! The start-up read of the changelog: every key's latest value, up to the end offsets taken
//! when the read started, decoded for [`AlertBook::restore`](crate::state::AlertBook::restore).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use vigil_topology::KafkaClientConfig;

use vigil_topology::InternalEvent;

use crate::internal_events::{AlerterMetrics, StateEntrySkipped};
use crate::state::document::{StateKey, StateValue, decode};

/// Decodes a snapshot's entries; undecodable ones are logged, counted in
/// `vigil_alerter_state_restore_skipped_total` by reason, and skipped (a value written by a
/// newer alerter is left in the topic for that alerter).
pub fn decode_snapshot(
    entries: &[(Vec<u8>, Vec<u8>)],
    metrics: &AlerterMetrics,
) -> Vec<(StateKey, StateValue)> {
    let mut values = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match StateKey::parse(key).and_then(|k| decode(&k, value).map(|v| (k, v))) {
            Ok(kv) => values.push(kv),
            Err(e) => StateEntrySkipped {
                metrics,
                reason: e.reason(),
                error: &e,
                key,
            }
            .emit(),
        }
    }
    values
}

/// Why the changelog could not be read at start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Kafka refused or failed.
    #[error("state topic {topic}: {what}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What was being done.
        what: &'static str,
        /// The client error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist.
    #[error("state topic {0} does not exist (create it with `vigil topology apply`)")]
    Missing(String),
    /// The reading thread died (a bug).
    #[error("state restore task failed")]
    Task,
    /// The end was not reached in time.
    #[error("state topic {topic}: end not reached within {timeout_ms} ms")]
    Timeout {
        /// The topic.
        topic: String,
        /// The bound.
        timeout_ms: u64,
    },
}

/// The raw latest value per key, as read from the changelog (tombstoned keys removed), in the
/// order each key was last written.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Key bytes and value bytes.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Records read, tombstones and superseded values included.
    pub records: u64,
    /// The high watermark of every partition when the read started: where following goes on.
    pub ends: Vec<(i32, i64)>,
}

/// Reads `topic` from the beginning to the high watermarks taken at start, with a consumer that
/// joins no group and commits nothing. Blocking: run it on a blocking thread.
pub fn read_snapshot(
    kafka: &KafkaClientConfig,
    group_hint: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Snapshot, RestoreError> {
    let kerr = |what: &'static str| {
        let topic = topic.to_owned();
        move |source| RestoreError::Kafka {
            topic: topic.clone(),
            what,
            source,
        }
    };
    let mut client = kafka.consumer(&format!("{group_hint}-state-restore"));
    client
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = client.create().map_err(kerr("create restore consumer"))?;
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let marks = vigil_consumer::key_registry::partition_watermarks(&consumer, topic, left())
        .map_err(|(what, source)| kerr(what)(source))?
        .ok_or_else(|| RestoreError::Missing(topic.to_owned()))?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, (low, high)) in &marks {
        if high > low {
            ends.insert(*p, *high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(kerr("assign"))?;
        }
    }
    let mut latest: HashMap<Vec<u8>, (u64, Option<Vec<u8>>)> = HashMap::new();
    let mut snapshot = Snapshot {
        ends: marks.iter().map(|(p, (_, high))| (*p, *high)).collect(),
        ..Snapshot::default()
    };
    if ends.is_empty() {
        return Ok(snapshot);
    }
    consumer.assign(&tpl).map_err(kerr("assign"))?;
    let mut seq = 0u64;
    while !ends.is_empty() {
        if left().is_zero() {
            return Err(RestoreError::Timeout {
                topic: topic.to_owned(),
                timeout_ms: timeout.as_millis() as u64,
            });
        }
        let Some(m) = consumer.poll(left().min(Duration::from_millis(200))) else {
            // Nothing more to read: a partition whose position passed its end (a trailing
            // transaction marker is never delivered) is done.
            if let Ok(pos) = consumer.position() {
                for e in pos.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && ends.get(&e.partition()).is_some_and(|end| o >= *end)
                    {
                        ends.remove(&e.partition());
                    }
                }
            }
            continue;
        };
        let m = m.map_err(kerr("read"))?;
        snapshot.records += 1;
        seq += 1;
        if let Some(k) = m.key() {
            latest.insert(k.to_vec(), (seq, m.payload().map(<[u8]>::to_vec)));
        }
        // Transaction markers and compacted-away offsets leave gaps: the end is reached once the
        // position passes the last offset below the high watermark.
        if let Some(end) = ends.get(&m.partition())
            && m.offset() + 1 >= *end
        {
            ends.remove(&m.partition());
        }
    }
    let mut kept: Vec<(u64, Vec<u8>, Vec<u8>)> = latest
        .into_iter()
        .filter_map(|(k, (s, v))| v.map(|v| (s, k, v)))
        .collect();
    kept.sort_by_key(|(s, _, _)| *s);
    snapshot.entries = kept.into_iter().map(|(_, k, v)| (k, v)).collect();
    Ok(snapshot)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::state::document::{MarkDoc, VERSION, encode};

    #[test]
    fn a_snapshot_keeps_good_entries_and_counts_the_bad_ones() {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        let id = Uuid::new_v4();
        let good = encode(&MarkDoc {
            v: VERSION,
            alert_id: id,
            expires_at_ms: 5,
        });
        let entries = vec![
            (b"mark/a".to_vec(), good.clone()),
            (b"mark/b".to_vec(), br#"{"v":2}"#.to_vec()),
            (b"mark/c".to_vec(), b"{not json".to_vec()),
            (b"bogus".to_vec(), good.clone()),
            (format!("silence/{id}").into_bytes(), good),
        ];
        let values = decode_snapshot(&entries, &metrics);
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0, StateKey::Mark("a".into()));
        assert_eq!(metrics.restore_skipped("unknown_version"), 1);
        assert_eq!(
            metrics.restore_skipped("malformed"),
            2,
            "garbage, and a mark under a silence key"
        );
        assert_eq!(metrics.restore_skipped("bad_key"), 1);
    }
}
