//! The consumer loop: reads records, hands each partition's records to that partition's worker,
//! pauses partitions whose worker is behind, and stops cleanly.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vigil_topology::{Health, InternalEvent, KafkaClientConfig, Telemetry};

use crate::config::RuntimeConfig;
use crate::context::{AssignmentChange, PartitionId, RuntimeContext};
use crate::handler::Handler;
use crate::internal_events::{
    ConsumeFailed, Instruments, OffsetCommitFailed, PartitionFlowChanged,
};
use crate::metrics::ConsumerMetrics;
use crate::outcome::{RunSummary, RuntimeError};
use crate::worker::{Consumed, Counts, InFlight, Shared, run_worker};

/// How often the loop retries handing queued records to a worker that was full.
const PENDING_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// How long the loop waits for room in a full worker queue before pausing the partition.
/// Pausing is the exception: librdkafka drops the partition's prefetched records and, on resume,
/// fetches them again behind any long-poll fetch in flight (up to `fetch.wait.max.ms`), which
/// would starve a fast worker. A short wait keeps a busy partition flowing (the other workers
/// have their own queues meanwhile); only a worker stalled longer than this (a slow dependency,
/// a retry delay) gets its partition paused.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(100);

/// The consumer runtime of one service's consumer group.
pub struct ConsumerRuntime {
    config: RuntimeConfig,
    kafka: KafkaClientConfig,
    metrics: ConsumerMetrics,
    health: Arc<Health>,
}

