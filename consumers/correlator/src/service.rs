//! The correlator service: consumer handler, alert producer, start-up rebuild, hot reload.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use vigil_consumer::{
    ConsumerRuntime, HandleError, Handler, InboundRecord, Outcome, RunSummary, RuntimeError, Turn,
};
use vigil_schemas::model::Alert;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{AvroRecord, Codec, SchemaId, SchemaRegistry, VerifiedEvent, wire};
use vigil_topology::Telemetry;

use crate::config::{ConfigError, CorrelatorConfig};
use crate::engine::{Correlator, EngineStats};
use crate::rules::{RuleError, RulePack};

/// Why the correlator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum CorrelatorError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rule set could not be loaded at start.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// The schema registry refused or could not be reached at start-up.
    #[error("schema registry")]
    Registry(#[source] vigil_schemas::RegistryError),
    /// A codec could not be built (a bug).
    #[error("codec")]
    Codec(#[source] vigil_schemas::WireError),
    /// Metrics could not be registered.
    #[error("cannot register correlator metrics")]
    Metrics(#[source] prometheus::Error),
    /// A Kafka client could not be created or queried at start-up.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The consumer runtime stopped with an error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Prometheus instruments of the correlator (bounded labels only).
#[derive(Clone)]
struct CorrelatorMetrics {
    events: IntCounter,
    late: IntCounter,
    future_stamped: IntCounter,
    evictions: IntCounter,
    alerts: IntCounter,
    state_keys: IntGauge,
    reloads: IntCounterVec,
    rebuilt: IntCounter,
}

impl CorrelatorMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let state_keys = IntGauge::new(
            "vigil_correlator_state_keys",
            "live correlation state entries",
        )?;
        r.register(Box::new(state_keys.clone()))?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "vigil_correlator_rule_reloads_total",
                "rule reloads by result",
            ),
            &["result"],
        )?;
        r.register(Box::new(reloads.clone()))?;
        Ok(CorrelatorMetrics {
            events: counter("vigil_correlator_events_total", "events evaluated")?,
            late: counter(
                "vigil_correlator_late_events_total",
                "events dropped beyond the allowed lateness",
            )?,
            future_stamped: counter(
                "vigil_correlator_future_stamped_events_total",
                "events whose occurred_at was after their verified_at, evaluated at verified_at",
            )?,
            evictions: counter(
                "vigil_correlator_state_evictions_total",
                "state entries evicted by the bound",
            )?,
            alerts: counter("vigil_correlator_alerts_total", "alerts produced")?,
            state_keys,
            reloads,
            rebuilt: counter(
                "vigil_correlator_rebuild_events_total",
                "events replayed into windows at start",
            )?,
        })
    }

    fn observe(&self, before: EngineStats, after: EngineStats, keys: usize) {
        self.events
            .inc_by(after.events.saturating_sub(before.events));
        self.late.inc_by(after.late.saturating_sub(before.late));
        self.future_stamped
            .inc_by(after.future_stamped.saturating_sub(before.future_stamped));
        self.evictions
            .inc_by(after.evictions.saturating_sub(before.evictions));
        self.state_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}

/// How long queuing an alert may wait for room in the producer queue before it counts as a
/// transient failure.
const PRODUCER_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Consumes verified events and produces the alerts they complete.
struct CorrelatorHandler {
    engine: Arc<Mutex<Correlator>>,
    codec: Codec<VerifiedEvent>,
    alert_codec: Codec<Alert>,
    alert_schema: SchemaId,
    alerts_topic: String,
    producer: FutureProducer,
    /// Alerts computed for a record whose produce failed, keyed by (partition, offset): a retry
    /// sends these instead of feeding the event into the windows a second time.
    unsent: Mutex<HashMap<(String, i32, i64), Vec<Alert>>>,
    metrics: CorrelatorMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn decode(codec: &Codec<VerifiedEvent>, value: Option<&[u8]>) -> Result<VerifiedEvent, String> {
    let value = value.ok_or_else(|| "record has no value".to_owned())?;
    let (_, body) = wire::split_frame(value).map_err(|e| format!("framing: {e}"))?;
    codec
        .decode(body)
        .map_err(|e| format!("not a VerifiedEvent: {e}"))
}

impl Handler for CorrelatorHandler {
    async fn handle(&self, r: &InboundRecord) -> Result<Outcome, HandleError> {
        self.handle_in_turn(r, &mut Turn::solo()).await
    }

