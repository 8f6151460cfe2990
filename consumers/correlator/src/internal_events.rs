//! The correlator's metrics and the internal events that log and count together: one struct
//! per thing that happens, whose `emit()` writes the log line and updates the metric. Labels
//! are bounded: `result` is one of a few fixed words.

use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use vigil_topology::InternalEvent;

use crate::engine::EngineStats;

/// Prometheus instruments of the correlator (bounded labels only).
#[derive(Clone)]
pub(crate) struct CorrelatorMetrics {
    events: IntCounter,
    late: IntCounter,
    future_stamped: IntCounter,
    evictions: IntCounter,
    alerts: IntCounter,
    state_keys: IntGauge,
    reloads: IntCounterVec,
    rebuilt: IntCounter,
    rebuilds: IntCounterVec,
}

impl CorrelatorMetrics {
    /// Registers the metrics in `r`.
    pub(crate) fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let state_keys = IntGauge::new(
            "vigil_correlator_state_keys",
            "live correlation state entries",
        )?;
        r.register(Box::new(state_keys.clone()))?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "vigil_correlator_rule_reloads_total",
                "rule reloads by result",
            ),
            &["result"],
        )?;
        r.register(Box::new(reloads.clone()))?;
        let rebuilds = IntCounterVec::new(
            Opts::new(
                "vigil_correlator_rebuilds_total",
                "window rebuilds at start and on taking over partitions, by result \
                 (ok, skipped: nothing to catch up, superseded: a newer assignment's rebuild \
                 replaced it, failed: the previous windows keep running)",
            ),
            &["result"],
        )?;
        r.register(Box::new(rebuilds.clone()))?;
        Ok(CorrelatorMetrics {
            events: counter("vigil_correlator_events_total", "events evaluated")?,
            late: counter(
                "vigil_correlator_late_events_total",
                "events dropped beyond the allowed lateness",
            )?,
            future_stamped: counter(
                "vigil_correlator_future_stamped_events_total",
                "events whose occurred_at was after their verified_at, evaluated at verified_at",
            )?,
            evictions: counter(
                "vigil_correlator_state_evictions_total",
                "state entries evicted by the bound",
            )?,
            alerts: counter("vigil_correlator_alerts_total", "alerts produced")?,
            state_keys,
            reloads,
            rebuilt: counter(
                "vigil_correlator_rebuild_events_total",
                "events replayed into windows at start and on taking over partitions",
            )?,
            rebuilds,
        })
    }

    fn set_state_keys(&self, keys: usize) {
        self.state_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}

/// The engine evaluated an event; the counters take what its statistics moved by.
pub(crate) struct EventEvaluated<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub before: EngineStats,
    pub after: EngineStats,
    pub state_keys: usize,
}

impl InternalEvent for EventEvaluated<'_> {
    fn emit(self) {
        let (m, before, after) = (self.metrics, self.before, self.after);
        m.events.inc_by(after.events.saturating_sub(before.events));
        m.late.inc_by(after.late.saturating_sub(before.late));
        m.future_stamped
            .inc_by(after.future_stamped.saturating_sub(before.future_stamped));
        m.evictions
            .inc_by(after.evictions.saturating_sub(before.evictions));
        m.set_state_keys(self.state_keys);
    }
}

/// An alert was acknowledged by the alerts topic.
pub(crate) struct AlertRaised<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub rule: &'a str,
    pub fingerprint: &'a str,
    pub count: i64,
}

impl InternalEvent for AlertRaised<'_> {
    fn emit(self) {
        self.metrics.alerts.inc();
        tracing::info!(
            rule = self.rule,
            fingerprint = self.fingerprint,
            count = self.count,
            "alert raised"
        );
    }
}

/// An alert was not acknowledged (`error`) or its delivery was cancelled (`None`); the record
/// is retried.
pub(crate) struct AlertNotAcknowledged<'a> {
    pub fingerprint: &'a str,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl InternalEvent for AlertNotAcknowledged<'_> {
    fn emit(self) {
        match self.error {
            Some(e) => {
                tracing::warn!(error = %e, fingerprint = self.fingerprint, "alert not acknowledged")
            }
            None => tracing::warn!(fingerprint = self.fingerprint, "alert delivery cancelled"),
        }
    }
}

/// The windows were rebuilt from the verified topic at start.
pub(crate) struct WindowsRebuiltAtStart<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub replayed: usize,
    pub state_keys: usize,
}

impl InternalEvent for WindowsRebuiltAtStart<'_> {
    fn emit(self) {
        self.metrics.rebuilt.inc_by(self.replayed as u64);
        self.metrics.rebuilds.with_label_values(&["ok"]).inc();
        tracing::info!(
            replayed = self.replayed,
            state_keys = self.state_keys,
            "windows rebuilt from the verified topic"
        );
    }
}