/// One partition's worker as seen from the loop.
struct Slot {
    records: mpsc::Sender<Consumed>,
    /// Records read while the worker was full, in offset order; the partition is paused
    /// meanwhile, so this holds at most what librdkafka had already prefetched.
    pending: VecDeque<Consumed>,
    paused: bool,
    revoked: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl ConsumerRuntime {
    /// Validates both configurations and registers the runtime's metrics in the telemetry
    /// registry. Use [`ConsumerRuntime::with_metrics`] to run several runtimes on one registry.
    pub fn new(
        config: RuntimeConfig,
        kafka: &KafkaClientConfig,
        telemetry: &Telemetry,
    ) -> Result<Self, RuntimeError> {
        config.validate()?;
        let metrics =
            ConsumerMetrics::register(&telemetry.registry).map_err(RuntimeError::Metrics)?;
        Self::with_metrics(config, kafka, metrics, telemetry.health.clone())
    }

    /// Like [`ConsumerRuntime::new`], with metrics registered beforehand.
    pub fn with_metrics(
        config: RuntimeConfig,
        kafka: &KafkaClientConfig,
        metrics: ConsumerMetrics,
        health: Arc<Health>,
    ) -> Result<Self, RuntimeError> {
        config.validate()?;
        kafka.validate()?;
        Ok(Self {
            config,
            kafka: kafka.clone(),
            metrics,
            health,
        })
    }

    /// Returns the configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Consumes until `shutdown` resolves or a record fails with an internal error, then stops
    /// fetching, lets workers finish the records they hold (up to `shutdown_timeout_ms`), and
    /// commits the stored offsets synchronously.
    ///
    /// Delivery is at-least-once: an offset is stored only after its record was handled,
    /// rejected, skipped, or written to the DLQ or a retry topic with the broker's
    /// acknowledgement, and offsets are stored in order per partition.
    pub async fn run<H: Handler>(
        &self,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunSummary, RuntimeError> {
        let config = &self.config;
        let ins = Instruments {
            metrics: self.metrics.clone(),
            service: config.service.clone(),
        };
        let topics = config.subscribed_topics();
        let context = RuntimeContext::new(
            ins.clone(),
            self.health.clone(),
            topics.iter().map(|t| (*t).to_owned()).collect(),
        );
        let mut client = self.kafka.consumer(&config.group_id);
        client
            .set("enable.partition.eof", "false")
            .set(
                "auto.commit.interval.ms",
                config.commit_interval_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                config.statistics_interval_ms.to_string(),
            );
        let consumer =
            StreamConsumer::from_config_and_context(&client, context).map_err(|source| {
                RuntimeError::Kafka {
                    what: "create consumer",
                    source,
                }
            })?;
        consumer
            .subscribe(&topics)
            .map_err(|source| RuntimeError::Kafka {
                what: "subscribe",
                source,
            })?;
        let consumer = Arc::new(consumer);

        let mut producer_config = self.kafka.producer();
        // librdkafka's 5-minute default would hide a broken DLQ for that long; each failed
        // write is retried by the worker anyway.
        if !self.kafka.librdkafka.contains_key("message.timeout.ms")
            && !self.kafka.librdkafka.contains_key("delivery.timeout.ms")
        {
            producer_config.set("message.timeout.ms", "30000");
        }
        let producer: FutureProducer =
            producer_config
                .create()
                .map_err(|source| RuntimeError::Kafka {
                    what: "create producer",
                    source,
                })?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            config: config.clone(),
            handler,
            consumer: consumer.clone(),
            producer,
            ins: ins.clone(),
            counts: counts.clone(),
            stop: stop_rx,
            fatal: fatal_tx,
        });
        let in_flight_gauge = ins.metrics.in_flight.with_label_values(&[&ins.service]);
        tracing::info!(
            group_id = config.group_id,
            topics = ?topics,
            "consumer started"
        );

        let mut slots: HashMap<PartitionId, Slot> = HashMap::new();
        // Workers of revoked partitions that may still be finishing a record; a later worker of
        // the same partition waits for its predecessor.
        let mut retired: HashMap<PartitionId, JoinHandle<()>> = HashMap::new();
        let mut failure: Option<RuntimeError> = None;
        // Partitions the handler was told it holds; told again (revoked) when the run ends.
        let mut assigned: BTreeSet<PartitionId> = BTreeSet::new();
        let mut pending_tick = tokio::time::interval(PENDING_RETRY_INTERVAL);
        pending_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        loop {
            let any_pending = slots.values().any(|s| !s.pending.is_empty());
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested; draining");
                    break;
                }
                Some(e) = fatal_rx.recv() => {
                    failure = Some(e);
                    break;
                }
                _ = consumer.context().changes_queued() => {
                    retire_revoked(&ins, &mut slots, &mut retired);
                    pass_changes(consumer.context(), shared.handler.as_ref(), &mut assigned);
                }
                _ = pending_tick.tick(), if any_pending => {
                    retire_revoked(&ins, &mut slots, &mut retired);
                    for (id, slot) in &mut slots {
                        flush_pending(&consumer, &ins, id, slot, Duration::ZERO).await;
                    }
                }
                received = consumer.recv() => {
                    // A rebalance runs inside recv: retire revoked workers before dispatching,
                    // so a record of a new assignment never goes to a revoked worker.
                    retire_revoked(&ins, &mut slots, &mut retired);
                    // The handler learns of a new assignment before its first record.
                    pass_changes(consumer.context(), shared.handler.as_ref(), &mut assigned);
                    match received {
                        Ok(m) => {
                            let record = Consumed::from_message(
                                &m,
                                InFlight::new(in_flight_gauge.clone(), counts.clone()),
                            );
                            let id = (record.topic.clone(), record.partition);
                            let slot = match slots.entry(id.clone()) {
                                Entry::Occupied(o) => o.into_mut(),
                                Entry::Vacant(v) => {
                                    let revoked = consumer.context().register_worker(id.clone());
                                    let (tx, rx) = mpsc::channel(config.max_in_flight_per_partition);
                                    let previous = retired.remove(&id);
                                    let task = tokio::spawn(run_worker(
                                        shared.clone(),
                                        rx,
                                        revoked.clone(),
                                        previous,
                                    ));
                                    v.insert(Slot {
                                        records: tx,
                                        pending: VecDeque::new(),
                                        paused: false,
                                        revoked,
                                        task,
                                    })
                                }
                            };
                            slot.pending.push_back(record);
                            let worker_gone =
                                flush_pending(&consumer, &ins, &id, slot, BACKPRESSURE_WAIT).await;
                            if worker_gone && !*slot.revoked.borrow() {
                                // A worker only ends early with a fatal error it has reported;
                                // anything else would silently stall the partition.
                                failure = Some(fatal_rx.try_recv().unwrap_or(RuntimeError::WorkerStopped {
                                    topic: id.0.clone(),
                                    partition: id.1,
                                }));
                                break;
                            }
                        }
                        Err(e) => ConsumeFailed { error: &e.to_string() }.emit(),
                    }
                }
            }
        }

        // Stop fetching and let each worker finish what its channel holds; waits are abandoned.
        let _ = stop_tx.send(true);
        let mut tasks: Vec<JoinHandle<()>> = retired.into_values().collect();
        for (id, slot) in slots.drain() {
            // Dropping the sender closes the channel; pending records are released unhandled.
            release(&ins, &id, &slot);
            tasks.push(slot.task);
        }
        let timeout = Duration::from_millis(config.shutdown_timeout_ms);
        let abort_handles: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(timeout, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = config.shutdown_timeout_ms,
                "workers did not finish in time; their unfinished records will be read again"
            );
            for h in abort_handles {
                h.abort();
            }
        }
        if failure.is_none() {
            failure = fatal_rx.try_recv().ok();
        }

        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => OffsetCommitFailed {
                ins: &ins,
                error: &e.to_string(),
            }
            .emit(),
        }
        consumer.context().revoke_all();
        pass_changes(consumer.context(), shared.handler.as_ref(), &mut assigned);
        if !assigned.is_empty() {
            let held: Vec<PartitionId> = std::mem::take(&mut assigned).into_iter().collect();
            shared.handler.partitions_revoked(&held);
        }
        self.health.set_ready(false);
        let summary = counts.summary();

        // Closing the consumer (leave group, final commit) and flushing the producer block.
        let producer = shared.producer.clone();
        drop(shared);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = producer.flush(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "producer flush on shutdown");
            }
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;

        match failure {
            Some(e) => {
                tracing::error!(error = %e, "consumer stopped on error");
                Err(e)
            }
            None => {
                tracing::info!(?summary, "consumer stopped");
                Ok(summary)
            }
        }
    }
}

