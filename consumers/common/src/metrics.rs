//! The runtime's Prometheus metrics. Labels are bounded: service, topic (configured names only),
//! outcome, class, stage, kind; never a key, an id or an offset.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Handles to every metric the runtime updates; cheap to clone.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub(crate) records: IntCounterVec,
    pub(crate) errors: IntCounterVec,
    pub(crate) retries: IntCounterVec,
    pub(crate) dead_letters: IntCounterVec,
    pub(crate) park_write_errors: IntCounterVec,
    pub(crate) handle_duration: HistogramVec,
    pub(crate) in_flight: IntGaugeVec,
    pub(crate) lag: IntGaugeVec,
    pub(crate) rebalances: IntCounterVec,
    pub(crate) commit_errors: IntCounterVec,
    pub(crate) pauses: IntCounterVec,
    pub(crate) paused: IntGaugeVec,
}

impl ConsumerMetrics {
    /// Registers the runtime's metrics in `registry`. Call it once per registry and share the
    /// result when one process runs several runtimes (the `service` label tells them apart).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let handle_duration = HistogramVec::new(
            HistogramOpts::new(
                "vigil_consumer_handle_duration_seconds",
                "Time one handler call took, failed calls included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["service"],
        )?;
        registry.register(Box::new(handle_duration.clone()))?;
        Ok(Self {
            records: counter(
                "vigil_consumer_records_total",
                "Records finished, by outcome: handled, rejected, dead_lettered, retry_scheduled, skipped.",
                &["service", "topic", "outcome"],
            )?,
            errors: counter(
                "vigil_consumer_errors_total",
                "Failed handler calls, by error class.",
                &["service", "class"],
            )?,
            retries: counter(
                "vigil_consumer_retries_total",
                "Retries of transient failures, by stage: in_process or retry_topic.",
                &["service", "stage"],
            )?,
            dead_letters: counter(
                "vigil_consumer_dead_letters_total",
                "Records written to the DLQ, by error class.",
                &["service", "class"],
            )?,
            park_write_errors: counter(
                "vigil_consumer_park_write_errors_total",
                "Failed writes to the DLQ or a retry topic (each is retried), by kind: dlq or retry.",
                &["service", "kind"],
            )?,
            handle_duration,
            in_flight: gauge(
                "vigil_consumer_in_flight_records",
                "Records read from Kafka and not yet finished (queued for or held by a worker).",
                &["service"],
            )?,
            lag: gauge(
                "vigil_consumer_lag_records",
                "Records not yet handled (high watermark minus stored offset) over the assigned partitions.",
                &["service", "topic"],
            )?,
            rebalances: counter(
                "vigil_consumer_rebalances_total",
                "Partition assignment changes, by kind: assign, revoke, error.",
                &["service", "kind"],
            )?,
            commit_errors: counter(
                "vigil_consumer_commit_errors_total",
                "Offset commits that failed (they are retried by the next commit).",
                &["service"],
            )?,
            pauses: counter(
                "vigil_consumer_partition_pauses_total",
                "Times a partition was paused because its worker queue was full.",
                &["service"],
            )?,
            paused: gauge(
                "vigil_consumer_paused_partitions",
                "Partitions currently paused because their worker queue is full.",
                &["service"],
            )?,
        })
    }
}
