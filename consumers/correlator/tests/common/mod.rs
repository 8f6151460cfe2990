//! Shared setup of the correlator tests: fresh topics and groups, a correlator (and verifier)
//! running in this process, verified events fed straight into the verified topic, and a
//! reader of the alerts topic.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;
use vigil_correlator::CorrelatorConfig;
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_schemas::model::{Alert, now_micros};
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, Codec, EventClass, Producer, SchemaId, SchemaRegistry, SignatureState, Status,
    Subject, VerificationEvent, VerifiedEvent,
};
use vigil_topology::{KafkaClientConfig, Telemetry};

/// The built-in rule pack of the repository.
pub fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

pub async fn create_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) {
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
        create_topic(&t.verified, verified_partitions, &[]).await;
        create_topic(&t.alerts, 1, &[]).await;
        create_topic(&t.dlq, 1, &[]).await;
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

pub fn producer() -> FutureProducer {
    let mut c = vigil_test_support::client_config();
    c.set("linger.ms", "1").set("enable.idempotence", "true");
    c.create().unwrap()
}

pub async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: &[(String, Vec<u8>)],
) {
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    p.send(
        FutureRecord::to(topic).key(key).payload(value).headers(h),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
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

/// Reads one counter (or gauge) without labels from a Prometheus text rendering.
pub fn metric(telemetry: &Telemetry, name: &str) -> u64 {
    telemetry
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

type Task<E> = tokio::task::JoinHandle<Result<vigil_consumer::RunSummary, E>>;

/// A correlator running in this process until stopped or aborted.
pub struct Running {
    pub telemetry: Telemetry,
    stop: Option<oneshot::Sender<()>>,
    task: Task<vigil_correlator::CorrelatorError>,
}

impl Running {
    pub fn start(config: CorrelatorConfig) -> Self {
        let telemetry = Telemetry::new();
        let (tx, rx) = oneshot::channel::<()>();
        let t = telemetry.clone();
        let task = tokio::spawn(async move {
            vigil_correlator::run(&config, &t, async {
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

    /// Waits until partitions are assigned (after the start-up rebuild).
    pub async fn ready(&self) {
        eventually("correlator ready", Duration::from_secs(60), || {
            self.telemetry.health.is_ready()
        })
        .await;
    }

    /// Waits until `n` events were evaluated.
    pub async fn evaluated(&self, n: u64) {
        eventually(
            &format!("{n} events evaluated"),
            Duration::from_secs(60),
            || metric(&self.telemetry, "vigil_correlator_events_total") >= n,
        )
        .await;
    }

    pub fn events(&self) -> u64 {
        metric(&self.telemetry, "vigil_correlator_events_total")
    }

    /// Clean shutdown: the runtime drains and commits.
    pub async fn stop(mut self) -> vigil_consumer::RunSummary {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    /// No clean shutdown: the task is dropped wherever it is.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A verifier running in this process until stopped.
pub struct Verifier {
    pub telemetry: Telemetry,
    stop: Option<oneshot::Sender<()>>,
    task: Task<vigil_verifier::VerifierError>,
}

impl Verifier {
    pub fn start(config: vigil_verifier::VerifierConfig) -> Self {
        let telemetry = Telemetry::new();
        let (tx, rx) = oneshot::channel::<()>();
        let t = telemetry.clone();
        let task = tokio::spawn(async move {
            vigil_verifier::run(&config, &t, async {
                let _ = rx.await;
            })
            .await
        });
        Verifier {
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

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
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
/// which starts with [`run_as_child`]. Killed (SIGKILL) when dropped, however the test ends.
pub struct ChildCorrelator(std::process::Child);

impl ChildCorrelator {
    /// Starts the child with the correlator configuration at `config`.
    pub fn spawn(test: &str, config: &std::path::Path) -> Self {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// SIGKILL: no shutdown, no final commit, no leaving the group.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for ChildCorrelator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In a child started by [`ChildCorrelator::spawn`]: runs the correlator until killed. Returns
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