/// Newly assigned partitions' windows were rebuilt and swapped in.
pub(crate) struct PartitionsRebuilt<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub partitions: &'a [i32],
    pub replayed: usize,
    pub state_keys: usize,
    pub elapsed: Duration,
}

impl InternalEvent for PartitionsRebuilt<'_> {
    fn emit(self) {
        self.metrics.set_state_keys(self.state_keys);
        self.metrics.rebuilt.inc_by(self.replayed as u64);
        tracing::info!(
            partitions = ?self.partitions,
            replayed = self.replayed,
            state_keys = self.state_keys,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "partitions assigned; windows rebuilt from the verified topic"
        );
        self.metrics.rebuilds.with_label_values(&["ok"]).inc();
    }
}

/// Newly assigned partitions needed no rebuild: the windows hold them up to their committed
/// offsets.
pub(crate) struct RebuildSkipped<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub partitions: &'a [i32],
}

impl InternalEvent for RebuildSkipped<'_> {
    fn emit(self) {
        tracing::info!(
            partitions = ?self.partitions,
            "partitions assigned; windows already hold them up to the committed offsets"
        );
        self.metrics.rebuilds.with_label_values(&["skipped"]).inc();
    }
}

/// A rebuild finished after a newer assignment's rebuild was scheduled; its windows are
/// discarded.
pub(crate) struct RebuildSuperseded<'a> {
    pub metrics: &'a CorrelatorMetrics,
}

impl InternalEvent for RebuildSuperseded<'_> {
    fn emit(self) {
        self.metrics
            .rebuilds
            .with_label_values(&["superseded"])
            .inc();
    }
}

/// Why a rebuild of newly assigned partitions failed.
pub(crate) enum RebuildFailure<'a> {
    /// No async runtime to run it on.
    NoRuntime,
    /// The rebuilt windows could not take the live rule pack.
    PackRefused(&'a dyn std::fmt::Display),
    /// Reading or replaying failed or took too long.
    Replay(&'a str),
}

/// A rebuild of newly assigned partitions failed; the previous windows keep running.
pub(crate) struct RebuildFailed<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub partitions: &'a [i32],
    pub failure: RebuildFailure<'a>,
}

impl InternalEvent for RebuildFailed<'_> {
    fn emit(self) {
        let partitions = self.partitions;
        match self.failure {
            RebuildFailure::NoRuntime => {
                tracing::error!("no async runtime to rebuild windows on; previous windows kept")
            }
            RebuildFailure::PackRefused(e) => tracing::error!(
                error = %e,
                ?partitions,
                "rebuilt windows refused the live rule pack; previous windows kept"
            ),
            RebuildFailure::Replay(e) => tracing::error!(
                error = e,
                ?partitions,
                "window rebuild failed; previous windows kept"
            ),
        }
        self.metrics.rebuilds.with_label_values(&["failed"]).inc();
    }
}

/// Reading the verified topic during a rebuild returned an error; the read goes on.
pub(crate) struct RebuildReadFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for RebuildReadFailed<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, "rebuild read error");
    }
}

/// A rebuild hit its time or event bound before reaching the committed offsets.
pub(crate) struct RebuildIncomplete {
    pub partitions: usize,
}

impl InternalEvent for RebuildIncomplete {
    fn emit(self) {
        tracing::warn!(
            partitions = self.partitions,
            "rebuild stopped before the committed offsets"
        );
    }
}

/// A changed rule set was loaded and replaced the running one.
pub(crate) struct RulesReloaded<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub rules: usize,
}

impl InternalEvent for RulesReloaded<'_> {
    fn emit(self) {
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        tracing::info!(rules = self.rules, "rules reloaded");
    }
}

/// Why a changed rule set was refused.
pub(crate) enum RulesRefusal<'a> {
    /// A rule file did not parse or validate.
    File(&'a crate::rules::RuleError),
    /// The engine refused the pack (e.g. a correlation naming an unknown rule).
    Engine(&'a dyn std::fmt::Display),
}

/// A changed rule set was refused; the previous set keeps running.
pub(crate) struct RulesRefused<'a> {
    pub metrics: &'a CorrelatorMetrics,
    pub refusal: RulesRefusal<'a>,
}

impl InternalEvent for RulesRefused<'_> {
    fn emit(self) {
        self.metrics.reloads.with_label_values(&["refused"]).inc();
        match self.refusal {
            RulesRefusal::Engine(e) => {
                tracing::error!(error = %e, "rule set refused; the previous set keeps running")
            }
            RulesRefusal::File(e) => tracing::error!(
                file = %e.file.display(),
                line = e.line,
                reason = e.reason,
                "rule set refused; the previous set keeps running"
            ),
        }
    }
}
