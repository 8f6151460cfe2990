//! Vigil audit sink: exactly-once, hash-chained audit trail in ClickHouse.
//!
//! Delivery guarantee: exactly-once from `vigil.events.verified` into `audit_events`. The sink's
//! offsets live in ClickHouse (`sink_offsets`), written as a write-ahead intent before each
//! batch; every batch insert carries a deterministic `insert_deduplication_token`, and on start
//! the last batch is replayed with the same token before consumption resumes after ClickHouse's
//! offsets (Kafka's committed offsets are never used).
//!
//! Tamper evidence: a SHA-256 chain per Kafka partition over every stored column, and periodic
//! digests of the chain heads signed by the sink's own Ed25519 key (see [`chain`], [`digest`],
//! [`verify`]).

pub mod chain;
pub mod config;
pub mod digest;
pub mod error;
pub mod export;
mod internal_events;
pub mod metrics;
pub mod migrations;
pub mod queries;
pub mod row;
pub mod sink;
pub mod store;
pub mod verify;

pub use config::AuditSinkConfig;
pub use error::AuditError;
pub use sink::AuditSink;
pub use store::AuditStore;
pub use verify::{VerifyOptions, VerifyReport};

use std::future::Future;

use vigil_topology::{KafkaClientConfig, Telemetry};

/// Runs the audit sink until `shutdown` resolves: registers its metrics in `telemetry`, opens
/// ClickHouse from `VIGIL_CLICKHOUSE_URL`, loads the digest-signing key and consumes with the
/// Kafka settings of the environment (`VIGIL_KAFKA_BOOTSTRAP`).
pub async fn run(
    config: &AuditSinkConfig,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()>,
) -> Result<sink::SinkSummary, AuditError> {
    config.validate()?;
    let metrics =
        metrics::SinkMetrics::register(&telemetry.registry).map_err(AuditError::Metrics)?;
    let store = AuditStore::from_env(&config.database)?;
    let signer = AuditSink::load_signer(config)?;
    let sink = AuditSink::new(
        config.clone(),
        KafkaClientConfig::from_env(),
        store,
        signer,
        metrics,
        telemetry.health.clone(),
    )?;
    sink.run(shutdown).await
}
