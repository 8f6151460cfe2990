//! What a service implements: a [`Handler`] that takes one [`InboundRecord`] and says how it went.

use std::fmt;
use std::future::Future;

pub use vigil_schemas::ErrorClass;

/// One header of a Kafka record; `None` is a null value, distinct from an empty one.
pub type RecordHeader = (String, Option<Vec<u8>>);

/// A consumed record, owned so a handler may keep it across awaits.
///
/// A record coming back from a retry topic carries the coordinates of the original record (its
/// topic, partition, offset and timestamp) and its original headers, so a handler never sees the
/// retry machinery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    /// Topic the record was first written to.
    pub topic: String,
    /// Partition of that topic.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// Record timestamp in milliseconds since the Unix epoch, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// Record key; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Record value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Record headers in wire order.
    pub headers: Vec<RecordHeader>,
    /// Which handler call this is for the record, counting every earlier call (1 the first time).
    pub attempt: u32,
}

impl InboundRecord {
    /// Returns the value of the last header named `name`, if present and not null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// How a record was handled successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed and written downstream.
    Handled,
    /// Valid bytes but refused (bad signature, revoked key, replay); the service has already
    /// published the rejection as a security event itself. Counted separately.
    Rejected,
}

/// A classified handler failure.
///
/// The class says what the runtime does with the record: `bad_data` is dead-lettered at once
/// and the partition moves on; `transient` is retried with backoff, then through the retry
/// topics, then dead-lettered once the attempt budget is spent; `internal` (a bug) stops the run
/// without storing the record's offset, so nothing is lost when the service restarts. A
/// rejection is not a failure but [`Outcome::Rejected`]; a handler error classed `rejected` is
/// treated as a bug, like `internal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct HandleError {
    /// What the runtime does with the record.
    pub class: ErrorClass,
    /// Human-readable reason, written to `vigil-error` (truncated) when dead-lettered.
    pub message: String,
}

impl HandleError {
    /// Returns a `bad_data` error: the record goes to the DLQ.
    pub fn bad_data(message: impl fmt::Display) -> Self {
        Self {
            class: ErrorClass::BadData,
            message: message.to_string(),
        }
    }

    /// Returns a `transient` error: the record is retried.
    pub fn transient(message: impl fmt::Display) -> Self {
        Self {
            class: ErrorClass::Transient,
            message: message.to_string(),
        }
    }

    /// Returns an `internal` error: the run stops and the record will be consumed again.
    pub fn internal(message: impl fmt::Display) -> Self {
        Self {
            class: ErrorClass::Internal,
            message: message.to_string(),
        }
    }
}

/// A record's place in its partition's order of side effects.
///
/// With `pipeline_depth` > 1 the runtime starts handler calls for consecutive records of a
/// partition before the earlier ones finished, so their side effects would race. A handler whose
/// side effects must keep the partition's order (a produce per record, keyed like its input)
/// issues them inside its turn: [`Turn::wait`] resolves once every earlier record of the
/// partition passed its turn or finished, and [`Turn::pass`] lets the next record through. A
/// record that fails keeps its turn across its in-process retries; the runtime passes it when
/// the record is finished (handled, parked, or given up).
#[derive(Debug)]
pub struct Turn {
    prev: Option<tokio::sync::oneshot::Receiver<()>>,
    next: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Turn {
    /// Returns a turn with nobody before or after it (a record handled on its own).
    pub fn solo() -> Self {
        Self {
            prev: None,
            next: None,
        }
    }

    /// Returns the turn of a record and the receiver the next record waits on.
    pub(crate) fn chained(
        prev: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            Self {
                prev,
                next: Some(tx),
            },
            rx,
        )
    }

    /// Waits until every earlier record of the partition has passed its turn or finished.
    pub async fn wait(&mut self) {
        if let Some(prev) = self.prev.take() {
            // A predecessor dropped without passing only happens when the worker is tearing
            // down, and then nothing after it is stored either.
            let _ = prev.await;
        }
    }

    /// Passes the turn to the next record, waiting for its own first if it has not yet.
    pub async fn pass(&mut self) {
        self.wait().await;
        if let Some(next) = self.next.take() {
            let _ = next.send(());
        }
    }

    /// Returns true once this record has passed its turn.
    pub fn is_passed(&self) -> bool {
        self.prev.is_none() && self.next.is_none()
    }
}

/// The per-record logic of a service.
///
/// Handler calls for one partition are *started* in offset order (so per key, in order); with
/// `pipeline_depth` 1 (the default) a call starts only after the previous record finished. With
/// a deeper pipeline, up to that many calls of a partition run at once and may complete in any
/// order; the runtime still stores offsets strictly in order, each only once its record and every
/// earlier one finished. Side effects whose order matters go inside the record's [`Turn`]
/// ([`Handler::handle_in_turn`]). Different partitions are handled concurrently, so the handler
/// must be safe to call from several tasks at once. A handler may be called more than once for a
/// record (at-least-once): side effects should be idempotent, e.g. keyed by `event_id`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one record.
    fn handle(
        &self,
        record: &InboundRecord,
    ) -> impl Future<Output = Result<Outcome, HandleError>> + Send;

    /// Handles one record inside its partition's order of side effects. The runtime calls this;
    /// the default ignores the turn (side effects are then ordered by start only).
    fn handle_in_turn(
        &self,
        record: &InboundRecord,
        turn: &mut Turn,
    ) -> impl Future<Output = Result<Outcome, HandleError>> + Send {
        let _ = turn;
        self.handle(record)
    }

    /// Called when this consumer was given partitions, `(topic, partition)` pairs of the
    /// subscribed topics (retry topics included: filter by topic). Called from the runtime's
    /// task (never from librdkafka's rebalance callback), in rebalance order, after any
    /// preceding [`Handler::partitions_revoked`]; it must be quick and must not block. The
    /// default does nothing.
    fn partitions_assigned(&self, topic_partitions: &[(String, i32)]) {
        let _ = topic_partitions;
    }

    /// Called when partitions were taken from this consumer (a rebalance, or the run ending:
    /// then with every partition still held). Same calling rules as
    /// [`Handler::partitions_assigned`]; records of these partitions may still be finishing in
    /// their workers, but none of their offsets is stored any more. The default does nothing.
    fn partitions_revoked(&self, topic_partitions: &[(String, i32)]) {
        let _ = topic_partitions;
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_class_round_trips_through_its_wire_form() {
        for c in [
            ErrorClass::BadData,
            ErrorClass::Rejected,
            ErrorClass::Transient,
            ErrorClass::Internal,
        ] {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
        // One enum for the whole workspace: the schema crate's classes are the runtime's.
        assert_eq!(
            ErrorClass::parse("rejected"),
            Some(vigil_schemas::ErrorClass::Rejected)
        );
        assert_eq!(ErrorClass::parse("nope"), None);
        assert_eq!(
            HandleError::transient("registry down").to_string(),
            "transient: registry down"
        );
    }

    #[test]
    fn header_lookup_takes_the_last_non_null_occurrence() {
        let r = InboundRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![
                ("a".into(), Some(b"1".to_vec())),
                ("a".into(), Some(b"2".to_vec())),
                ("n".into(), None),
            ],
            attempt: 1,
        };
        assert_eq!(r.header("a"), Some(&b"2"[..]));
        assert_eq!(r.header("n"), None);
        assert_eq!(r.header("missing"), None);
    }
}