/// Passes the assignment changes queued by the rebalance callbacks to the handler, in order,
/// and keeps `assigned` (what the handler was told it holds) up to date.
fn pass_changes<H: Handler>(
    context: &RuntimeContext,
    handler: &H,
    assigned: &mut BTreeSet<PartitionId>,
) {
    for change in context.take_changes() {
        match change {
            AssignmentChange::Revoked(partitions) => {
                // Only what the handler was told it holds: a revoke of nothing is not passed.
                let held: Vec<PartitionId> = partitions
                    .into_iter()
                    .filter(|p| assigned.remove(p))
                    .collect();
                if !held.is_empty() {
                    handler.partitions_revoked(&held);
                }
            }
            AssignmentChange::Assigned(partitions) => {
                let new: Vec<PartitionId> = partitions
                    .into_iter()
                    .filter(|p| assigned.insert(p.clone()))
                    .collect();
                if !new.is_empty() {
                    handler.partitions_assigned(&new);
                }
            }
        }
    }
}

/// Moves the workers of revoked partitions out of the dispatch table.
fn retire_revoked(
    ins: &Instruments,
    slots: &mut HashMap<PartitionId, Slot>,
    retired: &mut HashMap<PartitionId, JoinHandle<()>>,
) {
    retired.retain(|_, task| !task.is_finished());
    let revoked: Vec<PartitionId> = slots
        .iter()
        .filter(|(_, s)| *s.revoked.borrow())
        .map(|(id, _)| id.clone())
        .collect();
    for id in revoked {
        if let Some(slot) = slots.remove(&id) {
            release(ins, &id, &slot);
            retired.insert(id, slot.task);
        }
    }
}

/// Hands queued records to the worker in order; pauses the partition while the worker is full
/// Accounts for a slot leaving the dispatch table while its partition is paused.
fn release(ins: &Instruments, id: &PartitionId, slot: &Slot) {
    if slot.paused {
        PartitionFlowChanged {
            ins,
            topic: &id.0,
            partition: id.1,
            paused: false,
        }
        .emit();
    }
}

/// Hands queued records to the worker in order; pauses the partition while the worker is full
/// (so the loop keeps polling and the consumer stays in its group) and resumes it once drained.
/// Waits up to `wait` for room when the queue is full and the partition is not paused yet.
/// Returns true if the worker is gone.
async fn flush_pending(
    consumer: &StreamConsumer<RuntimeContext>,
    ins: &Instruments,
    id: &PartitionId,
    slot: &mut Slot,
    wait: Duration,
) -> bool {
    let mut gone = false;
    while let Some(record) = slot.pending.pop_front() {
        match slot.records.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(record)) => {
                if slot.paused || wait.is_zero() {
                    slot.pending.push_front(record);
                    break;
                }
                match tokio::time::timeout(wait, slot.records.reserve()).await {
                    Ok(Ok(permit)) => permit.send(record),
                    Ok(Err(_)) => {
                        slot.pending.clear();
                        gone = true;
                        break;
                    }
                    Err(_) => {
                        slot.pending.push_front(record);
                        break;
                    }
                }
            }
            // The worker stopped (revoked, or the run is ending): the records stay unstored.
            Err(TrySendError::Closed(_)) => {
                slot.pending.clear();
                gone = true;
                break;
            }
        }
    }
    let want_paused = !slot.pending.is_empty();
    if want_paused != slot.paused {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&id.0, id.1);
        let result = if want_paused {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        match result {
            Ok(()) => {
                slot.paused = want_paused;
                PartitionFlowChanged {
                    ins,
                    topic: &id.0,
                    partition: id.1,
                    paused: want_paused,
                }
                .emit();
            }
            Err(e) => tracing::debug!(topic = id.0, partition = id.1, error = %e, "pause/resume"),
        }
    }
    gone
}
