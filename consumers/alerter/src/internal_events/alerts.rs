//! Events of consumed alerts and of their escalations.

use uuid::Uuid;
use vigil_topology::InternalEvent;

use super::{AlertOutcome, AlerterMetrics};

/// A consumed alert was handled, with this outcome.
pub(crate) struct AlertHandled<'a> {
    pub metrics: &'a AlerterMetrics,
    pub outcome: AlertOutcome,
    pub fingerprint: &'a str,
    pub rule_id: &'a str,
}

impl InternalEvent for AlertHandled<'_> {
    fn emit(self) {
        self.metrics
            .alerts
            .with_label_values(&[self.outcome.as_str()])
            .inc();
        tracing::debug!(
            outcome = self.outcome.as_str(),
            fingerprint = self.fingerprint,
            rule_id = self.rule_id,
            "alert handled"
        );
    }
}

/// A consumed alert matched an active silence and is not notified.
pub(crate) struct AlertSilenced<'a> {
    pub metrics: &'a AlerterMetrics,
    pub silence: Uuid,
    pub fingerprint: &'a str,
    pub rule_id: &'a str,
}

impl InternalEvent for AlertSilenced<'_> {
    fn emit(self) {
        tracing::debug!(silence = %self.silence, fingerprint = self.fingerprint, "alert silenced");
        AlertHandled {
            metrics: self.metrics,
            outcome: AlertOutcome::Silenced,
            fingerprint: self.fingerprint,
            rule_id: self.rule_id,
        }
        .emit();
    }
}

/// An escalation tier is due and the alert is still unacknowledged: its receivers are notified.
pub(crate) struct EscalationFired<'a> {
    pub metrics: &'a AlerterMetrics,
    pub alert_id: Uuid,
    /// The tier, 1-based.
    pub tier: usize,
}

impl InternalEvent for EscalationFired<'_> {
    fn emit(self) {
        self.metrics
            .escalations
            .with_label_values(&[&self.tier.to_string()])
            .inc();
        tracing::info!(alert_id = %self.alert_id, tier = self.tier, "escalating unacknowledged alert");
    }
}

/// What became of the record of an escalation tier no receiver accepted.
pub(crate) enum TierDeadLetter<'a> {
    /// Written to the DLQ (the write logs it).
    Written,
    /// The DLQ write failed, with this error.
    WriteFailed(&'a str),
    /// The alert's record was not kept, so there is nothing to dead-letter.
    RecordNotKept,
}

/// An alert's record was parked in the DLQ because receivers refused it (counted by the
/// outcome of [`AlertHandled`] or [`EscalationUndeliverable`]).
pub(crate) struct AlertDeadLettered<'a> {
    pub error: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl InternalEvent for AlertDeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            error = self.error,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            "alert undeliverable, dead-lettered"
        );
    }
}

/// An escalation tier stayed undeliverable: counted as a dead-lettered alert.
pub(crate) struct EscalationUndeliverable<'a> {
    pub metrics: &'a AlerterMetrics,
    pub alert_id: Uuid,
    /// The tier, 1-based.
    pub tier: usize,
    pub dead_letter: TierDeadLetter<'a>,
}

impl InternalEvent for EscalationUndeliverable<'_> {
    fn emit(self) {
        match self.dead_letter {
            TierDeadLetter::Written => {}
            TierDeadLetter::WriteFailed(error) => tracing::error!(
                error,
                alert_id = %self.alert_id,
                "escalation undeliverable and the dlq write failed"
            ),
            TierDeadLetter::RecordNotKept => tracing::error!(
                alert_id = %self.alert_id,
                tier = self.tier,
                "escalation undeliverable and its record was not kept"
            ),
        }
        self.metrics
            .alerts
            .with_label_values(&[AlertOutcome::DeadLettered.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_updates_its_metric() {
        let m = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        AlertSilenced {
            metrics: &m,
            silence: Uuid::new_v4(),
            fingerprint: "fp",
            rule_id: "r1",
        }
        .emit();
        AlertHandled {
            metrics: &m,
            outcome: AlertOutcome::Delivered,
            fingerprint: "fp",
            rule_id: "r1",
        }
        .emit();
        EscalationFired {
            metrics: &m,
            alert_id: Uuid::new_v4(),
            tier: 2,
        }
        .emit();
        for dead_letter in [
            TierDeadLetter::Written,
            TierDeadLetter::WriteFailed("dlq down"),
            TierDeadLetter::RecordNotKept,
        ] {
            EscalationUndeliverable {
                metrics: &m,
                alert_id: Uuid::new_v4(),
                tier: 1,
                dead_letter,
            }
            .emit();
        }
        assert_eq!(m.alerts_with(AlertOutcome::Silenced), 1);
        assert_eq!(m.alerts_with(AlertOutcome::Delivered), 1);
        assert_eq!(m.alerts_with(AlertOutcome::DeadLettered), 3);
        assert_eq!(m.escalations.with_label_values(&["2"]).get(), 1);
    }
}
