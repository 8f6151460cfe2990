//! Events of the state changelog: writes, the restore at start and the follower.

use std::fmt::Display;
use std::time::Duration;

use vigil_topology::InternalEvent;

use super::AlerterMetrics;

/// The broker did not acknowledge a state changelog write.
pub(crate) struct StateWriteFailed<'a> {
    pub metrics: &'a AlerterMetrics,
    /// Who waited for it: `record`, `api`, `escalation` or `restore`.
    pub caller: &'static str,
    pub error: &'a str,
}

impl InternalEvent for StateWriteFailed<'_> {
    fn emit(self) {
        self.metrics
            .state_write_failures
            .with_label_values(&[self.caller])
            .inc();
        tracing::warn!(
            caller = self.caller,
            error = self.error,
            "state changelog write failed"
        );
    }
}

/// A changelog entry read at start could not be decoded and is not restored.
pub(crate) struct StateEntrySkipped<'a> {
    pub metrics: &'a AlerterMetrics,
    /// The decode error's label (`bad_key`, `malformed`, `unknown_version`).
    pub reason: &'static str,
    pub error: &'a dyn Display,
    pub key: &'a [u8],
}

impl InternalEvent for StateEntrySkipped<'_> {
    fn emit(self) {
        self.metrics
            .state_restore_skipped
            .with_label_values(&[self.reason])
            .inc();
        tracing::warn!(
            error = %self.error,
            key = %String::from_utf8_lossy(self.key),
            "state changelog entry skipped"
        );
    }
}

/// The state was rebuilt from the changelog at start.
pub(crate) struct StateRestored<'a> {
    pub metrics: &'a AlerterMetrics,
    pub topic: &'a str,
    /// Records read, tombstones and superseded values included.
    pub records: u64,
    pub marks: usize,
    pub alerts: usize,
    pub silences: usize,
    /// Escalations with tiers left, armed once their partitions are assigned.
    pub timers: usize,
    pub expired: usize,
    pub evicted: usize,
    /// Silences whose matchers no longer compile.
    pub invalid: usize,
    /// Entries that could not be decoded (each counted by [`StateEntrySkipped`]).
    pub undecodable: usize,
    pub elapsed: Duration,
}

impl InternalEvent for StateRestored<'_> {
    fn emit(self) {
        let m = self.metrics;
        for (kind, n) in [
            ("mark", self.marks),
            ("alert", self.alerts),
            ("silence", self.silences),
        ] {
            m.state_restored.with_label_values(&[kind]).inc_by(n as u64);
        }
        for (reason, n) in [
            ("expired", self.expired),
            ("evicted", self.evicted),
            ("invalid", self.invalid),
        ] {
            m.state_restore_skipped
                .with_label_values(&[reason])
                .inc_by(n as u64);
        }
        m.state_restore_seconds.set(self.elapsed.as_secs_f64());
        tracing::info!(
            topic = self.topic,
            records = self.records,
            marks = self.marks,
            alerts = self.alerts,
            silences = self.silences,
            timers = self.timers,
            expired = self.expired,
            evicted = self.evicted,
            skipped = self.undecodable + self.invalid,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "alerter state restored"
        );
    }
}

/// The follower applied another instance's write; `kind` is `mark`, `alert`, `silence` or
/// `tombstone`.
pub(crate) struct FollowedApplied<'a> {
    pub metrics: &'a AlerterMetrics,
    pub kind: &'static str,
}

impl InternalEvent for FollowedApplied<'_> {
    fn emit(self) {
        self.metrics
            .state_follow_applied
            .with_label_values(&[self.kind])
            .inc();
    }
}

/// The follower did not apply a record: this instance's own write, one that could not be
/// decoded (logged, with `decode_error`), or one the book did not keep.
pub(crate) struct FollowedSkipped<'a> {
    pub metrics: &'a AlerterMetrics,
    /// The label (see `vigil_alerter_state_follow_skipped_total`).
    pub reason: &'static str,
    pub decode_error: Option<&'a dyn Display>,
    pub key: Option<&'a [u8]>,
}

impl InternalEvent for FollowedSkipped<'_> {
    fn emit(self) {
        if let Some(error) = self.decode_error {
            tracing::warn!(
                %error,
                key = %String::from_utf8_lossy(self.key.unwrap_or_default()),
                "followed state changelog record skipped"
            );
        }
        self.metrics
            .state_follow_skipped
            .with_label_values(&[self.reason])
            .inc();
    }
}

/// The follower's consumer could not be created or a read failed: the follower is down until
/// it reads again.
pub(crate) struct FollowerFailed<'a> {
    pub metrics: &'a AlerterMetrics,
    /// What failed: `create consumer` or `read`.
    pub what: &'static str,
    pub error: &'a str,
}

impl InternalEvent for FollowerFailed<'_> {
    fn emit(self) {
        self.metrics.state_follow_errors.inc();
        self.metrics.state_follower_up.set(0);
        tracing::error!(
            what = self.what,
            error = self.error,
            "alerter state follower error"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_updates_its_metric() {
        let m = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        StateWriteFailed {
            metrics: &m,
            caller: "api",
            error: "timed out",
        }
        .emit();
        assert_eq!(m.state_write_failures.with_label_values(&["api"]).get(), 1);
        StateEntrySkipped {
            metrics: &m,
            reason: "malformed",
            error: &"not json",
            key: b"mark/a",
        }
        .emit();
        assert_eq!(m.restore_skipped("malformed"), 1);
        StateRestored {
            metrics: &m,
            topic: "state",
            records: 9,
            marks: 2,
            alerts: 1,
            silences: 1,
            timers: 1,
            expired: 3,
            evicted: 1,
            invalid: 1,
            undecodable: 1,
            elapsed: Duration::from_millis(1_500),
        }
        .emit();
        assert_eq!(
            (
                m.restored("mark"),
                m.restored("alert"),
                m.restored("silence")
            ),
            (2, 1, 1)
        );
        assert_eq!(
            (m.restore_skipped("expired"), m.restore_skipped("evicted")),
            (3, 1)
        );
        assert_eq!(m.restore_seconds(), 1.5);
        FollowedApplied {
            metrics: &m,
            kind: "tombstone",
        }
        .emit();
        FollowedSkipped {
            metrics: &m,
            reason: "bad_key",
            decode_error: Some(&"no kind prefix"),
            key: Some(b"x"),
        }
        .emit();
        assert_eq!(
            (m.follow_applied("tombstone"), m.follow_skipped("bad_key")),
            (1, 1)
        );
        m.state_follower_up.set(1);
        FollowerFailed {
            metrics: &m,
            what: "read",
            error: "broker down",
        }
        .emit();
        assert_eq!(
            (m.state_follow_errors.get(), m.state_follower_up.get()),
            (1, 0)
        );
    }
}
