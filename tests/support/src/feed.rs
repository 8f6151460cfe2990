//! Verified events written straight into a verified topic, as the verifier writes them, for the
//! consumers of that topic (correlator, audit sink) and the whole-pipeline tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_schemas::model::now_micros;
use vigil_schemas::{
    Codec, EventClass, Producer, SchemaId, SignatureState, Status, Subject, VerificationEvent,
    VerifiedEvent,
};

use crate::producer;

/// Writes `VerifiedEvent`s straight into a verified topic (the verifier's output format).
pub struct Feeder {
    producer: FutureProducer,
    codec: Codec<VerifiedEvent>,
    schema: SchemaId,
    topic: String,
    offset: AtomicI64,
}

impl Feeder {
    /// Registers the `VerifiedEvent` schema under `topic`'s subject and returns a feeder of it.
    pub async fn new(topic: &str) -> Self {
        let schema = crate::register_schema::<VerifiedEvent>(topic).await;
        Feeder {
            producer: producer(),
            codec: Codec::new().expect("feeding the verified topic"),
            schema,
            topic: topic.to_owned(),
            offset: AtomicI64::new(0),
        }
    }

    /// Sends one verdict, keyed by its key id (as the verifier keys them).
    pub async fn send(&self, v: &VerifiedEvent) {
        let value = self
            .codec
            .encode_framed(self.schema, v)
            .expect("feeding the verified topic");
        let key = v.key_id.clone().unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(key.as_bytes())
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("feeding the verified topic");
    }

    /// Sends many verdicts with up to 10 000 deliveries in flight (for throughput runs).
    pub async fn send_many(&self, verdicts: &[VerifiedEvent]) {
        for chunk in verdicts.chunks(10_000) {
            let mut pending = Vec::with_capacity(chunk.len());
            for v in chunk {
                let value = self
                    .codec
                    .encode_framed(self.schema, v)
                    .expect("feeding the verified topic");
                let key = v.key_id.clone().unwrap_or_default();
                loop {
                    match self.producer.send_result(
                        FutureRecord::to(&self.topic)
                            .key(key.as_bytes())
                            .payload(&value),
                    ) {
                        Ok(f) => {
                            pending.push(f);
                            break;
                        }
                        Err((e, _)) => {
                            assert!(
                                matches!(
                                    e,
                                    rdkafka::error::KafkaError::MessageProduction(
                                        rdkafka::types::RDKafkaErrorCode::QueueFull
                                    )
                                ),
                                "{e}"
                            );
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
            for f in pending {
                f.await
                    .expect("feeding the verified topic")
                    .map_err(|(e, _)| e)
                    .expect("feeding the verified topic");
            }
        }
    }

    /// Sends raw bytes (poison) to the verified topic.
    pub async fn send_raw(&self, key: &[u8], value: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("feeding the verified topic");
    }

    /// Wraps `event` in a verdict as the verifier would write it.
    pub fn verdict(
        &self,
        event: VerificationEvent,
        state: SignatureState,
        reason: Option<&str>,
        key_id: &str,
    ) -> VerifiedEvent {
        VerifiedEvent {
            event,
            state,
            reason: reason.map(str::to_owned),
            verified_at: now_micros(),
            verifier: "correlator-test".into(),
            key_id: Some(key_id.to_owned()),
            signed_value: Vec::new(),
            signature: vec![0; 64],
            origin_topic: "ct-raw".into(),
            origin_partition: 0,
            origin_offset: self.offset.fetch_add(1, Ordering::Relaxed),
            key_emergency: false,
        }
    }
}

/// A verification event about `key_id` from `principal`.
pub fn event(key_id: &str) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        Status::Success,
        Producer::rust("correlator-test"),
    )
    .with_subject(Subject::principal("alice").with_key_id(key_id))
}

/// Sends `n` bad-signature verdicts for `key`, returning their event ids.
pub async fn bad(feeder: &Feeder, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let e = event(key);
        ids.push(e.event_id.to_string());
        feeder
            .send(&feeder.verdict(
                e,
                SignatureState::Bad,
                Some("signature does not verify"),
                key,
            ))
            .await;
    }
    ids
}
