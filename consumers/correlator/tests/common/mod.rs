//! Shared setup of the correlator tests: fresh topics and groups, a correlator (and verifier)
//! running in this process, verified events fed straight into the verified topic, and a
//! reader of the alerts topic.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_consumer::RunSummary;
use vigil_correlator::{CorrelatorConfig, CorrelatorError};
use vigil_schemas::model::{Alert, now_micros};
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, Codec, EventClass, Producer, SchemaId, SchemaRegistry, SignatureState, Status,
    Subject, VerificationEvent, VerifiedEvent,
};
use vigil_test_support::{ChildProcess, RunningService, create_topic};
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_topology::{KafkaClientConfig, Telemetry};

// Producing, waiting and topic creation are vigil-test-support's, shared with the other crates.
#[allow(unused_imports)] // not every test binary uses every helper
pub use vigil_test_support::{
    KeyRegistryFixture, create_topic_with, eventually, producer, send_signed,
};

/// The built-in rule pack of the repository.
pub fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

/// Fresh verified / alerts / DLQ topics for one correlator test.
pub struct Topics {
    pub verified: String,
    pub alerts: String,
    pub dlq: String,
}

impl Topics {
    pub async fn create(verified_partitions: i32) -> Self {
        let t = Topics {
            verified: unique_name("ct-verified"),
            alerts: unique_name("ct-alerts"),
            dlq: unique_name("ct-dlq"),
        };
        create_topic(&t.verified, verified_partitions).await;
        create_topic(&t.alerts, 1).await;
        create_topic(&t.dlq, 1).await;
        t
    }

    /// A correlator configuration over these topics with a fresh group and the built-in pack.
    pub fn config(&self) -> CorrelatorConfig {
        CorrelatorConfig {
            kafka: KafkaClientConfig {
                linger_ms: 1,
                ..KafkaClientConfig::new(kafka_bootstrap())
            },
            schema_registry_url: schema_registry_url(),
            group_id: unique_name("ct-group"),
            verified_topic: self.verified.clone(),
            alerts_topic: self.alerts.clone(),
            dlq_topic: self.dlq.clone(),
            // The shared vigil.retry.* topics would mix this test's group with everyone else's.
            retry_topics: Vec::new(),
            rules_dir: rules_dir(),
            reload_poll_ms: 0,
            commit_interval_ms: 200,
            shutdown_timeout_ms: 10_000,
            rebuild_timeout_ms: 30_000,
            ..CorrelatorConfig::default()
        }
    }

    /// The same configuration as TOML, for a correlator in a child process.
    pub fn config_toml(&self, group: &str) -> String {
        format!(
            "schema_registry_url = {:?}\ngroup_id = {group:?}\nverified_topic = {:?}\nalerts_topic = {:?}\ndlq_topic = {:?}\nretry_topics = []\nrules_dir = {:?}\nreload_poll_ms = 0\ncommit_interval_ms = 200\n[kafka]\nbootstrap_servers = {:?}\nlinger_ms = 1\n",
            schema_registry_url(),
            self.verified,
            self.alerts,
            self.dlq,
            rules_dir().display().to_string(),
            kafka_bootstrap(),
        )
    }
}

/// Writes `VerifiedEvent`s straight into a verified topic (the verifier's output format).
pub struct Feeder {
    producer: FutureProducer,
    codec: Codec<VerifiedEvent>,
    schema: SchemaId,
    topic: String,
    offset: std::sync::atomic::AtomicI64,
}

