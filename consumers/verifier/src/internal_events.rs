//! The verifier's metrics and the internal events that log and count together.
//! Labels are bounded: `state` is one of five signature states, `kind` a fixed error kind.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use vigil_schemas::SignatureState;
use vigil_topology::InternalEvent;

/// Handles to the verifier's metrics; cheap to clone.
#[derive(Clone)]
pub struct VerifierMetrics {
    pub(crate) events: IntCounterVec,
    pub(crate) bad_data: IntCounterVec,
    pub(crate) verify_duration: Histogram,
    pub(crate) batch_sizes: Histogram,
    pub(crate) nonce_entries: IntGauge,
    pub(crate) nonce_evictions: IntCounter,
}

impl VerifierMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "vigil_verifier_events_total",
                "Events published to the verified topic, by signature state.",
            ),
            &["state"],
        )?;
        let bad_data = IntCounterVec::new(
            Opts::new(
                "vigil_verifier_bad_data_total",
                "Records sent to the DLQ as undecodable, by kind.",
            ),
            &["kind"],
        )?;
        let verify_duration = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_verifier_verify_duration_seconds",
                "Time from receiving a record to its verdict (signature, key, skew, nonce), publish excluded.",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
            ]),
        )?;
        let batch_sizes = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_verifier_verify_batch_size",
                "Signatures checked per verify_batch call.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        let nonce_entries = IntGauge::new(
            "vigil_verifier_nonce_cache_entries",
            "Nonces remembered for replay detection (bounded by nonce_cache_max_entries).",
        )?;
        let nonce_evictions = IntCounter::new(
            "vigil_verifier_nonce_cache_evictions_total",
            "Unexpired nonces evicted because the replay memory was full.",
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(bad_data.clone()))?;
        registry.register(Box::new(verify_duration.clone()))?;
        registry.register(Box::new(batch_sizes.clone()))?;
        registry.register(Box::new(nonce_entries.clone()))?;
        registry.register(Box::new(nonce_evictions.clone()))?;
        Ok(Self {
            events,
            bad_data,
            verify_duration,
            batch_sizes,
            nonce_entries,
            nonce_evictions,
        })
    }
}

/// An event was published with its verdict.
pub(crate) struct EventVerified<'a> {
    pub metrics: &'a VerifierMetrics,
    pub state: SignatureState,
    pub reason: Option<&'a str>,
    pub key_id: &'a str,
    pub event_id: &'a str,
}

impl InternalEvent for EventVerified<'_> {
    fn emit(self) {
        self.metrics
            .events
            .with_label_values(&[self.state.as_str()])
            .inc();
        if self.state != SignatureState::Valid {
            tracing::info!(
                state = self.state.as_str(),
                reason = self.reason.unwrap_or_default(),
                key_id = self.key_id,
                event_id = self.event_id,
                "event rejected"
            );
        }
    }
}

/// A record could not be read and goes to the DLQ.
pub(crate) struct RecordUndecodable<'a> {
    pub metrics: &'a VerifierMetrics,
    pub kind: &'static str,
}

impl InternalEvent for RecordUndecodable<'_> {
    fn emit(self) {
        self.metrics.bad_data.with_label_values(&[self.kind]).inc();
    }
}
