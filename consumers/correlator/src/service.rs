//! The correlator service: consumer handler, alert producer, start-up rebuild, hot reload.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use vigil_consumer::{
    ConsumerRuntime, HandleError, Handler, InboundRecord, Outcome, RunSummary, RuntimeError, Turn,
};
use vigil_schemas::model::Alert;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    AvroRecord, Codec, ErrorChain, SchemaId, SchemaRegistry, VerifiedEvent, error_chain, wire,
};
use vigil_topology::{InternalEvent, Telemetry};

use crate::config::{ConfigError, CorrelatorConfig};
use crate::engine::Correlator;
use crate::internal_events::{
    AlertNotAcknowledged, AlertRaised, CorrelatorMetrics, EventEvaluated, PartitionsRebuilt,
    RebuildFailed, RebuildFailure, RebuildIncomplete, RebuildReadFailed, RebuildSkipped,
    RebuildSuperseded, RulesRefusal, RulesRefused, RulesReloaded, WindowsRebuiltAtStart,
};
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

/// How long queuing an alert may wait for room in the producer queue before it counts as a
/// transient failure.
const PRODUCER_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Longest a rebuild may take beyond `rebuild_timeout_ms` (its metadata, committed-offset and
/// offset-for-time queries, 10 s each at most) before the records waiting for it go on with the
/// previous windows.
const REBUILD_QUERY_SLACK: Duration = Duration::from_secs(35);

/// Which verified partitions this instance holds and what its engine was fed from them, so a
/// newly assigned partition's windows are rebuilt before its first record is evaluated.
struct Takeover {
    /// Rebuilds on assignment at all (`rebuild_on_start`).
    enabled: bool,
    /// Verified partitions held now.
    held: Mutex<BTreeSet<i32>>,
    /// Per verified partition, the offset after the last record the live engine was fed (the
    /// start-up or last rebuild's committed offset, then each evaluated record).
    fed: Mutex<HashMap<i32, i64>>,
    /// Rebuilds scheduled and not finished; records wait for 0 before feeding the engine.
    pending: tokio::sync::watch::Sender<usize>,
    /// Number of the newest scheduled rebuild: only it may swap its engine in.
    generation: AtomicU64,
}

impl Takeover {
    /// Waits (without holding a thread) until no rebuild is pending.
    async fn settled(&self) {
        if *self.pending.borrow() == 0 {
            return;
        }
        let mut rx = self.pending.subscribe();
        // The sender lives as long as `self`, so this only ends at 0.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Consumes verified events and produces the alerts they complete.
struct CorrelatorHandler {
    engine: Arc<Mutex<Correlator>>,
    config: Arc<CorrelatorConfig>,
    takeover: Arc<Takeover>,
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
    let (_, body) = wire::split_frame(value).map_err(|e| format!("framing: {}", ErrorChain(&e)))?;
    codec
        .decode(body)
        .map_err(|e| format!("not a VerifiedEvent: {}", ErrorChain(&e)))
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
                // A partition just taken over is evaluated only once its windows are rebuilt.
                self.takeover.settled().await;
                let mut engine = lock(&self.engine);
                let before = engine.stats();
                let alerts = engine.process(&event);
                EventEvaluated {
                    metrics: &self.metrics,
                    before,
                    after: engine.stats(),
                    state_keys: engine.state_keys(),
                }
                .emit();
                if r.topic == self.config.verified_topic {
                    let mut fed = lock(&self.takeover.fed);
                    let at = fed.entry(r.partition).or_insert(0);
                    *at = (*at).max(r.offset.saturating_add(1));
                }
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

    /// Schedules a rebuild of the windows when a verified partition this instance did not hold
    /// arrives: its previous owner fed windows this engine never saw. Retry topics are ignored.
    fn partitions_assigned(&self, topic_partitions: &[(String, i32)]) {
        let t = &self.takeover;
        let held = {
            let mut held = lock(&t.held);
            let mut added = false;
            for (topic, p) in topic_partitions {
                if *topic == self.config.verified_topic {
                    added |= held.insert(*p);
                }
            }
            if !added || !t.enabled {
                return;
            }
            held.clone()
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            RebuildFailed {
                metrics: &self.metrics,
                partitions: &[],
                failure: RebuildFailure::NoRuntime,
            }
            .emit();
            return;
        };
        let generation = t.generation.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        // Raised before the first record of the assignment is dispatched (the runtime calls
        // this first), so that record waits for the rebuild.
        t.pending.send_modify(|n| *n = n.saturating_add(1));
        // Owned by the task from here, so however it ends (even dropped unpolled) the count
        // comes down and records never wait on a rebuild that is gone.
        let done = PendingGuard(Arc::clone(&self.takeover));
        runtime.spawn(catch_up(
            Arc::clone(&self.config),
            Arc::clone(&self.engine),
            Arc::clone(&self.takeover),
            self.metrics.clone(),
            held,
            generation,
            done,
        ));
    }

    /// Forgets the revoked verified partitions: taken back later, they are rebuilt again (their
    /// windows moved on at the other owner) unless nothing was committed in between.
    fn partitions_revoked(&self, topic_partitions: &[(String, i32)]) {
        let mut held = lock(&self.takeover.held);
        for (topic, p) in topic_partitions {
            if *topic == self.config.verified_topic {
                held.remove(p);
            }
        }
    }
}

/// Rebuilds fresh windows for the partitions `held` (the whole assignment: the engine is shared
/// across partitions) up to their committed offsets and swaps them in, keeping the live rule
/// pack; skipped when the committed offsets are what the live engine was already fed (the
/// first assignment after the start-up rebuild). A failure or timeout keeps the live engine.
async fn catch_up(
    config: Arc<CorrelatorConfig>,
    engine: Arc<Mutex<Correlator>>,
    takeover: Arc<Takeover>,
    metrics: CorrelatorMetrics,
    held: BTreeSet<i32>,
    generation: u64,
    done: PendingGuard,
) {
    let fed = lock(&takeover.fed).clone();
    let pack = Arc::clone(lock(&engine).pack());
    let cfg = Arc::clone(&config);
    let partitions: Vec<i32> = held.iter().copied().collect();
    let started = Instant::now();
    let work = tokio::task::spawn_blocking(move || {
        let mut fresh = Correlator::new(pack, cfg.engine_settings())?;
        let rebuilt = rebuild(&cfg, &mut fresh, Some(&held), Some(&fed))?;
        Ok::<_, CorrelatorError>(rebuilt.map(|r| (fresh, r)))
    });
    let bound =
        Duration::from_millis(config.rebuild_timeout_ms).saturating_add(REBUILD_QUERY_SLACK);
    let outcome = match tokio::time::timeout(bound, work).await {
        Err(_) => Err(format!("rebuild took longer than {} ms", bound.as_millis())),
        Ok(Err(e)) => Err(format!("rebuild task: {e}")),
        Ok(Ok(Err(e))) => Err(error_chain(&e)),
        Ok(Ok(Ok(r))) => Ok(r),
    };
    let metrics = &metrics;
    let partitions = &partitions;
    match outcome {
        Ok(None) => RebuildSkipped {
            metrics,
            partitions,
        }
        .emit(),
        Ok(Some(_)) if takeover.generation.load(Ordering::SeqCst) != generation => {
            RebuildSuperseded { metrics }.emit()
        }
        Ok(Some((mut fresh, rebuilt))) => {
            let mut live = lock(&engine);
            // A hot reload during the rebuild wins: the fresh windows take the live pack.
            let repacked = if Arc::ptr_eq(live.pack(), fresh.pack()) {
                Ok(())
            } else {
                fresh.reload(Arc::clone(live.pack()))
            };
            match repacked {
                Ok(()) => {
                    *live = fresh;
                    *lock(&takeover.fed) = rebuilt.positions;
                    PartitionsRebuilt {
                        metrics,
                        partitions,
                        replayed: rebuilt.events,
                        state_keys: live.state_keys(),
                        elapsed: started.elapsed(),
                    }
                    .emit();
                }
                Err(e) => RebuildFailed {
                    metrics,
                    partitions,
                    failure: RebuildFailure::PackRefused(&e),
                }
                .emit(),
            }
        }
        Err(e) => RebuildFailed {
            metrics,
            partitions,
            failure: RebuildFailure::Replay(&e),
        }
        .emit(),
    }
    drop(done);
}

/// One scheduled rebuild's share of [`Takeover::pending`], released on drop.
struct PendingGuard(Arc<Takeover>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl CorrelatorHandler {
    /// Encodes and queues one alert; returns its acknowledgement.
    async fn enqueue(&self, alert: &Alert) -> Result<DeliveryFuture, String> {
        let value = self
            .alert_codec
            .encode_framed(self.alert_schema, alert)
            .map_err(|e| format!("encoding alert: {}", ErrorChain(&e)))?;
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
                Ok(Ok(_)) => AlertRaised {
                    metrics: &self.metrics,
                    rule: &alert.rule_id,
                    fingerprint: &alert.fingerprint,
                    count: alert.count,
                }
                .emit(),
                Ok(Err((e, _))) => {
                    AlertNotAcknowledged {
                        fingerprint: &alert.fingerprint,
                        error: Some(&e),
                    }
                    .emit();
                    failed.push(alert.clone());
                }
                Err(_) => {
                    AlertNotAcknowledged {
                        fingerprint: &alert.fingerprint,
                        error: None,
                    }
                    .emit();
                    failed.push(alert.clone());
                }
            }
        }
        failed
    }
}

/// What a replay of the verified topic fed into an engine.
struct Rebuilt {
    /// Events replayed.
    events: usize,
    /// The committed offset the replay ran up to, per partition that had one.
    positions: HashMap<i32, i64>,
}

/// Replays the verified topic from `max timespan + lateness` ago up to the group's committed
/// offsets into `engine`, discarding the alerts (they were emitted before the restart or by the
/// partitions' previous owner). `only` limits the replay to those partitions (the assignment);
/// when the committed offsets equal `unless_at` (what the live engine was fed up to) there is
/// nothing to catch up and `None` is returned without reading.
fn rebuild(
    config: &CorrelatorConfig,
    engine: &mut Correlator,
    only: Option<&BTreeSet<i32>>,
    unless_at: Option<&HashMap<i32, i64>>,
) -> Result<Option<Rebuilt>, CorrelatorError> {
    let kafka_err = |e: rdkafka::error::KafkaError| CorrelatorError::Kafka(e.to_string());
    let timeout = Duration::from_secs(10);
    // Same group id to read its committed offsets; never subscribes, so it joins no group.
    let mut committed_cfg = config.consumer.kafka.consumer(&config.consumer.group_id);
    committed_cfg.set("enable.auto.commit", "false");
    let probe: BaseConsumer = committed_cfg.create().map_err(kafka_err)?;
    let metadata = probe
        .fetch_metadata(Some(&config.verified_topic), timeout)
        .map_err(kafka_err)?;
    let mut partitions = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            if only.is_none_or(|o| o.contains(&p.id())) {
                partitions.add_partition(&config.verified_topic, p.id());
            }
        }
    }
    if partitions.count() == 0 {
        return Ok(Some(Rebuilt {
            events: 0,
            positions: HashMap::new(),
        }));
    }
    let committed = probe
        .committed_offsets(partitions.clone(), timeout)
        .map_err(kafka_err)?;
    let positions: HashMap<i32, i64> = committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    if let Some(fed) = unless_at
        && positions.iter().all(|(p, o)| fed.get(p) == Some(o))
    {
        return Ok(None);
    }
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
        return Ok(Some(Rebuilt {
            events: 0,
            positions,
        }));
    }
    let mut reader_cfg = config
        .consumer
        .kafka
        .consumer(&format!("{}-rebuild", config.consumer.group_id));
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
                RebuildReadFailed { error: &e }.emit();
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
        RebuildIncomplete {
            partitions: ends.len(),
        }
        .emit();
    }
    // Event-time order, so the replay is deterministic and nothing is dropped as late.
    events.sort_by_key(crate::engine::event_time);
    for e in &events {
        let _discarded = engine.process(e);
    }
    Ok(Some(Rebuilt {
        events: events.len(),
        positions,
    }))
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
                Ok(()) => RulesReloaded { metrics, rules }.emit(),
                Err(e) => RulesRefused {
                    metrics,
                    refusal: RulesRefusal::Engine(&e),
                }
                .emit(),
            }
        }
        Err(e) => RulesRefused {
            metrics,
            refusal: RulesRefusal::File(&e),
        }
        .emit(),
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
    let schemas = SchemaRegistry::new(&config.consumer.schema_registry_url)
        .map_err(CorrelatorError::Registry)?;
    let alert_schema = schemas
        .register(
            &value_subject(&config.alerts_topic),
            <Alert as AvroRecord>::SCHEMA_JSON,
        )
        .await
        .map_err(CorrelatorError::Registry)?;
    let mut fed = HashMap::new();
    if config.rebuild_on_start {
        let cfg = config.clone();
        let (result, back) = tokio::task::spawn_blocking(move || {
            let r = rebuild(&cfg, &mut engine, None, None);
            (r, engine)
        })
        .await
        .map_err(|e| CorrelatorError::Kafka(format!("rebuild task: {e}")))?;
        engine = back;
        // Every partition is replayed here (the assignment is not known yet); its committed
        // offsets let the first assignment skip a second rebuild unless they moved since.
        let Rebuilt { events, positions } = result?.unwrap_or(Rebuilt {
            events: 0,
            positions: HashMap::new(),
        });
        fed = positions;
        WindowsRebuiltAtStart {
            metrics: &metrics,
            replayed: events,
            state_keys: engine.state_keys(),
        }
        .emit();
    }
    let mut producer_config = config.consumer.kafka.producer();
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
    let (pending, _) = tokio::sync::watch::channel(0);
    let handler = Arc::new(CorrelatorHandler {
        engine,
        config: Arc::new(config.clone()),
        takeover: Arc::new(Takeover {
            enabled: config.rebuild_on_start,
            held: Mutex::new(BTreeSet::new()),
            fed: Mutex::new(fed),
            pending,
            generation: AtomicU64::new(0),
        }),
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
    let runtime = ConsumerRuntime::new(config.runtime_config(), &config.consumer.kafka, telemetry)?;
    let result = runtime.run(handler, shutdown).await;
    watcher.abort();
    Ok(result?)
}
