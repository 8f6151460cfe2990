//! Runs the audit sink in its own process until SIGTERM/SIGINT (or `kill -9`); the crash tests
//! start and kill it. Settings come from `AUDIT_SINK_CONFIG` (TOML) and `VIGIL_*` variables.
//!
//! Delivery guarantee: exactly-once into ClickHouse (see the crate docs).

use std::sync::Arc;

use vigil_audit_sink::metrics::SinkMetrics;
use vigil_audit_sink::{AuditSink, AuditSinkConfig, AuditStore};
use vigil_topology::KafkaClientConfig;
use vigil_topology::telemetry::Health;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::var("AUDIT_SINK_CONFIG").unwrap_or_default();
    let config: AuditSinkConfig = toml::from_str(&text)?;
    let store = AuditStore::from_env(&config.database)?;
    let signer = AuditSink::load_signer(&config)?;
    let registry = prometheus::Registry::new();
    let metrics = SinkMetrics::register(&registry)?;
    let sink = AuditSink::new(
        config,
        KafkaClientConfig::from_env(),
        store,
        signer,
        metrics,
        Arc::new(Health::default()),
    )?;
    let summary = sink.run(vigil_consumer::shutdown_signal()).await?;
    eprintln!("sink stopped: {summary:?}");
    Ok(())
}
