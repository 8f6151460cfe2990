//! Vigil alerter: deduplicates, routes and escalates alerts.
//!
//! **Delivery guarantee: at-least-once per receiver, after dedup.** An alert record's offset is
//! stored only once every receiver its routes name has accepted the notification (2xx), or once
//! the record was acknowledged by the broker on the DLQ because a receiver stayed unreachable
//! after the retry budget (`vigil-error-class: transient`), and in both cases only after the
//! broker acknowledged the record's state changelog writes. A crash in between consumes the
//! record again after the restart; its dedup mark names the same alert id, so it is notified
//! again rather than suppressed (a different alert id with the same fingerprint inside the
//! window is suppressed, across restarts too).
//!
//! Per record: Confluent frame and writer schema (unknown id or undecodable: `bad_data`, DLQ by
//! the runtime) → active silences (`silenced`) → routing tree ([`route`]) → per route: dedup by
//! fingerprint within `dedup_window_ms` (`suppressed`), grouping by `group_by` within
//! `group_interval_ms` (`grouped`) → delivery to the route's receivers concurrently
//! ([`delivery`]: token bucket, retries with exponential backoff and full jitter) → escalation
//! timers for routes with a policy: each tier is notified after its `after_ms` unless the alert
//! was acknowledged through the API ([`api`]).
//!
//! State (dedup and group marks, active alerts with their acknowledgement and escalation tier,
//! silences) is bounded, held in memory and written through to a compacted changelog topic
//! (`state_topic`, default `vigil.alerter.state`; [`changelog`]). At start the alerter reads
//! that topic to its end before it consumes alerts (`/readyz` stays false meanwhile) and drops
//! what has expired by wall clock; the escalation timers of unacknowledged alerts restart with
//! their remaining delay once their partitions are assigned (below). API mutations answer only
//! once their write is acknowledged.
//!
//! **Several instances** (one consumer group behind one load balancer for the API) share the
//! state topic. After its restore each instance keeps following the topic
//! ([`changelog::Follower`]: a consumer of its own, no group, from the restore's end offsets)
//! and applies the other instances' writes to its memory in offset order, without writing
//! anything back ([`state::AlertBook::apply_remote`]). Every write carries the writing
//! instance's random id ([`changelog::INSTANCE_HEADER`]); an instance skips its own writes.
//! So an ack or a silence made through any instance applies on all of them within a fetch
//! round trip (about 100 ms), and after a rebalance the new owner of a partition already holds
//! the previous owner's dedup marks. Conflicts: the last write of a key in topic order wins,
//! except that an active alert never loses an acknowledgement, escalation progress or a route
//! it already had.
//!
//! **Escalation timers follow partition ownership.** An alert's timers run on the instance
//! that owns its record's partition of the alerts topic (kept in the alert's changelog doc,
//! [`changelog::OriginDoc`]), told by the consumer runtime's assignment hooks: on a revoke the
//! timers of those partitions stop before their next tier; on an assignment the unacknowledged
//! alerts of the new partitions with tiers left get a timer, from the tier already notified
//! (due times are wall clock, overdue tiers fire at once). A restart arms timers the same way,
//! once its partitions are assigned, so a single instance re-arms everything it restored. The
//! previous owner's last write may reach the new owner only after the rebalance: the follower
//! then arms it if the partition is owned here and no timer runs here
//! ([`state::AlertBook::apply_remote`]). A timer skips a tier the changelog says another
//! instance notified. Residual window: a tier being notified on the previous owner when the
//! revoke arrives, or whose changelog write reaches the new owner after the new owner reached
//! that tier (an overdue tier right after the rebalance, within a follow round trip), is
//! notified twice; so is a tier of a previous owner that learns of its revoke late (stalled
//! past the session timeout while its timer fires).

pub mod api;
pub mod changelog;
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
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use vigil_consumer::{ConsumerRuntime, RunSummary, RuntimeError};
use vigil_schemas::{Codec, SchemaRegistry, WireError};
use vigil_topology::{InternalEvent, Telemetry};

