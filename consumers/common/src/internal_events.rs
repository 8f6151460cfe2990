//! Everything the runtime reports: one struct per thing that happens, whose `emit()` writes the
//! log line and updates the metric together.

use std::time::Duration;

use vigil_topology::InternalEvent;

use crate::handler::ErrorClass;
use crate::metrics::ConsumerMetrics;

/// The metrics of one runtime and the `service` label they are recorded under.
#[derive(Clone)]
pub(crate) struct Instruments {
    pub metrics: ConsumerMetrics,
    pub service: String,
}

/// Where a record sits, for log lines (never for labels).
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// A handler call returned, successfully or not.
pub(crate) struct HandlerCalled<'a> {
    pub ins: &'a Instruments,
    pub elapsed: Duration,
}

impl InternalEvent for HandlerCalled<'_> {
    fn emit(self) {
        self.ins
            .metrics
            .handle_duration
            .with_label_values(&[&self.ins.service])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A record was handled, or handled and rejected as a security event.
pub(crate) struct RecordHandled<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub rejected: bool,
    pub attempt: u32,
}

impl InternalEvent for RecordHandled<'_> {
    fn emit(self) {
        let outcome = if self.rejected { "rejected" } else { "handled" };
        tracing::debug!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            attempt = self.attempt,
            outcome,
            "record handled"
        );
        self.ins
            .metrics
            .records
            .with_label_values(&[&self.ins.service, self.at.topic, outcome])
            .inc();
    }
}

/// A handler call failed.
pub(crate) struct HandlerFailed<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub class: ErrorClass,
    pub message: &'a str,
    pub attempt: u32,
}

impl InternalEvent for HandlerFailed<'_> {
    fn emit(self) {
        match self.class {
            ErrorClass::Internal => tracing::error!(
                topic = self.at.topic,
                partition = self.at.partition,
                offset = self.at.offset,
                attempt = self.attempt,
                error_class = self.class.as_str(),
                error = self.message,
                "handler failed with an internal error; stopping without storing the offset"
            ),
            _ => tracing::warn!(
                topic = self.at.topic,
                partition = self.at.partition,
                offset = self.at.offset,
                attempt = self.attempt,
                error_class = self.class.as_str(),
                error = self.message,
                "handler failed"
            ),
        }
        self.ins
            .metrics
            .errors
            .with_label_values(&[&self.ins.service, self.class.as_str()])
            .inc();
    }
}

/// A transient failure will be retried in-process after a backoff.
pub(crate) struct InProcessRetry<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub attempt: u32,
    pub backoff: Duration,
}

impl InternalEvent for InProcessRetry<'_> {
    fn emit(self) {
        tracing::debug!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            "retrying record after backoff"
        );
        self.ins
            .metrics
            .retries
            .with_label_values(&[&self.ins.service, "in_process"])
            .inc();
    }
}

/// A record spent its in-process attempts and was written to a delayed retry topic.
pub(crate) struct RetryScheduled<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub retry_topic: &'a str,
    pub attempts: u32,
    pub not_before_ms: i64,
}

impl InternalEvent for RetryScheduled<'_> {
    fn emit(self) {
        tracing::info!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            retry_topic = self.retry_topic,
            attempts = self.attempts,
            not_before_ms = self.not_before_ms,
            "record moved to retry topic"
        );
        self.ins
            .metrics
            .retries
            .with_label_values(&[&self.ins.service, "retry_topic"])
            .inc();
        self.ins
            .metrics
            .records
            .with_label_values(&[&self.ins.service, self.at.topic, "retry_scheduled"])
            .inc();
    }
}

/// A record was written to the DLQ.
pub(crate) struct DeadLettered<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub dlq_topic: &'a str,
    pub class: ErrorClass,
    pub attempts: u32,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            dlq_topic = self.dlq_topic,
            error_class = self.class.as_str(),
            attempts = self.attempts,
            "record dead-lettered"
        );
        self.ins
            .metrics
            .dead_letters
            .with_label_values(&[&self.ins.service, self.class.as_str()])
            .inc();
        self.ins
            .metrics
            .records
            .with_label_values(&[&self.ins.service, self.at.topic, "dead_lettered"])
            .inc();
    }
}

