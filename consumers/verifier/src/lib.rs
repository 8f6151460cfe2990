//! Vigil verifier: checks event signatures against the key registry.
//!
//! **Delivery guarantee: at-least-once**, from the consumer runtime: a raw record's offset is
//! stored only after its verdict was acknowledged by the broker on the verified topic, or after
//! the record was acknowledged on the DLQ. A crash between the two writes the verdict again;
//! duplicates carry the same `event_id` (and the same origin offset).
//!
//! Per record: length bound → signature headers (missing or malformed: `bad_data`, DLQ) →
//! Confluent frame and writer schema (unknown id: DLQ) → decode (undecodable: DLQ) → key lookup
//! (unknown: `Untrusted`) → Ed25519 over the exact value bytes (fails: `Bad`) → key state at the
//! event's time ([`vigil_consumer::key_registry`]: `Revoked`, or `Untrusted` once a rotation's
//! grace ended) → clock skew (`Bad`) → nonce replay (`Bad`) → `Valid`. Every verdict, rejected
//! ones included, is published to the verified topic as a [`vigil_schemas::VerifiedEvent`].

mod config;
mod internal_events;
pub mod nonce;
mod service;
pub mod signature;

use std::future::Future;
use std::hash::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use vigil_consumer::key_registry::{KeyRegistry, KeyRegistryConfig, KeyRegistryError};
use vigil_consumer::{ConsumerRuntime, RunSummary, RuntimeError};
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, Codec, SchemaRegistry, TrustAnchorError, TrustAnchors, VerdictEncoder,
    VerifiedEvent, WireError,
};
use vigil_topology::Telemetry;

pub use config::{ConfigError, VerifierConfig};
pub use internal_events::VerifierMetrics;
pub use nonce::{NonceCache, NonceCheck};
pub use service::{KEY_RECORD_REFUSED, STATE_HEADER, Verdict, Verifier};
pub use signature::SignatureChecker;

