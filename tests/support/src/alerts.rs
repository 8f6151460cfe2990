//! Alerts read back from an alerts topic, with their record key and schema id.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use vigil_schemas::Codec;
use vigil_schemas::model::Alert;

use crate::{client_config, unique_name};

/// An alert read back, with its record key.
#[derive(Clone)]
pub struct ReadAlert {
    /// The record key (the correlator writes the alert's fingerprint).
    pub key: Option<Vec<u8>>,
    /// The schema id of the value's Confluent frame.
    pub schema: u32,
    /// The decoded alert.
    pub alert: Alert,
}

impl std::fmt::Debug for ReadAlert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.key.as_deref().map(String::from_utf8_lossy);
        write!(f, "key={key:?} schema={} {:?}", self.schema, self.alert)
    }
}

/// Reads the alerts topic from the beginning.
pub struct AlertReader {
    consumer: StreamConsumer,
    codec: Codec<Alert>,
    /// Every alert read so far, in arrival order.
    pub seen: Vec<ReadAlert>,
}

impl AlertReader {
    /// Subscribes to `topic` in a fresh group, from its earliest offset.
    pub fn new(topic: &str) -> Self {
        let mut c = client_config();
        c.set("group.id", unique_name("ct-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        let consumer: StreamConsumer = c.create().expect("reading the alerts topic");
        consumer
            .subscribe(&[topic])
            .expect("reading the alerts topic");
        AlertReader {
            consumer,
            codec: Codec::new().expect("reading the alerts topic"),
            seen: Vec::new(),
        }
    }

    async fn next(&mut self, left: Duration) -> bool {
        match tokio::time::timeout(left, self.consumer.recv()).await {
            Ok(Ok(m)) => {
                let value = m.payload().expect("an alert record has a value");
                let (schema, body) =
                    vigil_schemas::wire::split_frame(value).expect("reading the alerts topic");
                let alert = self.codec.decode(body).expect("reading the alerts topic");
                self.seen.push(ReadAlert {
                    key: m.key().map(<[u8]>::to_vec),
                    schema: schema.0,
                    alert,
                });
                true
            }
            Ok(Err(e)) => panic!("reading alerts: {e}"),
            Err(_) => false,
        }
    }

    /// Reads until `n` alerts in total were seen or `timeout` passed.
    pub async fn until(&mut self, n: usize, timeout: Duration) -> &[ReadAlert] {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.seen.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.next(left).await {
                break;
            }
        }
        &self.seen
    }

    /// Keeps reading for `quiet` (anything that arrives is kept): proves nothing more fires.
    pub async fn settle(&mut self, quiet: Duration) -> &[ReadAlert] {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.next(left).await {
                break;
            }
        }
        &self.seen
    }

    /// Returns the rule ids of the alerts seen, sorted.
    pub fn rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.seen.iter().map(|a| a.alert.rule_id.clone()).collect();
        ids.sort();
        ids
    }
}
