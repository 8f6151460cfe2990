//! Everything the audit sink reports: one struct per thing that happens, whose `emit()` writes
//! the log line and updates the metrics of [`SinkMetrics`] together. Labels are bounded: `table`
//! is one of the sink's three tables.

use std::time::Duration;

use vigil_schemas::ErrorChain;
use vigil_topology::InternalEvent;

use crate::error::AuditError;
use crate::metrics::SinkMetrics;

/// A ClickHouse write failed with a transient error; the sink pauses and retries after `delay`.
pub(crate) struct WriteRetrying<'a> {
    pub metrics: &'a SinkMetrics,
    /// `sink_offsets`, `audit_events` or `audit_digests`.
    pub table: &'a str,
    pub error: &'a AuditError,
    pub delay: Duration,
}

impl InternalEvent for WriteRetrying<'_> {
    fn emit(self) {
        self.metrics.retries.with_label_values(&[self.table]).inc();
        self.metrics.paused.set(1);
        tracing::warn!(
            error = %ErrorChain(self.error),
            table = self.table,
            delay_ms = self.delay.as_millis() as u64,
            "clickhouse write failed, retrying"
        );
    }
}

/// A sealed batch (intent and rows) is stored in ClickHouse.
pub(crate) struct BatchStored<'a> {
    pub metrics: &'a SinkMetrics,
    /// The batch's sequence number.
    pub seq: u64,
    pub rows: usize,
    /// Since the batch write started, dead letters included.
    pub elapsed: Duration,
}

impl InternalEvent for BatchStored<'_> {
    fn emit(self) {
        self.metrics.rows.inc_by(self.rows as u64);
        self.metrics.batches.inc();
        self.metrics
            .write_seconds
            .observe(self.elapsed.as_secs_f64());
        tracing::debug!(batch = self.seq, rows = self.rows, "batch stored");
    }
}

/// Rows of a batch reached ClickHouse, `now` (µs) after their verifier's decisions.
pub(crate) struct RowsLanded<'a> {
    pub metrics: &'a SinkMetrics,
    /// The rows' `verified_at`, microseconds since the epoch.
    pub verified_at: &'a [i64],
    /// Microseconds since the epoch.
    pub now: i64,
}

impl InternalEvent for RowsLanded<'_> {
    fn emit(self) {
        for &verified_at in self.verified_at {
            self.metrics
                .latency
                .observe((self.now - verified_at).max(0) as f64 / 1e6);
        }
    }
}

/// An undecodable record was parked in the DLQ.
pub(crate) struct RecordDeadLettered<'a> {
    pub metrics: &'a SinkMetrics,
    pub partition: i32,
    pub offset: i64,
    /// Why it could not be decoded.
    pub error: &'a str,
}

impl InternalEvent for RecordDeadLettered<'_> {
    fn emit(self) {
        self.metrics.dead_letters.inc();
        tracing::warn!(
            partition = self.partition,
            offset = self.offset,
            error = %self.error,
            "record dead-lettered"
        );
    }
}

/// A signed digest of the chain heads is stored.
pub(crate) struct DigestWritten<'a> {
    pub metrics: &'a SinkMetrics,
}

impl InternalEvent for DigestWritten<'_> {
    fn emit(self) {
        self.metrics.digests.inc();
    }
}

/// The batch being built changed size.
pub(crate) struct BatchPending<'a> {
    pub metrics: &'a SinkMetrics,
    pub rows: usize,
    pub bytes: usize,
}

impl InternalEvent for BatchPending<'_> {
    fn emit(self) {
        self.metrics.pending_rows.set(self.rows as i64);
        self.metrics.pending_bytes.set(self.bytes as i64);
    }
}

/// Reading paused (`true`: ClickHouse slow or failing) or resumed (`false`).
pub(crate) struct SinkPaused<'a> {
    pub metrics: &'a SinkMetrics,
    pub paused: bool,
}

impl InternalEvent for SinkPaused<'_> {
    fn emit(self) {
        self.metrics.paused.set(i64::from(self.paused));
    }
}

/// Reading from Kafka failed; the sink waits briefly and reads on (librdkafka reconnects).
pub(crate) struct ConsumeFailed<'a> {
    pub error: &'a rdkafka::error::KafkaError,
}

impl InternalEvent for ConsumeFailed<'_> {
    fn emit(self) {
        tracing::warn!(error = %ErrorChain(self.error), "kafka consume error");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn metrics() -> SinkMetrics {
        SinkMetrics::register(&prometheus::Registry::new()).unwrap()
    }

    #[test]
    fn write_retrying_counts_the_table_and_pauses() {
        let m = metrics();
        let error = AuditError::Inconsistent("test".into());
        WriteRetrying {
            metrics: &m,
            table: "audit_events",
            error: &error,
            delay: Duration::from_millis(100),
        }
        .emit();
        assert_eq!(m.retries.with_label_values(&["audit_events"]).get(), 1);
        assert_eq!(m.retries.with_label_values(&["sink_offsets"]).get(), 0);
        assert_eq!(m.paused.get(), 1);
    }

    #[test]
    fn batch_stored_counts_rows_batches_and_duration() {
        let m = metrics();
        BatchStored {
            metrics: &m,
            seq: 3,
            rows: 7,
            elapsed: Duration::from_millis(20),
        }
        .emit();
        assert_eq!(m.rows.get(), 7);
        assert_eq!(m.batches.get(), 1);
        assert_eq!(m.write_seconds.get_sample_count(), 1);
    }

    #[test]
    fn rows_landed_observes_one_latency_per_row() {
        let m = metrics();
        RowsLanded {
            metrics: &m,
            verified_at: &[1_000_000, 1_500_000],
            now: 2_000_000,
        }
        .emit();
        assert_eq!(m.latency.get_sample_count(), 2);
        assert!((m.latency.get_sample_sum() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn dead_letter_and_digest_are_counted() {
        let m = metrics();
        RecordDeadLettered {
            metrics: &m,
            partition: 0,
            offset: 9,
            error: "record has no value",
        }
        .emit();
        DigestWritten { metrics: &m }.emit();
        assert_eq!(m.dead_letters.get(), 1);
        assert_eq!(m.digests.get(), 1);
    }

    #[test]
    fn gauges_follow_pending_batch_and_pause() {
        let m = metrics();
        BatchPending {
            metrics: &m,
            rows: 4,
            bytes: 512,
        }
        .emit();
        assert_eq!((m.pending_rows.get(), m.pending_bytes.get()), (4, 512));
        SinkPaused {
            metrics: &m,
            paused: true,
        }
        .emit();
        assert_eq!(m.paused.get(), 1);
        SinkPaused {
            metrics: &m,
            paused: false,
        }
        .emit();
        assert_eq!(m.paused.get(), 0);
    }
}
