//! Books and documents the state's unit tests share.

use uuid::Uuid;
use vigil_schemas::Alert;

use super::book::AlertBook;
use super::clock::now_ms;
use super::document::{AlertDoc, EscalationDoc, OriginDoc, SilenceDoc, VERSION};
use super::writer::Pending;
use crate::config::{EscalationTier, MatchConfig, StateConfig};
use crate::internal_events::AlerterMetrics;

/// A book with these bounds, two silences at most and a one-minute active TTL.
pub(super) fn book(max_marks: usize, max_active: usize) -> AlertBook {
    let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
    AlertBook::new(
        StateConfig {
            max_dedup_entries: max_marks,
            max_active_alerts: max_active,
            active_ttl_ms: 60_000,
            max_silences: 2,
        },
        metrics,
    )
}

/// An empty set of pending writes.
pub(super) fn p() -> Pending {
    Pending::new()
}

/// A silence of rule `rule` by bob, created at and ending at the given wall-clock times.
pub(super) fn silence_doc(rule: &str, created_at_ms: i64, ends_at_ms: i64) -> SilenceDoc {
    SilenceDoc {
        v: VERSION,
        id: Uuid::new_v4(),
        matchers: MatchConfig {
            rule_id: vec![rule.into()],
            ..MatchConfig::default()
        },
        ends_at_ms,
        created_by: "bob".into(),
        comment: String::new(),
        created_at_ms,
    }
}

/// An active alert notified at `notified_at_ms` on `route`, with a two-tier policy of which
/// `fired` tiers were notified.
pub(super) fn alert_doc(a: &Alert, notified_at_ms: i64, ttl_ms: i64, fired: usize) -> AlertDoc {
    AlertDoc {
        v: VERSION,
        alert: a.clone(),
        notified_at_ms,
        expires_at_ms: notified_at_ms + ttl_ms,
        routes: vec!["route".into()],
        grouped: 1,
        escalation_tier: fired,
        ack: None,
        escalations: vec![EscalationDoc {
            route: "route".into(),
            started_at_ms: notified_at_ms,
            fired,
            tiers: vec![
                EscalationTier {
                    receivers: vec!["lead".into()],
                    after_ms: 1_000,
                },
                EscalationTier {
                    receivers: vec!["lead2".into()],
                    after_ms: 2_000,
                },
            ],
        }],
        origin: None,
    }
}

/// An alert doc whose record came from `topic`/`partition`.
pub(super) fn doc_on(a: &Alert, topic: &str, partition: i32, fired: usize) -> AlertDoc {
    let mut d = alert_doc(a, now_ms() - 500, 60_000, fired);
    d.origin = Some(OriginDoc {
        topic: topic.into(),
        partition,
        offset: 7,
        timestamp_ms: None,
        key_hex: None,
        value_hex: None,
        headers: Vec::new(),
    });
    d
}

/// A (topic, partition) pair.
pub(super) fn tp(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_owned(), partition)
}
