//! Producer metrics; `internal_events` updates them together with the log lines.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why an event was not delivered and will not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The spool reached its configured bound.
    SpoolFull,
    /// The event could not be encoded (e.g. larger than the value bound).
    Encode,
    /// The broker refused the record permanently (e.g. too large for the topic).
    Refused,
    /// A spooled record was unreadable (corruption the spool did not catch).
    CorruptSpool,
    /// The spool failed to write (disk error).
    SpoolIo,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 5] = [
        DropReason::SpoolFull,
        DropReason::Encode,
        DropReason::Refused,
        DropReason::CorruptSpool,
        DropReason::SpoolIo,
    ];

    /// Returns the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SpoolFull => "spool_full",
            DropReason::Encode => "encode",
            DropReason::Refused => "refused",
            DropReason::CorruptSpool => "corrupt_spool",
            DropReason::SpoolIo => "spool_io",
        }
    }
}

/// Every metric of an emitter.
#[derive(Clone)]
pub struct ProducerMetrics {
    pub(crate) emitted: IntCounter,
    pub(crate) delivered: IntCounter,
    pub(crate) spooled: IntCounter,
    pub(crate) replayed: IntCounter,
    pub(crate) dropped: IntCounterVec,
    pub(crate) queue_depth: IntGauge,
    pub(crate) spool_bytes: IntGauge,
    pub(crate) spool_records: IntGauge,
    pub(crate) spool_max_bytes: IntGauge,
    pub(crate) delivery_latency: Histogram,
}

impl ProducerMetrics {
    /// Creates the metrics and registers them in `registry` (when given; a second emitter in
    /// the same registry shares nothing and is simply not registered twice).
    pub fn new(registry: Option<&Registry>) -> Self {
        let counter = |name: &str, help: &str| IntCounter::with_opts(Opts::new(name, help));
        let gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        // Metric options are static and valid; construction cannot fail.
        #[allow(clippy::expect_used)]
        let m = Self {
            emitted: counter(
                "vigil_producer_events_emitted_total",
                "events passed to emit",
            )
            .expect("valid"),
            delivered: counter(
                "vigil_producer_events_delivered_total",
                "events acknowledged by the broker",
            )
            .expect("valid"),
            spooled: counter(
                "vigil_producer_events_spooled_total",
                "events written to the disk spool",
            )
            .expect("valid"),
            replayed: counter(
                "vigil_producer_events_replayed_total",
                "spooled events delivered after the broker came back",
            )
            .expect("valid"),
            dropped: IntCounterVec::new(
                Opts::new(
                    "vigil_producer_events_dropped_total",
                    "events lost, by reason",
                ),
                &["reason"],
            )
            .expect("valid"),
            queue_depth: gauge(
                "vigil_producer_queue_depth_events",
                "events waiting in the in-memory queue",
            )
            .expect("valid"),
            spool_bytes: gauge("vigil_producer_spool_bytes", "size of the disk spool")
                .expect("valid"),
            spool_records: gauge(
                "vigil_producer_spool_records",
                "records waiting in the disk spool",
            )
            .expect("valid"),
            spool_max_bytes: gauge(
                "vigil_producer_spool_max_bytes",
                "configured bound of the disk spool",
            )
            .expect("valid"),
            delivery_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_producer_delivery_latency_seconds",
                    "from emit to broker acknowledgement",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                ]),
            )
            .expect("valid"),
        };
        if let Some(r) = registry {
            let _ = r.register(Box::new(m.emitted.clone()));
            let _ = r.register(Box::new(m.delivered.clone()));
            let _ = r.register(Box::new(m.spooled.clone()));
            let _ = r.register(Box::new(m.replayed.clone()));
            let _ = r.register(Box::new(m.dropped.clone()));
            let _ = r.register(Box::new(m.queue_depth.clone()));
            let _ = r.register(Box::new(m.spool_bytes.clone()));
            let _ = r.register(Box::new(m.spool_records.clone()));
            let _ = r.register(Box::new(m.spool_max_bytes.clone()));
            let _ = r.register(Box::new(m.delivery_latency.clone()));
        }
        for reason in DropReason::ALL {
            m.dropped.with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// Returns the number of events dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.with_label_values(&[reason.as_str()]).get()
    }

    /// Events dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.into_iter().map(|r| self.dropped(r)).sum()
    }

    /// Returns the number of events emitted.
    pub fn emitted(&self) -> u64 {
        self.emitted.get()
    }

    /// Returns the number of events the broker acknowledged.
    pub fn delivered(&self) -> u64 {
        self.delivered.get()
    }

    /// Returns the number of events written to the spool.
    pub fn spooled(&self) -> u64 {
        self.spooled.get()
    }
}