    /// Decodes concurrently with the partition's other records in flight; in the record's turn
    /// feeds the windows (event order matters) and queues its alerts; awaits their
    /// acknowledgements after the turn, so one record's produce round trip does not hold up the
    /// next record. The offset is still stored only after every alert of the record was acked.
    async fn handle_in_turn(
        &self,
        r: &InboundRecord,
        turn: &mut Turn,
    ) -> Result<Outcome, HandleError> {
        let key = (r.topic.clone(), r.partition, r.offset);
        let pending = lock(&self.unsent).remove(&key);
        let event = match pending {
            Some(_) => None,
            None => Some(decode(&self.codec, r.value.as_deref()).map_err(HandleError::bad_data)?),
        };
        turn.wait().await;
        let alerts = match (pending, event) {
            (Some(a), _) => a,
            (None, Some(event)) => {
                let mut engine = lock(&self.engine);
                let before = engine.stats();
                let alerts = engine.process(&event);
                self.metrics
                    .observe(before, engine.stats(), engine.state_keys());
                alerts
            }
            (None, None) => Vec::new(),
        };
        let mut queued = Vec::with_capacity(alerts.len());
        for (i, alert) in alerts.iter().enumerate() {
            match self.enqueue(alert).await {
                Ok(delivery) => queued.push(delivery),
                Err(e) => {
                    // Nothing after `i` was queued; what was queued is awaited below.
                    let mut unsent = alerts[i..].to_vec();
                    turn.pass().await;
                    unsent.extend(self.await_acks(&alerts[..i], queued).await);
                    lock(&self.unsent).insert(key, unsent);
                    return Err(HandleError::transient(e));
                }
            }
        }
        turn.pass().await;
        let failed = self.await_acks(&alerts, queued).await;
        if !failed.is_empty() {
            let n = failed.len();
            lock(&self.unsent).insert(key, failed);
            return Err(HandleError::transient(format!(
                "{n} alert(s) not acknowledged by the alerts topic"
            )));
        }
        Ok(Outcome::Handled)
    }
}

impl CorrelatorHandler {
    /// Encodes and queues one alert; returns its acknowledgement.
    async fn enqueue(&self, alert: &Alert) -> Result<DeliveryFuture, String> {
        let value = self
            .alert_codec
            .encode_framed(self.alert_schema, alert)
            .map_err(|e| format!("encoding alert: {e}"))?;
        let mut record = FutureRecord::to(&self.alerts_topic)
            .key(alert.fingerprint.as_bytes())
            .payload(&value);
        let deadline = Instant::now() + PRODUCER_QUEUE_WAIT;
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(format!("producing alert: {e}")),
            }
        }
    }

    /// Awaits the acknowledgements of `alerts` (queued in the same order); returns those that
    /// were not acknowledged.
    async fn await_acks(&self, alerts: &[Alert], queued: Vec<DeliveryFuture>) -> Vec<Alert> {
        let mut failed = Vec::new();
        for (alert, delivery) in alerts.iter().zip(queued) {
            match delivery.await {
                Ok(Ok(_)) => {
                    self.metrics.alerts.inc();
                    tracing::info!(
                        rule = alert.rule_id,
                        fingerprint = alert.fingerprint,
                        count = alert.count,
                        "alert raised"
                    );
                }
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, fingerprint = alert.fingerprint, "alert not acknowledged");
                    failed.push(alert.clone());
                }
                Err(_) => {
                    tracing::warn!(fingerprint = alert.fingerprint, "alert delivery cancelled");
                    failed.push(alert.clone());
                }
            }
        }
        failed
    }
}

