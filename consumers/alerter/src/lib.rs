//! Vigil alerter: deduplicates, routes and escalates alerts.
//!
//! **Delivery guarantee: at-least-once per receiver, after dedup.** An alert record's offset is
//! stored only once every receiver its routes name has accepted the notification (2xx), or once
//! the record was acknowledged by the broker on the DLQ because a receiver stayed unreachable
//! after the retry budget (`vigil-error-class: transient`). A crash in between notifies again
//! after the restart, since dedup state lives in memory.
//!
//! Per record: Confluent frame and writer schema (unknown id or undecodable: `bad_data`, DLQ by
//! the runtime) → active silences (`silenced`) → routing tree ([`route`]) → per route: dedup by
//! fingerprint within `dedup_window_ms` (`suppressed`), grouping by `group_by` within
//! `group_interval_ms` (`grouped`) → delivery to the route's receivers concurrently
//! ([`delivery`]: token bucket, retries with exponential backoff and full jitter) → escalation
//! timers for routes with a policy: each tier is notified after its `after_ms` unless the alert
//! was acknowledged through the API ([`api`]).
//!
//! State (dedup and group marks, active alerts and their acknowledgements, silences, running
//! escalation timers) is in memory and bounded; a restart loses it.

pub mod api;
mod config;
pub mod delivery;
mod internal_events;
pub mod payload;
pub mod route;
mod service;
pub mod state;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use vigil_consumer::{ConsumerRuntime, RunSummary, RuntimeError};
use vigil_schemas::{Codec, SchemaRegistry, WireError};
use vigil_topology::Telemetry;

pub use config::{
    AlerterConfig, ApiConfig, ConfigError, DeliveryConfig, EscalationConfig, EscalationTier,
    MatchConfig, ReceiverConfig, ReceiverKind, RouteConfig, StateConfig,
};
pub use internal_events::{AlertOutcome, AlerterMetrics};
pub use service::Alerter;

/// Why the alerter could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AlerterError {
    /// The configuration is invalid or a secret is unreadable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The routing tree does not compile.
    #[error("alerter.route: {0}")]
    Route(String),
    /// The schema registry client could not be built.
    #[error("schema registry")]
    Registry(#[source] vigil_schemas::RegistryError),
    /// A codec could not be built (a bug).
    #[error("codec")]
    Codec(#[source] WireError),
    /// Metrics could not be registered.
    #[error("cannot register alerter metrics")]
    Metrics(#[source] prometheus::Error),
    /// The DLQ producer could not be created.
    #[error("kafka: cannot create the dlq producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    /// The API could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The consumer runtime stopped with an error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A built alerter: the handler, its API server, and the switch that stops escalation timers.
pub struct AlerterService {
    /// The handler (metrics and state are reachable through it).
    pub handler: Arc<Alerter>,
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    api_task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Builds the alerter: reads secrets, compiles the routing tree, starts the HTTP API.
pub async fn build(
    config: &AlerterConfig,
    telemetry: &Telemetry,
) -> Result<AlerterService, AlerterError> {
    let metrics = AlerterMetrics::register(&telemetry.registry).map_err(AlerterError::Metrics)?;
    let tree = route::RouteTree::compile(&config.route).map_err(AlerterError::Route)?;
    let mut receivers = HashMap::new();
    for (i, r) in config.receivers.iter().enumerate() {
        receivers.insert(
            r.name.clone(),
            Arc::new(delivery::Receiver::from_config(r, i)?),
        );
    }
    let token = config::read_secret(
        "api.bearer_token_file",
        config.api.bearer_token_file.as_deref(),
        config.api.bearer_token_env.as_deref(),
    )?
    .ok_or_else(|| ConfigError::Secret {
        key: "api.bearer_token_file".into(),
        reason: "the API needs a bearer token".into(),
    })?;
    let schemas =
        SchemaRegistry::new(&config.schema_registry_url).map_err(AlerterError::Registry)?;
    let mut producer_config = config.kafka.producer();
    producer_config.set("message.timeout.ms", "30000");
    let producer: FutureProducer = producer_config.create().map_err(AlerterError::Producer)?;
    let book = Arc::new(state::AlertBook::new(config.state.clone(), metrics.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let shared = service::Shared {
        codec: Codec::new()
            .map_err(AlerterError::Codec)?
            .with_max_value_bytes(config.max_value_bytes),
        schemas,
        max_value_bytes: config.max_value_bytes,
        tree,
        receivers,
        delivery: config.delivery.clone(),
        book: Arc::clone(&book),
        metrics: metrics.clone(),
        producer,
        dlq_topic: config.dlq_topic.clone(),
        group_id: config.group_id.clone(),
        stop: stop_rx,
    };
    let app = api::router(
        api::ApiState::new(Arc::clone(&book), &token, metrics),
        config.api.max_body_bytes,
    );
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| AlerterError::Listen {
            addr: config.api.listen,
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| AlerterError::Listen {
            addr: config.api.listen,
            source,
        })?;
    let api_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "alerter api stopped");
        }
    });
    tracing::info!(%api_addr, "alerter api listening");
    Ok(AlerterService {
        handler: Arc::new(Alerter {
            shared: Arc::new(shared),
        }),
        api_addr,
        api_task,
        stop,
    })
}

impl AlerterService {
    /// Consumes alerts until `shutdown` resolves, then stops the API and escalation timers.
    pub async fn run(
        self,
        config: &AlerterConfig,
        telemetry: &Telemetry,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, AlerterError> {
        let result = match ConsumerRuntime::new(config.runtime_config(), &config.kafka, telemetry) {
            Ok(runtime) => runtime.run(Arc::clone(&self.handler), shutdown).await,
            Err(e) => Err(e),
        };
        let _ = self.stop.send(true);
        self.api_task.abort();
        Ok(result?)
    }
}

/// Validates, builds and runs the alerter until `shutdown` resolves.
pub async fn run(
    config: &AlerterConfig,
    config_path: &str,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, AlerterError> {
    config.validate(config_path)?;
    let service = build(config, telemetry).await?;
    tracing::info!(
        alerts_topic = config.alerts_topic,
        receivers = config.receivers.len(),
        "alerter starting"
    );
    service.run(config, telemetry, shutdown).await
}