/// Why the verifier could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key registry could not be loaded.
    #[error("key registry")]
    KeyRegistry(#[from] KeyRegistryError),
    /// The trust anchors could not be read.
    #[error("trust anchors")]
    TrustAnchors(#[from] TrustAnchorError),
    /// The schema registry refused or could not be reached at start-up.
    #[error("schema registry")]
    Registry(#[source] vigil_schemas::RegistryError),
    /// A codec could not be built (a bug).
    #[error("codec")]
    Codec(#[source] WireError),
    /// Metrics could not be registered.
    #[error("cannot register verifier metrics")]
    Metrics(#[source] prometheus::Error),
    /// The Kafka producer could not be created.
    #[error("kafka: cannot create the verified-topic producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    /// The verification thread could not be started.
    #[error("cannot start the verification thread")]
    Thread(#[source] std::io::Error),
    /// The consumer runtime stopped with an error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Builds the handler: registers the verified schema, loads the key registry (waiting until it
/// holds every key written before start), and prepares the producer and the replay memory.
/// The returned task follows the key registry and reports its refused records on the verified
/// topic; abort it when the verifier stops.
pub async fn build(
    config: &VerifierConfig,
    telemetry: &Telemetry,
) -> Result<(Arc<Verifier>, tokio::task::JoinHandle<()>), VerifierError> {
    config.validate()?;
    let metrics = VerifierMetrics::register(&telemetry.registry).map_err(VerifierError::Metrics)?;
    let schemas = SchemaRegistry::new(&config.consumer.schema_registry_url)
        .map_err(VerifierError::Registry)?;
    let verified_schema = schemas
        .register(
            &value_subject(&config.verified_topic),
            <VerifiedEvent as AvroRecord>::SCHEMA_JSON,
        )
        .await
        .map_err(VerifierError::Registry)?;
    let anchors = match &config.trust_anchors {
        Some(path) => Arc::new(TrustAnchors::load(path)?),
        None => {
            return Err(ConfigError::invalid("verifier", "trust_anchors", "is required").into());
        }
    };
    let (registry, registry_task) = KeyRegistry::start(
        &KeyRegistryConfig {
            topic: config.keys_topic.clone(),
            schema_registry_url: config.consumer.schema_registry_url.clone(),
            anchors,
            accept_unsigned: config.accept_unsigned_key_records,
        },
        &config.consumer.kafka,
        Some(&telemetry.registry),
    )
    .await?;
    if let Err(e) = registry
        .wait_loaded(Duration::from_millis(config.key_registry_load_timeout_ms))
        .await
    {
        registry_task.abort();
        return Err(e.into());
    }
    let mut producer_config = config.consumer.kafka.producer();
    producer_config.set("message.timeout.ms", "30000");
    let producer: FutureProducer = producer_config.create().map_err(VerifierError::Producer)?;
    let checker = SignatureChecker::new(config.verify_batch_max, metrics.batch_sizes.clone())
        .map_err(VerifierError::Thread)?;
    let max_skew_us = i64::try_from(config.max_clock_skew_ms)
        .unwrap_or(i64::MAX / 1_000)
        .saturating_mul(1_000);
    let verifier = Verifier {
        registry,
        schemas,
        raw_codec: Codec::new()
            .map_err(VerifierError::Codec)?
            .with_max_value_bytes(config.max_value_bytes),
        verified_codec: Codec::new()
            .map_err(VerifierError::Codec)?
            // A verdict embeds the signed value: allow for it plus the decoded copy.
            .with_max_value_bytes(config.max_value_bytes.saturating_mul(3)),
        verdicts: VerdictEncoder::new(config.max_value_bytes.saturating_mul(3))
            .map_err(VerifierError::Codec)?,
        verified_schema,
        verified_topic: config.verified_topic.clone(),
        producer,
        checker,
        nonces: Mutex::new(NonceCache::new(config.nonce_cache_max_entries, max_skew_us)),
        max_skew_us,
        max_value_bytes: config.max_value_bytes,
        verifier_id: config.verifier_id(),
        metrics,
        origin_hasher: RandomState::new(),
    };
    let verifier = Arc::new(verifier);
    let reporter = tokio::spawn(report_refusals(verifier.clone(), config.keys_topic.clone()));
    // One handle for both background tasks: aborting it stops the registry and the reporter.
    let background = AbortOnDrop(vec![registry_task, reporter]);
    let task = tokio::spawn(async move {
        let _background = background;
        std::future::pending::<()>().await;
    });
    Ok((verifier, task))
}

/// Aborts its tasks when dropped (when the task holding it is aborted).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs the verifier until `shutdown` resolves. Readiness (`/readyz`) turns on only once the
/// key registry is loaded (done before consuming starts) and partitions are assigned.
pub async fn run(
    config: &VerifierConfig,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, VerifierError> {
    let (verifier, registry_task) = build(config, telemetry).await?;
    tracing::info!(
        keys = verifier.registry.len(),
        raw_topic = config.raw_topic,
        verified_topic = config.verified_topic,
        "verifier starting"
    );
    let runtime = ConsumerRuntime::new(config.runtime_config(), &config.consumer.kafka, telemetry)?;
    let result = runtime.run(verifier, shutdown).await;
    registry_task.abort();
    Ok(result?)
}

/// Publishes every record the key registry refuses as a verdict on the verified topic
/// ([`Verifier::report_refused`]), for as long as the verifier runs.
async fn report_refusals(verifier: Arc<Verifier>, keys_topic: String) {
    use tokio::sync::broadcast::error::RecvError;
    let mut refusals = verifier.registry.refusals();
    loop {
        match refusals.recv().await {
            Ok(r) => {
                if let Err(e) = verifier.report_refused(&keys_topic, &r).await {
                    tracing::warn!(
                        partition = r.record.partition,
                        offset = r.record.offset,
                        error = e,
                        "refused key record not reported on the verified topic (it is counted \
                         and logged)"
                    );
                }
            }
            Err(RecvError::Lagged(missed)) => tracing::warn!(
                missed,
                "refused key records not reported on the verified topic (counted and logged)"
            ),
            Err(RecvError::Closed) => return,
        }
    }
}

impl Verifier {
    /// Returns the key registry this verifier judges with.
    pub fn key_registry(&self) -> &Arc<KeyRegistry> {
        &self.registry
    }
}