/// Replays the verified topic from `max timespan + lateness` ago up to the group's committed
/// offsets into `engine`, discarding the alerts (they were emitted before the restart).
fn rebuild(config: &CorrelatorConfig, engine: &mut Correlator) -> Result<usize, CorrelatorError> {
    let kafka_err = |e: rdkafka::error::KafkaError| CorrelatorError::Kafka(e.to_string());
    let timeout = Duration::from_secs(10);
    // Same group id to read its committed offsets; never subscribes, so it joins no group.
    let mut committed_cfg = config.kafka.consumer(&config.group_id);
    committed_cfg.set("enable.auto.commit", "false");
    let probe: BaseConsumer = committed_cfg.create().map_err(kafka_err)?;
    let metadata = probe
        .fetch_metadata(Some(&config.verified_topic), timeout)
        .map_err(kafka_err)?;
    let mut partitions = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            partitions.add_partition(&config.verified_topic, p.id());
        }
    }
    if partitions.count() == 0 {
        return Ok(0);
    }
    let committed = probe
        .committed_offsets(partitions.clone(), timeout)
        .map_err(kafka_err)?;
    let span_us = engine
        .pack()
        .max_timespan_us
        .saturating_add(config.engine_settings().allowed_lateness_us);
    let since_ms = vigil_schemas::model::now_micros().saturating_sub(span_us) / 1_000;
    let mut by_time = TopicPartitionList::new();
    for e in partitions.elements() {
        by_time
            .add_partition_offset(e.topic(), e.partition(), Offset::Offset(since_ms))
            .map_err(kafka_err)?;
    }
    let starts = probe
        .offsets_for_times(by_time, timeout)
        .map_err(kafka_err)?;
    let mut assign = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for e in committed.elements() {
        let Offset::Offset(end) = e.offset() else {
            continue;
        };
        let start = starts
            .find_partition(e.topic(), e.partition())
            .and_then(|s| match s.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if let Some(start) = start
            && start < end
        {
            assign
                .add_partition_offset(e.topic(), e.partition(), Offset::Offset(start))
                .map_err(kafka_err)?;
            ends.insert(e.partition(), end);
        }
    }
    drop(probe);
    if ends.is_empty() {
        return Ok(0);
    }
    let mut reader_cfg = config
        .kafka
        .consumer(&format!("{}-rebuild", config.group_id));
    reader_cfg.set("enable.auto.commit", "false");
    let reader: BaseConsumer = reader_cfg.create().map_err(kafka_err)?;
    reader.assign(&assign).map_err(kafka_err)?;
    let codec = Codec::<VerifiedEvent>::new().map_err(CorrelatorError::Codec)?;
    let deadline = Instant::now() + Duration::from_millis(config.rebuild_timeout_ms);
    let mut events = Vec::new();
    while !ends.is_empty() && Instant::now() < deadline && events.len() < config.rebuild_max_events
    {
        let Some(m) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "rebuild read error");
                continue;
            }
        };
        let Some(&end) = ends.get(&m.partition()) else {
            continue;
        };
        if m.offset() < end
            && let Ok(ev) = decode(&codec, m.payload())
        {
            events.push(ev);
        }
        if m.offset() + 1 >= end {
            ends.remove(&m.partition());
        }
    }
    if !ends.is_empty() {
        tracing::warn!(
            partitions = ends.len(),
            "rebuild stopped before the committed offsets"
        );
    }
    // Event-time order, so the replay is deterministic and nothing is dropped as late.
    events.sort_by_key(crate::engine::event_time);
    for e in &events {
        let _discarded = engine.process(e);
    }
    Ok(events.len())
}

