//! The follower: after the restore, other instances' changelog writes are applied to this
//! instance's book, in offset order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use vigil_topology::KafkaClientConfig;

use vigil_topology::InternalEvent;

use crate::internal_events::{AlerterMetrics, FollowedApplied, FollowedSkipped, FollowerFailed};
use crate::state::document::{ChangelogError, StateKey, decode};
use crate::state::writer::INSTANCE_HEADER;
use crate::state::{AlertBook, RemoteApplied};

/// What the follower did with one changelog record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Written by this instance: its mutation is already in memory.
    Own,
    /// Another instance's write, applied; the kind (`mark`, `alert`, `silence`, `tombstone`).
    Applied(&'static str),
    /// Not applied; the reason (see `vigil_alerter_state_follow_skipped_total`).
    Skipped(&'static str),
}

/// Applies one record read by the follower to `book` unless `instance` wrote it, and counts
/// the outcome. Records without [`INSTANCE_HEADER`] (written before instances were tagged) are
/// applied. Decoding is [`StateKey::parse`] and [`decode`], as at restore; applying is
/// [`AlertBook::apply_remote`], which writes nothing back.
pub fn follow_record(
    book: &AlertBook,
    instance: &str,
    writer: Option<&[u8]>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    metrics: &AlerterMetrics,
) -> Followed {
    let (followed, decode_error) = apply_followed(book, instance, writer, key, value);
    let skipped = |reason| FollowedSkipped {
        metrics,
        reason,
        decode_error: decode_error.as_ref().map(|e| e as &dyn std::fmt::Display),
        key,
    };
    match followed {
        Followed::Own => skipped("own").emit(),
        Followed::Applied(kind) => FollowedApplied { metrics, kind }.emit(),
        Followed::Skipped(reason) => skipped(reason).emit(),
    }
    followed
}

/// Applies one record; a record that could not be decoded comes back with its error.
fn apply_followed(
    book: &AlertBook,
    instance: &str,
    writer: Option<&[u8]>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> (Followed, Option<ChangelogError>) {
    if writer == Some(instance.as_bytes()) {
        return (Followed::Own, None);
    }
    let Some(key) = key else {
        return (Followed::Skipped("no_key"), None);
    };
    let decoded = StateKey::parse(key).and_then(|k| match value {
        None => Ok((k, None)),
        Some(v) => decode(&k, v).map(|v| (k, Some(v))),
    });
    let (key, value) = match decoded {
        Ok(kv) => kv,
        Err(e) => return (Followed::Skipped(e.reason()), Some(e)),
    };
    let kind = if value.is_some() {
        key.kind()
    } else {
        "tombstone"
    };
    let followed = match book.apply_remote(key, value) {
        RemoteApplied::Upserted | RemoteApplied::Removed => Followed::Applied(kind),
        other => Followed::Skipped(other.as_str()),
    };
    (followed, None)
}

/// Keeps reading the state changelog after the start-up restore and applies the other
/// instances' writes to this instance's [`AlertBook`], in offset order. Its consumer joins no
/// group and commits nothing; it starts at the restore's end offsets, and after an error it is
/// recreated from the next unread offsets (with a growing pause), so it never silently stops.
pub struct Follower {
    kafka: KafkaClientConfig,
    group_hint: String,
    topic: String,
    instance: String,
    next: HashMap<i32, i64>,
    book: Arc<AlertBook>,
    metrics: AlerterMetrics,
}

/// Consecutive read errors after which the follower's consumer is recreated.
const FOLLOW_MAX_ERRORS: u32 = 5;
/// Pause after a read error.
const FOLLOW_ERROR_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause before recreating the consumer.
const FOLLOW_MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Follower {
    /// Returns a follower of `topic` from `ends` (the snapshot's end offsets) that skips the
    /// writes of `instance`.
    pub fn new(
        kafka: &KafkaClientConfig,
        group_hint: &str,
        topic: &str,
        instance: &str,
        ends: &[(i32, i64)],
        book: Arc<AlertBook>,
        metrics: AlerterMetrics,
    ) -> Self {
        Self {
            kafka: kafka.clone(),
            group_hint: group_hint.to_owned(),
            topic: topic.to_owned(),
            instance: instance.to_owned(),
            next: ends.iter().copied().collect(),
            book,
            metrics,
        }
    }

    /// Follows until the task is aborted (the service stops or is dropped).
    pub async fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.consumer() {
                Ok(consumer) => {
                    self.metrics.state_follower_up.set(1);
                    if self.read(&consumer).await {
                        backoff = Duration::from_secs(1);
                    }
                }
                Err(e) => FollowerFailed {
                    metrics: &self.metrics,
                    what: "create consumer",
                    error: &e.to_string(),
                }
                .emit(),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(FOLLOW_MAX_BACKOFF);
        }
    }

    fn consumer(&self) -> Result<StreamConsumer, KafkaError> {
        let mut client = self
            .kafka
            .consumer(&format!("{}-state-follow", self.group_hint));
        client
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // Another instance's ack or silence should apply here within a fetch round trip,
            // while under load (this instance's own writes come back too) fetches stay few and
            // large rather than one per write.
            .set("fetch.wait.max.ms", "100")
            .set("fetch.min.bytes", "65536")
            // An offset compaction made invalid: read again from the start (writes are
            // idempotent, the last one per key still wins).
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer = client.create()?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.next {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Reads until too many consecutive errors; returns whether any record was read.
    async fn read(&mut self, consumer: &StreamConsumer) -> bool {
        let (mut errors, mut read_any) = (0, false);
        loop {
            let m = match consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    FollowerFailed {
                        metrics: &self.metrics,
                        what: "read",
                        error: &e.to_string(),
                    }
                    .emit();
                    errors += 1;
                    if errors >= FOLLOW_MAX_ERRORS {
                        return read_any;
                    }
                    tokio::time::sleep(FOLLOW_ERROR_PAUSE).await;
                    continue;
                }
            };
            if errors > 0 {
                self.metrics.state_follower_up.set(1);
                errors = 0;
            }
            read_any = true;
            let writer = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == INSTANCE_HEADER)
                    .and_then(|h| h.value)
            });
            follow_record(
                &self.book,
                &self.instance,
                writer,
                m.key(),
                m.payload(),
                &self.metrics,
            );
            if let Some(ts) = m.timestamp().to_millis() {
                let now = vigil_schemas::model::now_micros() / 1_000;
                let delay_ms = now.saturating_sub(ts).max(0);
                self.metrics
                    .state_follow_delay_seconds
                    .set(delay_ms as f64 / 1_000.0);
            }
            self.next.insert(m.partition(), m.offset() + 1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use uuid::Uuid;

    use super::*;
    use crate::state::document::{MarkDoc, VERSION, encode};
    use crate::state::writer::Pending;

    #[test]
    fn the_follower_skips_own_writes_applies_others_and_writes_nothing() {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        let book = AlertBook::new(crate::config::StateConfig::default(), metrics.clone());
        let own = "instance-a";
        let doc = |id: Uuid| {
            encode(&MarkDoc {
                v: VERSION,
                alert_id: id,
                expires_at_ms: vigil_schemas::model::now_micros() / 1_000 + 60_000,
            })
        };
        let (theirs, mine, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let follow = |writer: Option<&str>, key: &str, value: Option<&[u8]>| {
            follow_record(
                &book,
                own,
                writer.map(str::as_bytes),
                Some(key.as_bytes()),
                value,
                &metrics,
            )
        };
        let now = Instant::now();
        let w = Duration::from_secs(60);
        // Own write: skipped, the book does not learn it from the topic.
        assert_eq!(
            follow(Some(own), "mark/own", Some(&doc(mine))),
            Followed::Own
        );
        assert_eq!(book.mark("own", w, other, now, &mut Pending::new()), None);
        // Another instance's write, and an untagged (older) one: applied.
        assert_eq!(
            follow(Some("instance-b"), "mark/b", Some(&doc(theirs))),
            Followed::Applied("mark")
        );
        assert_eq!(
            follow(None, "mark/old", Some(&doc(theirs))),
            Followed::Applied("mark")
        );
        for k in ["b", "old"] {
            assert_eq!(
                book.mark(k, w, other, now, &mut Pending::new()),
                Some(theirs)
            );
        }
        assert_eq!(
            follow(Some("instance-b"), "mark/b", None),
            Followed::Applied("tombstone")
        );
        assert_eq!(
            follow(Some("instance-b"), "mark/c", Some(b"{garbage")),
            Followed::Skipped("malformed")
        );
        assert_eq!(
            follow(Some("instance-b"), "thing/x", None),
            Followed::Skipped("bad_key")
        );
        assert_eq!(metrics.follow_skipped("own"), 1);
        assert_eq!(metrics.follow_applied("mark"), 2);
        assert_eq!(metrics.follow_applied("tombstone"), 1);
        assert_eq!(metrics.follow_skipped("malformed"), 1);
        // Only the one local mark (the "own" key) was written; following wrote nothing.
        assert_eq!(metrics.state_writes("mark"), 1);
        assert_eq!(metrics.state_writes("tombstone"), 0);
    }
}
