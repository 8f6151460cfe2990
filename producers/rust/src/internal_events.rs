//! Everything an emitter reports: one struct per thing that happens, whose `emit()` writes the
//! log line and updates the metrics of [`ProducerMetrics`] together. Labels are bounded: the
//! drop reason is a [`DropReason`].

use std::fmt::Display;
use std::time::Duration;

use vigil_topology::InternalEvent;

use crate::metrics::{DropReason, ProducerMetrics};

/// An event is lost for good: neither delivered nor kept in the spool.
pub(crate) struct EventDropped<'a> {
    pub metrics: &'a ProducerMetrics,
    pub reason: DropReason,
    /// Why, printed with its whole chain by the caller's error type.
    pub error: &'a dyn Display,
}

impl InternalEvent for EventDropped<'_> {
    fn emit(self) {
        tracing::error!(reason = self.reason.as_str(), error = %self.error, "event dropped");
        self.metrics
            .dropped
            .with_label_values(&[self.reason.as_str()])
            .inc();
    }
}

/// An event was written to the disk spool, which now holds `records` in `bytes`.
pub(crate) struct EventSpooled<'a> {
    pub metrics: &'a ProducerMetrics,
    pub records: u64,
    pub bytes: u64,
}

impl InternalEvent for EventSpooled<'_> {
    fn emit(self) {
        self.metrics.spooled.inc();
        SpoolSize {
            metrics: self.metrics,
            records: self.records,
            bytes: self.bytes,
        }
        .emit();
    }
}

/// The spool's size changed (a batch was replayed and acknowledged, or a record appended).
pub(crate) struct SpoolSize<'a> {
    pub metrics: &'a ProducerMetrics,
    pub records: u64,
    pub bytes: u64,
}

impl InternalEvent for SpoolSize<'_> {
    fn emit(self) {
        self.metrics.spool_bytes.set(self.bytes as i64);
        self.metrics.spool_records.set(self.records as i64);
    }
}

/// The broker acknowledged an event: sent directly `latency` after `emit`, or replayed from the
/// spool (`latency` is `None`).
pub(crate) struct EventDelivered<'a> {
    pub metrics: &'a ProducerMetrics,
    pub latency: Option<Duration>,
}

impl InternalEvent for EventDelivered<'_> {
    fn emit(self) {
        self.metrics.delivered.inc();
        match self.latency {
            Some(latency) => self.metrics.delivery_latency.observe(latency.as_secs_f64()),
            None => self.metrics.replayed.inc(),
        }
    }
}

/// `emit` accepted an event.
pub(crate) struct EventEmitted<'a> {
    pub metrics: &'a ProducerMetrics,
}

impl InternalEvent for EventEmitted<'_> {
    fn emit(self) {
        self.metrics.emitted.inc();
    }
}

/// The encoder thread finished a pass with `depth` events still queued in memory.
pub(crate) struct QueueDepth<'a> {
    pub metrics: &'a ProducerMetrics,
    pub depth: usize,
}

impl InternalEvent for QueueDepth<'_> {
    fn emit(self) {
        self.metrics.queue_depth.set(self.depth as i64);
    }
}

/// librdkafka reports every broker down: new events go to the spool at once.
pub(crate) struct BrokersDown<'a> {
    pub reason: &'a str,
}

impl InternalEvent for BrokersDown<'_> {
    fn emit(self) {
        tracing::warn!(reason = %self.reason, "all brokers down, spooling new events");
    }
}

/// librdkafka reports a client error it recovers from itself.
pub(crate) struct ClientError<'a> {
    pub error: &'a dyn Display,
    pub reason: &'a str,
}

impl InternalEvent for ClientError<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, reason = %self.reason, "kafka client error");
    }
}

/// A spooled record's replay was not acknowledged; the batch is replayed again later.
pub(crate) struct ReplayFailed<'a> {
    pub error: &'a dyn Display,
    pub seq: u64,
}

impl InternalEvent for ReplayFailed<'_> {
    fn emit(self) {
        tracing::debug!(error = %self.error, seq = self.seq, "spool replay delivery failed");
    }
}

/// A replay batch was sent: `sent` records, `complete` when every one was acknowledged.
pub(crate) struct ReplayBatchDone {
    pub sent: usize,
    pub complete: bool,
}

impl InternalEvent for ReplayBatchDone {
    fn emit(self) {
        tracing::debug!(
            sent = self.sent,
            complete = self.complete,
            "spool batch replayed"
        );
    }
}

/// Reading (`ack: false`) or acknowledging (`ack: true`) the spool failed; the drainer backs
/// off and tries again, nothing is lost.
pub(crate) struct SpoolFailed<'a> {
    pub error: &'a dyn Display,
    pub ack: bool,
}

impl InternalEvent for SpoolFailed<'_> {
    fn emit(self) {
        if self.ack {
            tracing::error!(error = %self.error, "acknowledging the spool failed");
        } else {
            tracing::error!(error = %self.error, "reading the spool failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let m = ProducerMetrics::new(None);
        EventDropped {
            metrics: &m,
            reason: DropReason::SpoolFull,
            error: &"spool full",
        }
        .emit();
        assert_eq!(m.dropped(DropReason::SpoolFull), 1);
        assert_eq!(m.dropped(DropReason::Encode), 0);
    }

    #[test]
    fn deliveries_count_direct_latency_and_replays_apart() {
        let m = ProducerMetrics::new(None);
        EventDelivered {
            metrics: &m,
            latency: Some(Duration::from_millis(3)),
        }
        .emit();
        EventDelivered {
            metrics: &m,
            latency: None,
        }
        .emit();
        assert_eq!(m.delivered(), 2);
        assert_eq!(m.replayed.get(), 1);
        assert_eq!(m.delivery_latency.get_sample_count(), 1);
    }

    #[test]
    fn spooling_counts_and_sets_the_size_gauges() {
        let m = ProducerMetrics::new(None);
        EventSpooled {
            metrics: &m,
            records: 2,
            bytes: 300,
        }
        .emit();
        assert_eq!(m.spooled(), 1);
        assert_eq!((m.spool_records.get(), m.spool_bytes.get()), (2, 300));
        EventEmitted { metrics: &m }.emit();
        QueueDepth {
            metrics: &m,
            depth: 5,
        }
        .emit();
        assert_eq!((m.emitted(), m.queue_depth.get()), (1, 5));
    }
}
