//! The alerter's metrics and everything it reports: one struct per thing that happens, whose
//! `emit()` writes the log line and updates the metric together (in the submodules, by area).
//! Labels are bounded: `outcome` is a fixed set, `receiver` a name from the config file, `kind`
//! one of three receiver kinds.

mod alerts;
mod delivery;
mod state;

pub(crate) use alerts::{
    AlertDeadLettered, AlertHandled, AlertSilenced, EscalationFired, EscalationUndeliverable,
    TierDeadLetter,
};
pub(crate) use delivery::{
    NotificationDelivered, NotificationFailed, NotificationFailure, NotificationRetrying,
};
pub(crate) use state::{
    FollowedApplied, FollowedSkipped, FollowerFailed, StateEntrySkipped, StateRestored,
    StateWriteFailed,
};

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

/// What happened to one consumed alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// Notified at least one receiver, none failed.
    Delivered,
    /// Same fingerprint already notified within the dedup window.
    Suppressed,
    /// Folded into an already-notified group.
    Grouped,
    /// Matched an active silence.
    Silenced,
    /// No route has a receiver for it.
    Unrouted,
    /// A receiver stayed unreachable after the retry budget: parked in the DLQ.
    DeadLettered,
}

impl AlertOutcome {
    /// Returns the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertOutcome::Delivered => "delivered",
            AlertOutcome::Suppressed => "suppressed",
            AlertOutcome::Grouped => "grouped",
            AlertOutcome::Silenced => "silenced",
            AlertOutcome::Unrouted => "unrouted",
            AlertOutcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Handles to the alerter's metrics; cheap to clone.
#[derive(Clone)]
pub struct AlerterMetrics {
    pub(crate) alerts: IntCounterVec,
    pub(crate) deliveries: IntCounterVec,
    pub(crate) retries: IntCounterVec,
    pub(crate) escalations: IntCounterVec,
    pub(crate) delivery_seconds: HistogramVec,
    pub(crate) alert_age_seconds: Histogram,
    pub(crate) dedup_entries: IntGauge,
    pub(crate) active_alerts: IntGauge,
    pub(crate) silences: IntGauge,
    pub(crate) state_evictions: IntCounter,
    pub(crate) pending_escalations: IntGauge,
    pub(crate) api_requests: IntCounterVec,
    pub(crate) state_writes: IntCounterVec,
    pub(crate) state_write_failures: IntCounterVec,
    pub(crate) state_restored: IntCounterVec,
    pub(crate) state_restore_skipped: IntCounterVec,
    pub(crate) state_restore_seconds: Gauge,
    pub(crate) state_follow_applied: IntCounterVec,
    pub(crate) state_follow_skipped: IntCounterVec,
    pub(crate) state_follow_errors: IntCounter,
    pub(crate) state_follower_up: IntGauge,
    pub(crate) state_follow_delay_seconds: Gauge,
}

impl AlerterMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let alerts = IntCounterVec::new(
            Opts::new("vigil_alerter_alerts_total", "Consumed alerts, by outcome."),
            &["outcome"],
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_deliveries_total",
                "Notifications, by receiver, kind and outcome (delivered, failed).",
            ),
            &["receiver", "kind", "outcome"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_delivery_retries_total",
                "Delivery attempts after a failure.",
            ),
            &["receiver"],
        )?;
        let escalations = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_escalations_total",
                "Escalation tiers fired because an alert was not acknowledged.",
            ),
            &["tier"],
        )?;
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vigil_alerter_delivery_duration_seconds",
                "Time to deliver one notification, retries and rate-limit waits included.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
            ]),
            &["kind"],
        )?;
        let alert_age_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_alerter_alert_age_seconds",
                "Time from the alert record's Kafka timestamp to its first notification.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
        )?;
        let dedup_entries = IntGauge::new(
            "vigil_alerter_dedup_entries",
            "Dedup and group marks held (bounded by state.max_dedup_entries).",
        )?;
        let active_alerts = IntGauge::new(
            "vigil_alerter_active_alerts",
            "Notified alerts held for ack and escalation (bounded by state.max_active_alerts).",
        )?;
        let silences = IntGauge::new("vigil_alerter_silences", "Silences held.")?;
        let state_evictions = IntCounter::new(
            "vigil_alerter_state_evictions_total",
            "Unexpired dedup marks or active alerts evicted because their table was full.",
        )?;
        let pending_escalations = IntGauge::new(
            "vigil_alerter_pending_escalations",
            "Alerts with an escalation timer running.",
        )?;
        let api_requests = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_api_requests_total",
                "HTTP API requests, by status code.",
            ),
            &["status"],
        )?;
        let state_writes = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_writes_total",
                "Writes to the state changelog, by kind (mark, alert, silence, tombstone).",
            ),
            &["kind"],
        )?;
        let state_write_failures = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_write_failures_total",
                "State changelog writes the broker did not acknowledge, by caller (record, api, escalation).",
            ),
            &["caller"],
        )?;
        let state_restored = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_restored_total",
                "Entries rebuilt from the state changelog at start, by kind (mark, alert, silence).",
            ),
            &["kind"],
        )?;
        let state_restore_skipped = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_restore_skipped_total",
                "Changelog entries not restored, by reason (expired, evicted, bad_key, malformed, unknown_version, invalid).",
            ),
            &["reason"],
        )?;
        let state_restore_seconds = Gauge::new(
            "vigil_alerter_state_restore_duration_seconds",
            "Time the last start spent reading the state changelog and rebuilding the state.",
        )?;
        let state_follow_applied = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_follow_applied_total",
                "Other instances' state changelog writes applied to this instance's memory, by kind (mark, alert, silence, tombstone).",
            ),
            &["kind"],
        )?;
        let state_follow_skipped = IntCounterVec::new(
            Opts::new(
                "vigil_alerter_state_follow_skipped_total",
                "State changelog records the follower did not apply, by reason (own: written by this instance; expired, evicted, invalid, no_key, bad_key, malformed, unknown_version).",
            ),
            &["reason"],
        )?;
        let state_follow_errors = IntCounter::new(
            "vigil_alerter_state_follow_errors_total",
            "Read errors and consumer restarts of the state changelog follower.",
        )?;
        let state_follower_up = IntGauge::new(
            "vigil_alerter_state_follower_up",
            "1 while the state changelog follower reads, 0 while it reconnects after an error.",
        )?;
        let state_follow_delay_seconds = Gauge::new(
            "vigil_alerter_state_follow_delay_seconds",
            "Time from the last followed changelog record's timestamp to its reading: how far behind other instances' writes this instance is.",
        )?;
        registry.register(Box::new(state_follow_applied.clone()))?;
        registry.register(Box::new(state_follow_skipped.clone()))?;
        registry.register(Box::new(state_follow_errors.clone()))?;
        registry.register(Box::new(state_follower_up.clone()))?;
        registry.register(Box::new(state_follow_delay_seconds.clone()))?;
        registry.register(Box::new(state_writes.clone()))?;
        registry.register(Box::new(state_write_failures.clone()))?;
        registry.register(Box::new(state_restored.clone()))?;
        registry.register(Box::new(state_restore_skipped.clone()))?;
        registry.register(Box::new(state_restore_seconds.clone()))?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(escalations.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        registry.register(Box::new(alert_age_seconds.clone()))?;
        registry.register(Box::new(dedup_entries.clone()))?;
        registry.register(Box::new(active_alerts.clone()))?;
        registry.register(Box::new(silences.clone()))?;
        registry.register(Box::new(state_evictions.clone()))?;
        registry.register(Box::new(pending_escalations.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
        Ok(Self {
            alerts,
            deliveries,
            retries,
            escalations,
            delivery_seconds,
            alert_age_seconds,
            dedup_entries,
            active_alerts,
            silences,
            state_evictions,
            pending_escalations,
            api_requests,
            state_writes,
            state_write_failures,
            state_restored,
            state_restore_skipped,
            state_restore_seconds,
            state_follow_applied,
            state_follow_skipped,
            state_follow_errors,
            state_follower_up,
            state_follow_delay_seconds,
        })
    }

    /// Returns the entries of `kind` (`mark`, `alert`, `silence`) restored at start (tests).
    pub fn restored(&self, kind: &str) -> u64 {
        self.state_restored.with_label_values(&[kind]).get()
    }

    /// Returns the changelog entries skipped at start for `reason` (tests).
    pub fn restore_skipped(&self, reason: &str) -> u64 {
        self.state_restore_skipped
            .with_label_values(&[reason])
            .get()
    }

    /// Returns the duration of the last restore in seconds (tests, bench).
    pub fn restore_seconds(&self) -> f64 {
        self.state_restore_seconds.get()
    }

    /// Returns the other instances' writes of `kind` applied by the follower (tests).
    pub fn follow_applied(&self, kind: &str) -> u64 {
        self.state_follow_applied.with_label_values(&[kind]).get()
    }

    /// Returns the changelog records the follower skipped for `reason` (tests).
    pub fn follow_skipped(&self, reason: &str) -> u64 {
        self.state_follow_skipped.with_label_values(&[reason]).get()
    }

    /// Returns this instance's changelog writes, by kind (tests).
    pub fn state_writes(&self, kind: &str) -> u64 {
        self.state_writes.with_label_values(&[kind]).get()
    }

    /// Returns the count of alerts with `outcome` (tests, bench).
    pub fn alerts_with(&self, outcome: AlertOutcome) -> u64 {
        self.alerts.with_label_values(&[outcome.as_str()]).get()
    }
}