/// A retry record belonging to another consumer group was passed over.
pub(crate) struct ForeignRetrySkipped<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
}

impl InternalEvent for ForeignRetrySkipped<'_> {
    fn emit(self) {
        tracing::trace!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            "retry record of another consumer group skipped"
        );
        self.ins
            .metrics
            .records
            .with_label_values(&[&self.ins.service, self.at.topic, "skipped"])
            .inc();
    }
}

/// Writing a record to the DLQ or a retry topic failed; the write is retried.
pub(crate) struct ParkWriteFailed<'a> {
    pub ins: &'a Instruments,
    pub at: At<'a>,
    pub target_topic: &'a str,
    pub kind: &'static str,
    pub error: &'a str,
    pub backoff: Duration,
}

impl InternalEvent for ParkWriteFailed<'_> {
    fn emit(self) {
        tracing::warn!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            target_topic = self.target_topic,
            error = self.error,
            backoff_ms = self.backoff.as_millis() as u64,
            "write to {} failed; retrying",
            self.kind
        );
        self.ins
            .metrics
            .park_write_errors
            .with_label_values(&[&self.ins.service, self.kind])
            .inc();
    }
}

/// The group coordinator changed this consumer's partitions.
pub(crate) struct Rebalanced<'a> {
    pub ins: &'a Instruments,
    pub kind: &'static str,
    pub partitions: usize,
    pub detail: &'a str,
}

impl InternalEvent for Rebalanced<'_> {
    fn emit(self) {
        if self.kind == "error" {
            tracing::warn!(error = self.detail, "rebalance failed");
        } else {
            tracing::info!(
                kind = self.kind,
                partitions = self.partitions,
                "partitions {}",
                self.detail
            );
        }
        self.ins
            .metrics
            .rebalances
            .with_label_values(&[&self.ins.service, self.kind])
            .inc();
    }
}

/// Committing stored offsets failed; the next commit carries them again.
pub(crate) struct OffsetCommitFailed<'a> {
    pub ins: &'a Instruments,
    pub error: &'a str,
}

impl InternalEvent for OffsetCommitFailed<'_> {
    fn emit(self) {
        tracing::warn!(error = self.error, "offset commit failed");
        self.ins
            .metrics
            .commit_errors
            .with_label_values(&[&self.ins.service])
            .inc();
    }
}

/// librdkafka statistics gave the lag of one subscribed topic.
pub(crate) struct ConsumerLagObserved<'a> {
    pub ins: &'a Instruments,
    pub topic: &'a str,
    pub lag: i64,
}

impl InternalEvent for ConsumerLagObserved<'_> {
    fn emit(self) {
        tracing::trace!(topic = self.topic, lag = self.lag, "consumer lag");
        self.ins
            .metrics
            .lag
            .with_label_values(&[&self.ins.service, self.topic])
            .set(self.lag);
    }
}

/// The consumer reported an error that does not stop it (broker down, unknown topic, ...).
pub(crate) struct ConsumeFailed<'a> {
    pub error: &'a str,
}

impl InternalEvent for ConsumeFailed<'_> {
    fn emit(self) {
        tracing::warn!(error = self.error, "kafka consumer error");
    }
}

/// A partition's worker queue filled up (paused) or drained again (resumed).
pub(crate) struct PartitionFlowChanged<'a> {
    pub ins: &'a Instruments,
    pub topic: &'a str,
    pub partition: i32,
    pub paused: bool,
}

impl InternalEvent for PartitionFlowChanged<'_> {
    fn emit(self) {
        let gauge = self
            .ins
            .metrics
            .paused
            .with_label_values(&[&self.ins.service]);
        if self.paused {
            tracing::debug!(
                topic = self.topic,
                partition = self.partition,
                "partition paused: worker queue full"
            );
            self.ins
                .metrics
                .pauses
                .with_label_values(&[&self.ins.service])
                .inc();
            gauge.inc();
        } else {
            tracing::debug!(
                topic = self.topic,
                partition = self.partition,
                "partition resumed"
            );
            gauge.dec();
        }
    }
}