impl Feeder {
    pub async fn new(topic: &str) -> Self {
        let schema = SchemaRegistry::new(&schema_registry_url())
            .unwrap()
            .register(
                &value_subject(topic),
                <VerifiedEvent as AvroRecord>::SCHEMA_JSON,
            )
            .await
            .unwrap();
        Feeder {
            producer: producer(),
            codec: Codec::new().unwrap(),
            schema,
            topic: topic.to_owned(),
            offset: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Sends one verdict, keyed by its key id (as the verifier keys them).
    pub async fn send(&self, v: &VerifiedEvent) {
        let value = self.codec.encode_framed(self.schema, v).unwrap();
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
            .unwrap();
    }

    /// Sends many verdicts with up to 10 000 deliveries in flight (for throughput runs).
    pub async fn send_many(&self, verdicts: &[VerifiedEvent]) {
        for chunk in verdicts.chunks(10_000) {
            let mut pending = Vec::with_capacity(chunk.len());
            for v in chunk {
                let value = self.codec.encode_framed(self.schema, v).unwrap();
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
                f.await.unwrap().map_err(|(e, _)| e).unwrap();
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
            .unwrap();
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
            origin_offset: self
                .offset
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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

/// Returns a correlator counter (a series of it with `labels`) as a count.
pub fn count(correlator: &Correlator, name: &str, labels: &[(&str, &str)]) -> u64 {
    correlator.metric(name, labels) as u64
}

/// Returns how many events `correlator` evaluated.
pub fn events(correlator: &Correlator) -> u64 {
    count(correlator, "vigil_correlator_events_total", &[])
}

/// Waits until `correlator` evaluated `n` events.
pub async fn evaluated(correlator: &Correlator, n: u64) {
    eventually(
        &format!("{n} events evaluated"),
        Duration::from_secs(60),
        || events(correlator) >= n,
    )
    .await;
}

/// A correlator running in this process until stopped or aborted.
pub type Correlator = RunningService<Result<RunSummary, CorrelatorError>>;

/// Starts a correlator with `config` in this process.
pub fn start_correlator(config: CorrelatorConfig) -> Correlator {
    RunningService::spawn(move |telemetry, shutdown| async move {
        vigil_correlator::run(&config, &telemetry, shutdown).await
    })
}

/// Starts a verifier with `config` in this process (for the tests through the verifier).
pub fn start_verifier(
    config: vigil_verifier::VerifierConfig,
) -> RunningService<Result<RunSummary, vigil_verifier::VerifierError>> {
    RunningService::spawn(move |telemetry, shutdown| async move {
        vigil_verifier::run(&config, &telemetry, shutdown).await
    })
}

/// An alert read back, with its record key.
#[derive(Clone)]
pub struct ReadAlert {
    pub key: Option<Vec<u8>>,
    pub schema: u32,
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
    pub seen: Vec<ReadAlert>,
}

impl AlertReader {
    pub fn new(topic: &str) -> Self {
        let mut c: ClientConfig = vigil_test_support::client_config();
        c.set("group.id", unique_name("ct-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        let consumer: StreamConsumer = c.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        AlertReader {
            consumer,
            codec: Codec::new().unwrap(),
            seen: Vec::new(),
        }
    }

    async fn next(&mut self, left: Duration) -> bool {
        match tokio::time::timeout(left, self.consumer.recv()).await {
            Ok(Ok(m)) => {
                let value = m.payload().expect("an alert record has a value");
                let (schema, body) = vigil_schemas::wire::split_frame(value).unwrap();
                let alert = self.codec.decode(body).unwrap();
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

    pub fn rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.seen.iter().map(|a| a.alert.rule_id.clone()).collect();
        ids.sort();
        ids
    }
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

/// Set in a re-executed test binary: the path of the TOML config its correlator runs.
const CHILD_ENV: &str = "VIGIL_CORRELATOR_CHILD_CONFIG";

/// A correlator in its own process: this test binary re-executed to run only the test `test`,
/// which starts with [`run_as_child`], with the correlator configuration at `config`. Killed
/// (SIGKILL) when dropped, however the test ends.
pub fn spawn_child(test: &str, config: &std::path::Path) -> ChildProcess {
    ChildProcess::this_test(test, CHILD_ENV, config)
}

/// In a child started by [`spawn_child`]: runs the correlator until killed. Returns
/// `false` at once in the test's own process.
pub async fn run_as_child() -> bool {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let config = CorrelatorConfig::from_toml(&text, &path).unwrap();
    vigil_correlator::run(&config, &Telemetry::new(), std::future::pending())
        .await
        .unwrap();
    true
}