pub use config::{
    AlerterConfig, ApiConfig, ConfigError, DeliveryConfig, EscalationConfig, EscalationTier,
    MatchConfig, ReceiverConfig, ReceiverKind, RouteConfig, STATE_TOPIC, StateConfig,
};
pub use internal_events::{AlertOutcome, AlerterMetrics};
use internal_events::{StateRestored, StateWriteFailed};
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
    /// The state changelog could not be read at start.
    #[error("alerter state restore")]
    Restore(#[source] changelog::RestoreError),
    /// The consumer runtime stopped with an error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A built alerter: the handler, its API server, the changelog follower, and the switch that
/// stops escalation timers.
pub struct AlerterService {
    /// The handler (metrics and state are reachable through it).
    pub handler: Arc<Alerter>,
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// This instance's random id, written in every changelog record it produces.
    pub instance: String,
    api_task: AbortOnDrop,
    follow_task: AbortOnDrop,
    arm_task: AbortOnDrop,
    stop: watch::Sender<bool>,
}

/// Stops the API server, the changelog follower or the timer armer when the service is dropped, stopped or
/// aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Longest wait for the state changelog to be read to its end at start.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads the changelog, rebuilds `book` and returns the escalations with tiers left (armed
/// once their partitions are assigned) and the offsets to follow the changelog from.
async fn restore(
    config: &AlerterConfig,
    book: &state::AlertBook,
    metrics: &AlerterMetrics,
) -> Result<(Vec<state::Rearm>, Vec<(i32, i64)>), AlerterError> {
    let started = Instant::now();
    let (kafka, group, topic) = (
        config.consumer.kafka.clone(),
        config.consumer.group_id.clone(),
        config.state_topic.clone(),
    );
    let snapshot = tokio::task::spawn_blocking(move || {
        changelog::read_snapshot(&kafka, &group, &topic, RESTORE_TIMEOUT)
    })
    .await
    .map_err(|_| AlerterError::Restore(changelog::RestoreError::Task))?
    .map_err(AlerterError::Restore)?;
    let values = changelog::decode_snapshot(&snapshot.entries, metrics);
    let skipped = snapshot.entries.len() - values.len();
    let mut pending = changelog::Pending::new();
    let restored = book.restore(values, &mut pending);
    // Tombstones of what expired while the alerter was down: best effort, compaction would
    // otherwise keep them until the next start.
    if let Err(e) = pending.acked().await {
        StateWriteFailed {
            metrics,
            caller: "restore",
            error: &e.to_string(),
        }
        .emit();
    }
    StateRestored {
        metrics,
        topic: &config.state_topic,
        records: snapshot.records,
        marks: restored.marks,
        alerts: restored.alerts,
        silences: restored.silences,
        timers: restored.rearm.len(),
        expired: restored.expired,
        evicted: restored.evicted,
        invalid: restored.invalid,
        undecodable: skipped,
        elapsed: started.elapsed(),
    }
    .emit();
    Ok((restored.rearm, snapshot.ends))
}

/// Builds the alerter: reads secrets, compiles the routing tree, restores the state from the
/// changelog, then starts the HTTP API. Escalation timers start once the consumer runtime
/// assigns the alerts' partitions ([`Alerter`]'s assignment hooks).
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
        service: "alerter",
        key: "api.bearer_token_file".into(),
        reason: "the API needs a bearer token".into(),
    })?;
    let schemas = SchemaRegistry::new(&config.consumer.schema_registry_url)
        .map_err(AlerterError::Registry)?;
    let mut producer_config = config.consumer.kafka.producer();
    producer_config.set("message.timeout.ms", "30000");
    let producer: FutureProducer = producer_config.create().map_err(AlerterError::Producer)?;
    let instance = uuid::Uuid::new_v4().to_string();
    let book = Arc::new(state::AlertBook::with_changelog(
        config.state.clone(),
        metrics.clone(),
        changelog::Changelog::new(
            producer.clone(),
            config.state_topic.clone(),
            instance.clone(),
        ),
    ));
    let (_unarmed, ends) = restore(config, &book, &metrics).await?;
    // Escalations taken over from followed writes; wired before the follower starts.
    let (arm_tx, mut arm_rx) = tokio::sync::mpsc::unbounded_channel();
    book.set_armer(arm_tx);
    let follower = changelog::Follower::new(
        &config.consumer.kafka,
        &config.consumer.group_id,
        &config.state_topic,
        &instance,
        &ends,
        Arc::clone(&book),
        metrics.clone(),
    );
    let follow_task = AbortOnDrop(tokio::spawn(follower.run()));
    tracing::info!(
        instance,
        state_topic = config.state_topic,
        "following the alerter state changelog"
    );
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
        dlq_topic: config.consumer.dlq_topic.clone(),
        group_id: config.consumer.group_id.clone(),
        stop: stop_rx,
        alerts_topic: config.alerts_topic.clone(),
        ownership: watch::channel(0).0,
    };
    let shared = Arc::new(shared);
    let armer = Arc::clone(&shared);
    let arm_task = AbortOnDrop(tokio::spawn(async move {
        while let Some(r) = arm_rx.recv().await {
            tracing::info!(alert_id = %r.alert.alert_id, route = r.escalation.route, "escalation taken over from a followed write");
            service::rearm(&armer, vec![r]);
        }
    }));
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
        handler: Arc::new(Alerter { shared }),
        api_addr,
        instance,
        api_task: AbortOnDrop(api_task),
        follow_task,
        arm_task,
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
        let result = match ConsumerRuntime::new(
            config.runtime_config(),
            &config.consumer.kafka,
            telemetry,
        ) {
            Ok(runtime) => runtime.run(Arc::clone(&self.handler), shutdown).await,
            Err(e) => Err(e),
        };
        let _ = self.stop.send(true);
        drop(self.api_task);
        drop(self.follow_task);
        drop(self.arm_task);
        Ok(result?)
    }
}

/// Validates, builds and runs the alerter until `shutdown` resolves. Callers that loaded the
/// config from a file validate it first with [`AlerterConfig::validate`], naming the file.
pub async fn run(
    config: &AlerterConfig,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, AlerterError> {
    config.validate("<alerter config>")?;
    let service = build(config, telemetry).await?;
    tracing::info!(
        alerts_topic = config.alerts_topic,
        state_topic = config.state_topic,
        receivers = config.receivers.len(),
        "alerter starting"
    );
    service.run(config, telemetry, shutdown).await
}
