//! Shared setup of the verifier tests: fresh topics, keys, signed records, a running verifier
//! and a reader of the verified topic.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use vigil_consumer::{ConsumerConfig, RunSummary};
use vigil_schemas::{
    Codec, EventClass, Producer, SchemaId, Status, Subject, VerificationEvent, VerifiedEvent,
};
use vigil_test_support::{
    KeyRegistryFixture, RunningService, create_topic_with, kafka_bootstrap, schema_registry_url,
    unique_name,
};
use vigil_topology::KafkaClientConfig;
use vigil_verifier::{VerifierConfig, VerifierError};

#[allow(unused_imports)] // not every test binary waits
pub use vigil_test_support::eventually;

/// Large enough for the 10 MB poison record.
pub const BIG_MESSAGE_BYTES: &str = "16777216";

/// Fresh topics for one test, the keys topic a key registry of its own.
pub struct Topics {
    pub raw: String,
    pub verified: String,
    pub keys: KeyRegistryFixture,
    pub dlq: String,
}

impl Topics {
    pub async fn create(raw_partitions: i32) -> Self {
        let t = Topics {
            raw: unique_name("vt-raw"),
            verified: unique_name("vt-verified"),
            keys: KeyRegistryFixture::create("vt-keys").await,
            dlq: unique_name("vt-dlq"),
        };
        let big = [("max.message.bytes", BIG_MESSAGE_BYTES)];
        create_topic_with(&t.raw, raw_partitions, &big).await;
        create_topic_with(&t.verified, 3, &big).await;
        create_topic_with(&t.dlq, 1, &big).await;
        t
    }

    pub fn config(&self) -> VerifierConfig {
        let defaults = VerifierConfig::default();
        VerifierConfig {
            consumer: ConsumerConfig {
                kafka: KafkaClientConfig {
                    linger_ms: 1,
                    ..KafkaClientConfig::new(kafka_bootstrap())
                },
                schema_registry_url: schema_registry_url(),
                group_id: unique_name("vt-group"),
                dlq_topic: self.dlq.clone(),
                retry_topics: Vec::new(),
                commit_interval_ms: 200,
                ..defaults.consumer.clone()
            },
            raw_topic: self.raw.clone(),
            verified_topic: self.verified.clone(),
            keys_topic: self.keys.topic().to_owned(),
            trust_anchors: Some(self.keys.anchors_path().to_owned()),
            max_clock_skew_ms: 60_000,
            key_registry_load_timeout_ms: 30_000,
            ..defaults
        }
    }

    /// Registers the raw event schema under this raw topic's subject.
    pub async fn raw_schema(&self) -> SchemaId {
        vigil_test_support::register_schema::<VerificationEvent>(&self.raw).await
    }
}

// Key statuses and signers are the key-registry fixture's.
#[allow(unused_imports)] // not every test binary builds statuses itself
pub use vigil_test_support::keys::{active, record_signer as signer};

pub fn event(key_id: &str) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        Status::Success,
        Producer::rust("verifier-test"),
    )
    .with_subject(Subject::principal("alice").with_key_id(key_id))
}

pub fn producer() -> FutureProducer {
    let mut c = vigil_test_support::client_config();
    c.set("message.max.bytes", BIG_MESSAGE_BYTES)
        .set("linger.ms", "1")
        .set("enable.idempotence", "true");
    c.create().unwrap()
}

// Sending (plain and signed records) is vigil-test-support's, shared with the other test crates.
#[allow(unused_imports)] // not every test binary sends plain records
pub use vigil_test_support::{send, send_signed};

/// A verifier running in this process until dropped or stopped.
pub type Running = RunningService<Result<RunSummary, VerifierError>>;

/// Starts a verifier with `config` in this process.
pub fn start_verifier(config: VerifierConfig) -> Running {
    RunningService::spawn(move |telemetry, shutdown| async move {
        vigil_verifier::run(&config, &telemetry, shutdown).await
    })
}

/// A record read back from the verified or DLQ topic.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, Vec<u8>>,
    pub header_list: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads a topic from the beginning in the background.
pub struct Reader {
    consumer: StreamConsumer,
}

impl Reader {
    pub fn new(topic: &str) -> Self {
        let mut c: ClientConfig = vigil_test_support::client_config();
        c.set("group.id", unique_name("vt-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", BIG_MESSAGE_BYTES)
            .set("receive.message.max.bytes", "100000000");
        let consumer: StreamConsumer = c.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader { consumer }
    }

    /// Reads until `n` records arrived or `timeout` passed.
    pub async fn read(&self, n: usize, timeout: Duration) -> Vec<Read> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let mut headers = HashMap::new();
                    let mut header_list = Vec::new();
                    if let Some(h) = m.headers() {
                        for hh in h.iter() {
                            header_list.push((hh.key.to_owned(), hh.value.map(<[u8]>::to_vec)));
                            if let Some(v) = hh.value {
                                headers.insert(hh.key.to_owned(), v.to_vec());
                            }
                        }
                    }
                    out.push(Read {
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                        header_list,
                    });
                }
                Ok(Err(e)) => panic!("reading: {e}"),
                Err(_) => break,
            }
        }
        out
    }
}

pub fn decode_verified(r: &Read) -> VerifiedEvent {
    let codec = Codec::<VerifiedEvent>::new()
        .unwrap()
        .with_max_value_bytes(64 << 20);
    let (_, body) =
        vigil_schemas::wire::split_frame_with_limit(r.value.as_deref().unwrap(), 64 << 20).unwrap();
    codec.decode(body).unwrap()
}
