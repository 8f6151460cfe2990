//! Shared setup of the verifier tests: fresh topics, keys, signed records, a running verifier
//! and a reader of the verified topic.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;
use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_schemas::model::now_micros;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, Codec, EventClass, EventSigner, KeyId, KeyStatus, Producer, RecordSigner, SchemaId,
    SchemaRegistry, Status, Subject, VerificationEvent, VerifiedEvent,
};
use vigil_topology::{KafkaClientConfig, Telemetry};
use vigil_verifier::VerifierConfig;

/// Large enough for the 10 MB poison record.
pub const BIG_MESSAGE_BYTES: &str = "16777216";

/// Fresh topics for one test.
pub struct Topics {
    pub raw: String,
    pub verified: String,
    pub keys: String,
    pub dlq: String,
}

async fn create(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = vigil_test_support::client_config().create().unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(&[t], &opts).await.unwrap() {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

impl Topics {
    pub async fn create(raw_partitions: i32) -> Self {
        let t = Topics {
            raw: unique_name("vt-raw"),
            verified: unique_name("vt-verified"),
            keys: unique_name("vt-keys"),
            dlq: unique_name("vt-dlq"),
        };
        let big = [("max.message.bytes", BIG_MESSAGE_BYTES)];
        create(&t.raw, raw_partitions, &big).await;
        create(&t.verified, 3, &big).await;
        create(&t.keys, 1, &[("cleanup.policy", "compact")]).await;
        create(&t.dlq, 1, &big).await;
        t
    }

    pub fn config(&self) -> VerifierConfig {
        VerifierConfig {
            kafka: KafkaClientConfig {
                linger_ms: 1,
                ..KafkaClientConfig::new(kafka_bootstrap())
            },
            schema_registry_url: schema_registry_url(),
            group_id: unique_name("vt-group"),
            raw_topic: self.raw.clone(),
            verified_topic: self.verified.clone(),
            keys_topic: self.keys.clone(),
            dlq_topic: self.dlq.clone(),
            retry_topics: Vec::new(),
            commit_interval_ms: 200,
            max_clock_skew_ms: 60_000,
            key_registry_load_timeout_ms: 30_000,
            ..VerifierConfig::default()
        }
    }

    pub async fn key_writer(&self) -> KeyStatusWriter {
        KeyStatusWriter::new(
            &self.keys,
            &schema_registry_url(),
            &KafkaClientConfig::new(kafka_bootstrap()),
        )
        .await
        .unwrap()
    }

    /// Registers the raw event schema under this raw topic's subject.
    pub async fn raw_schema(&self) -> SchemaId {
        SchemaRegistry::new(&schema_registry_url())
            .unwrap()
            .register(
                &value_subject(&self.raw),
                <VerificationEvent as AvroRecord>::SCHEMA_JSON,
            )
            .await
            .unwrap()
    }
}

/// An Active status for `signer` under `key_id`, valid from an hour ago.
pub fn active(key_id: &str, signer: &EventSigner) -> KeyStatus {
    KeyStatus::active(
        key_id,
        signer.public_key(),
        now_micros() - 3_600_000_000,
        "test",
    )
}

pub fn signer(key_id: &str, schema: SchemaId) -> RecordSigner {
    RecordSigner::new(
        EventSigner::generate().with_key_id(KeyId::new(key_id).unwrap()),
        schema,
    )
    .unwrap()
}

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
pub struct Running {
    pub telemetry: Telemetry,
    stop: Option<oneshot::Sender<()>>,
    task:
        tokio::task::JoinHandle<Result<vigil_consumer::RunSummary, vigil_verifier::VerifierError>>,
}

impl Running {
    pub fn start(config: VerifierConfig) -> Self {
        let telemetry = Telemetry::new();
        let (tx, rx) = oneshot::channel::<()>();
        let t = telemetry.clone();
        let task = tokio::spawn(async move {
            vigil_verifier::run(&config, &t, async {
                let _ = rx.await;
            })
            .await
        });
        Running {
            telemetry,
            stop: Some(tx),
            task,
        }
    }

    pub async fn ready(&self) {
        eventually("verifier ready", Duration::from_secs(60), || {
            self.telemetry.health.is_ready()
        })
        .await;
    }

    pub async fn stop(mut self) -> vigil_consumer::RunSummary {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap().unwrap()
    }
}

pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
