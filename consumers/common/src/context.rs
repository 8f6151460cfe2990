//! The librdkafka callbacks of the runtime's consumer: rebalances, commits, statistics, logs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::sync::{Notify, watch};
use vigil_topology::{Health, InternalEvent};

use crate::internal_events::{ConsumerLagObserved, Instruments, OffsetCommitFailed, Rebalanced};

/// One assigned partition.
pub(crate) type PartitionId = (String, i32);

/// An assignment change seen by the rebalance callbacks, for the dispatcher to pass to the
/// handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AssignmentChange {
    /// Partitions given to this consumer.
    Assigned(Vec<PartitionId>),
    /// Partitions taken from this consumer.
    Revoked(Vec<PartitionId>),
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<PartitionId> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Consumer context shared by the librdkafka callbacks and the dispatcher.
pub(crate) struct RuntimeContext {
    pub ins: Instruments,
    pub health: Arc<Health>,
    /// Topics whose lag is reported (the subscription; a bounded label set).
    pub lag_topics: Vec<String>,
    /// Revocation switch of each live partition worker. The rebalance callback flips it before
    /// the partition is handed to another consumer, so the worker stores no further offsets.
    revocations: Mutex<HashMap<PartitionId, watch::Sender<bool>>>,
    /// Assignment changes in rebalance order, not yet passed to the handler: the callbacks run
    /// inside librdkafka's poll and must not call into the service.
    changes: Mutex<VecDeque<AssignmentChange>>,
    /// Wakes the dispatcher when a change was queued (a rebalance need not bring a record).
    changed: Notify,
}

impl RuntimeContext {
    pub fn new(ins: Instruments, health: Arc<Health>, lag_topics: Vec<String>) -> Self {
        Self {
            ins,
            health,
            lag_topics,
            revocations: Mutex::new(HashMap::new()),
            changes: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
        }
    }

    fn push_change(&self, change: AssignmentChange) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(change);
        self.changed.notify_one();
    }

    /// Takes the queued assignment changes, oldest first.
    pub fn take_changes(&self) -> Vec<AssignmentChange> {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect()
    }

    /// Resolves once an assignment change was queued since the last wait.
    pub async fn changes_queued(&self) {
        self.changed.notified().await;
    }

    /// Registers a new worker for `partition` and returns the receiver of its revocation switch.
    pub fn register_worker(&self, partition: PartitionId) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut map = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = map.insert(partition, tx) {
            // A stale worker of the same partition must not keep storing offsets.
            previous.send_replace(true);
        }
        rx
    }

    fn revoke(&self, tpl: &TopicPartitionList) {
        let mut map = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for e in tpl.elements() {
            if let Some(tx) = map.remove(&(e.topic().to_owned(), e.partition())) {
                tx.send_replace(true);
            }
        }
    }

    /// Flips every switch: used when the consumer is closing.
    pub fn revoke_all(&self) {
        let mut map = self
            .revocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, tx) in map.drain() {
            tx.send_replace(true);
        }
    }
}

impl ClientContext for RuntimeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, reason, "kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        for topic in &self.lag_topics {
            let Some(t) = statistics.topics.get(topic) else {
                continue;
            };
            // Only partitions assigned to this consumer (`desired`); the stored offset is the
            // freshest position, the committed one stands in until something is stored.
            let lag: i64 = t
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired)
                .filter_map(|p| {
                    if p.consumer_lag_stored >= 0 {
                        Some(p.consumer_lag_stored)
                    } else if p.consumer_lag >= 0 {
                        Some(p.consumer_lag)
                    } else {
                        None
                    }
                })
                .sum();
            ConsumerLagObserved {
                ins: &self.ins,
                topic,
                lag,
            }
            .emit();
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                self.revoke(tpl);
                self.push_change(AssignmentChange::Revoked(partitions_of(tpl)));
                // Flush what is stored before another consumer takes over, so it starts exactly
                // after the last record handled here. Failures are counted by commit_callback.
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(error = %e, "commit on revoke");
                }
                Rebalanced {
                    ins: &self.ins,
                    kind: "revoke",
                    partitions: tpl.count(),
                    detail: "revoked",
                }
                .emit();
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => Rebalanced {
                ins: &self.ins,
                kind: "error",
                partitions: 0,
                detail: &e.to_string(),
            }
            .emit(),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.push_change(AssignmentChange::Assigned(partitions_of(tpl)));
            // A partition paused under a previous assignment must fetch again under this one.
            if tpl.count() > 0
                && let Err(e) = consumer.resume(tpl)
            {
                tracing::debug!(error = %e, "resume on assign");
            }
            self.health.set_ready(true);
            Rebalanced {
                ins: &self.ins,
                kind: "assign",
                partitions: tpl.count(),
                detail: "assigned",
            }
            .emit();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!("offsets committed"),
            // Nothing new was stored since the last commit: not an error.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => OffsetCommitFailed {
                ins: &self.ins,
                error: &e.to_string(),
            }
            .emit(),
        }
    }
}
