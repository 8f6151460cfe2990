//! Events of notifications to receivers.

use std::time::Duration;

use vigil_topology::InternalEvent;

use super::AlerterMetrics;

/// A receiver accepted a notification (2xx).
pub(crate) struct NotificationDelivered<'a> {
    pub metrics: &'a AlerterMetrics,
    pub receiver: &'a str,
    pub kind: &'static str,
    /// Since the delivery started, rate-limit wait and retries included.
    pub elapsed: Duration,
}

impl InternalEvent for NotificationDelivered<'_> {
    fn emit(self) {
        self.metrics
            .deliveries
            .with_label_values(&[self.receiver, self.kind, "delivered"])
            .inc();
        self.metrics
            .delivery_seconds
            .with_label_values(&[self.kind])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// Why a notification failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotificationFailure {
    /// No rate-limit token within `rate_limit_max_wait_ms` (not logged here: the dead letter
    /// that follows names the reason).
    RateLimited,
    /// The receiver refused the request (a 4xx other than 408 and 429).
    Refused,
    /// Every attempt failed.
    RetriesExhausted,
}

/// A notification failed for good: the receiver was not told.
pub(crate) struct NotificationFailed<'a> {
    pub metrics: &'a AlerterMetrics,
    pub receiver: &'a str,
    pub kind: &'static str,
    pub failure: NotificationFailure,
    pub error: &'a str,
    /// Attempts made (0: none, rate limited).
    pub attempts: u32,
}

impl InternalEvent for NotificationFailed<'_> {
    fn emit(self) {
        match self.failure {
            NotificationFailure::RateLimited => {}
            NotificationFailure::Refused => tracing::warn!(
                receiver = self.receiver,
                error = self.error,
                "delivery refused by receiver"
            ),
            NotificationFailure::RetriesExhausted => tracing::warn!(
                receiver = self.receiver,
                error = self.error,
                attempt = self.attempts,
                "delivery failed, retry budget spent"
            ),
        }
        self.metrics
            .deliveries
            .with_label_values(&[self.receiver, self.kind, "failed"])
            .inc();
    }
}

/// An attempt failed with a retryable error; the next one follows after `wait`.
pub(crate) struct NotificationRetrying<'a> {
    pub metrics: &'a AlerterMetrics,
    pub receiver: &'a str,
    pub error: &'a str,
    /// The attempt that failed, 1-based.
    pub attempt: u32,
    pub wait: Duration,
}

impl InternalEvent for NotificationRetrying<'_> {
    fn emit(self) {
        self.metrics
            .retries
            .with_label_values(&[self.receiver])
            .inc();
        tracing::debug!(
            receiver = self.receiver,
            error = self.error,
            attempt = self.attempt,
            wait_ms = self.wait.as_millis() as u64,
            "delivery failed, retrying"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_updates_its_metric() {
        let m = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        let deliveries = |outcome: &str| {
            m.deliveries
                .with_label_values(&["pd", "pagerduty", outcome])
                .get()
        };
        NotificationDelivered {
            metrics: &m,
            receiver: "pd",
            kind: "pagerduty",
            elapsed: Duration::from_millis(3),
        }
        .emit();
        for failure in [
            NotificationFailure::RateLimited,
            NotificationFailure::Refused,
            NotificationFailure::RetriesExhausted,
        ] {
            NotificationFailed {
                metrics: &m,
                receiver: "pd",
                kind: "pagerduty",
                failure,
                error: "HTTP 400",
                attempts: 1,
            }
            .emit();
        }
        NotificationRetrying {
            metrics: &m,
            receiver: "pd",
            error: "HTTP 503",
            attempt: 1,
            wait: Duration::from_millis(5),
        }
        .emit();
        assert_eq!((deliveries("delivered"), deliveries("failed")), (1, 3));
        assert_eq!(m.retries.with_label_values(&["pd"]).get(), 1);
        assert_eq!(
            m.delivery_seconds
                .with_label_values(&["pagerduty"])
                .get_sample_count(),
            1
        );
    }
}
