//! The book's write-through to the state changelog topic: each mutation is enqueued while the
//! [`AlertBook`](super::AlertBook) lock is held, so the topic sees mutations in the order they
//! happened; callers collect the writes in a [`Pending`] and wait for the broker's acks before
//! storing an offset or answering an API call.

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::document::StateKey;

/// Header naming the alerter instance (a random id drawn at start) that wrote a record; the
/// follower skips its own instance's records, whose mutations are already in memory.
pub const INSTANCE_HEADER: &str = "vigil-alerter-instance";

/// Why a state write was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state changelog write failed: {0}")]
pub struct StateWriteError(pub String);

/// Where state writes go: the producer, the topic, and the instance id each write is tagged
/// with ([`INSTANCE_HEADER`]).
#[derive(Clone)]
pub struct Changelog {
    producer: FutureProducer,
    topic: String,
    instance: String,
}

impl Changelog {
    /// Returns a changelog writing to `topic` through `producer` (idempotent, acks=all), each
    /// record tagged with `instance`.
    pub fn new(producer: FutureProducer, topic: String, instance: String) -> Self {
        Self {
            producer,
            topic,
            instance,
        }
    }

    /// Returns the instance id this changelog tags its writes with.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Enqueues one write (`None`: tombstone) without waiting.
    pub(crate) fn enqueue(
        &self,
        key: &StateKey,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let k = key.encode();
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: INSTANCE_HEADER,
            value: Some(self.instance.as_bytes()),
        });
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic)
            .key(&k)
            .headers(headers);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }
}

/// State writes enqueued for one record or one API call, awaited together.
#[derive(Default)]
pub struct Pending {
    futures: Vec<DeliveryFuture>,
    failed: Vec<String>,
}

impl Pending {
    /// Returns an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, r: Result<DeliveryFuture, KafkaError>) {
        match r {
            Ok(f) => self.futures.push(f),
            Err(e) => self.failed.push(e.to_string()),
        }
    }

    /// Returns how many writes are enqueued or failed to enqueue.
    pub fn len(&self) -> usize {
        self.futures.len() + self.failed.len()
    }

    /// Returns true when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the broker acknowledged every write; the first failure is the error.
    pub async fn acked(self) -> Result<usize, StateWriteError> {
        let n = self.len();
        let mut failed = self.failed;
        for r in futures::future::join_all(self.futures).await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed.push(e.to_string()),
                Err(_) => failed.push("producer dropped the write".to_owned()),
            }
        }
        match failed.into_iter().next() {
            None => Ok(n),
            Some(e) => Err(StateWriteError(e)),
        }
    }
}
