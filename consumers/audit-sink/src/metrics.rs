//! Metrics and internal events of the audit sink (`vigil_audit_sink_*`); bounded labels only.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The sink's metrics.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    /// Rows written to `audit_events`.
    pub rows: IntCounter,
    /// Batches written.
    pub batches: IntCounter,
    /// Records sent to the DLQ.
    pub dead_letters: IntCounter,
    /// ClickHouse write retries, by table.
    pub retries: IntCounterVec,
    /// Digests written.
    pub digests: IntCounter,
    /// Rows in the batch being built.
    pub pending_rows: IntGauge,
    /// Bytes in the batch being built.
    pub pending_bytes: IntGauge,
    /// 1 while partitions are paused because ClickHouse is slow or failing.
    pub paused: IntGauge,
    /// Seconds from the verifier's decision to the row being in ClickHouse.
    pub latency: Histogram,
    /// Seconds a batch write took (intent + rows).
    pub write_seconds: Histogram,
}

impl SinkMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let c = |n: &str, h: &str| IntCounter::with_opts(Opts::new(n, h));
        let g = |n: &str, h: &str| IntGauge::with_opts(Opts::new(n, h));
        let m = SinkMetrics {
            rows: c(
                "vigil_audit_sink_rows_total",
                "rows written to audit_events",
            )?,
            batches: c("vigil_audit_sink_batches_total", "batches written")?,
            dead_letters: c(
                "vigil_audit_sink_dead_letters_total",
                "undecodable records sent to the dlq",
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "vigil_audit_sink_write_retries_total",
                    "clickhouse write retries",
                ),
                &["table"],
            )?,
            digests: c("vigil_audit_sink_digests_total", "signed digests written")?,
            pending_rows: g(
                "vigil_audit_sink_pending_rows",
                "rows in the batch being built",
            )?,
            pending_bytes: g(
                "vigil_audit_sink_pending_bytes",
                "bytes in the batch being built",
            )?,
            paused: g(
                "vigil_audit_sink_paused",
                "1 while partitions are paused for clickhouse",
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new("vigil_audit_sink_latency_seconds", "verified_at to stored")
                    .buckets(vec![
                        0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
                    ]),
            )?,
            write_seconds: Histogram::with_opts(
                HistogramOpts::new("vigil_audit_sink_write_seconds", "batch write duration")
                    .buckets(prometheus::exponential_buckets(0.005, 2.0, 14)?),
            )?,
        };
        registry.register(Box::new(m.rows.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.digests.clone()))?;
        registry.register(Box::new(m.pending_rows.clone()))?;
        registry.register(Box::new(m.pending_bytes.clone()))?;
        registry.register(Box::new(m.paused.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.write_seconds.clone()))?;
        Ok(m)
    }
}