/// A cheap fingerprint of the rule directory: names, sizes and modification times.
fn dir_stamp(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                out.push((
                    e.file_name().to_string_lossy().into_owned(),
                    m.len(),
                    m.modified().ok(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn reload(dir: &Path, engine: &Mutex<Correlator>, metrics: &CorrelatorMetrics) {
    match RulePack::load_dir(dir) {
        Ok(pack) => {
            let rules = pack.rule_count();
            match lock(engine).reload(Arc::new(pack)) {
                Ok(()) => {
                    metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(rules, "rules reloaded");
                }
                Err(e) => {
                    metrics.reloads.with_label_values(&["refused"]).inc();
                    tracing::error!(error = %e, "rule set refused; the previous set keeps running");
                }
            }
        }
        Err(e) => {
            metrics.reloads.with_label_values(&["refused"]).inc();
            tracing::error!(file = %e.file.display(), line = e.line, reason = e.reason, "rule set refused; the previous set keeps running");
        }
    }
}

/// Reloads on SIGHUP and whenever the directory's files change.
async fn watch_rules(
    dir: std::path::PathBuf,
    poll_ms: u64,
    engine: Arc<Mutex<Correlator>>,
    metrics: CorrelatorMetrics,
) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut stamp = dir_stamp(&dir);
    let poll = Duration::from_millis(if poll_ms == 0 { 3_600_000 } else { poll_ms });
    loop {
        let by_signal = tokio::select! {
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => true,
            _ = tokio::time::sleep(poll) => false,
        };
        let now = dir_stamp(&dir);
        if by_signal || (poll_ms > 0 && now != stamp) {
            stamp = now;
            let (d, e, m) = (dir.clone(), Arc::clone(&engine), metrics.clone());
            // Parsing is CPU work; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || reload(&d, &e, &m)).await;
        }
    }
}

/// Runs the correlator until `shutdown` resolves.
pub async fn run(
    config: &CorrelatorConfig,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, CorrelatorError> {
    config.validate()?;
    let metrics =
        CorrelatorMetrics::register(&telemetry.registry).map_err(CorrelatorError::Metrics)?;
    let pack = Arc::new(RulePack::load_dir(&config.rules_dir)?);
    let rules = pack.rule_count();
    let mut engine = Correlator::new(pack, config.engine_settings())?;
    let schemas =
        SchemaRegistry::new(&config.schema_registry_url).map_err(CorrelatorError::Registry)?;
    let alert_schema = schemas
        .register(
            &value_subject(&config.alerts_topic),
            <Alert as AvroRecord>::SCHEMA_JSON,
        )
        .await
        .map_err(CorrelatorError::Registry)?;
    if config.rebuild_on_start {
        let cfg = config.clone();
        let (result, back) = tokio::task::spawn_blocking(move || {
            let r = rebuild(&cfg, &mut engine);
            (r, engine)
        })
        .await
        .map_err(|e| CorrelatorError::Kafka(format!("rebuild task: {e}")))?;
        engine = back;
        let replayed = result?;
        metrics.rebuilt.inc_by(replayed as u64);
        tracing::info!(
            replayed,
            state_keys = engine.state_keys(),
            "windows rebuilt from the verified topic"
        );
    }
    let mut producer_config = config.kafka.producer();
    producer_config.set("message.timeout.ms", "30000");
    // Alerts are few and each one's linger is added to the time to the pager; a burst still
    // batches behind the requests in flight (measured: scripts/bench-e2e-latency).
    producer_config.set("linger.ms", config.alerts_linger_ms.to_string());
    let producer: FutureProducer = producer_config
        .create()
        .map_err(|e| CorrelatorError::Kafka(e.to_string()))?;
    let engine = Arc::new(Mutex::new(engine));
    let watcher = tokio::spawn(watch_rules(
        config.rules_dir.clone(),
        config.reload_poll_ms,
        Arc::clone(&engine),
        metrics.clone(),
    ));
    let handler = Arc::new(CorrelatorHandler {
        engine,
        codec: Codec::new().map_err(CorrelatorError::Codec)?,
        alert_codec: Codec::new().map_err(CorrelatorError::Codec)?,
        alert_schema,
        alerts_topic: config.alerts_topic.clone(),
        producer,
        unsent: Mutex::new(HashMap::new()),
        metrics,
    });
    tracing::info!(
        rules,
        verified_topic = config.verified_topic,
        alerts_topic = config.alerts_topic,
        "correlator starting"
    );
    let runtime = ConsumerRuntime::new(config.runtime_config(), &config.kafka, telemetry)?;
    let result = runtime.run(handler, shutdown).await;
    watcher.abort();
    Ok(result?)
}
