//! The configuration event that records a replay: who, when, which range.

use std::collections::BTreeMap;

use vigil_schemas::model::{EventClass, Platform, Producer, Status, Subject};
use vigil_schemas::{SchemaRegistry, VerificationEvent};

use crate::error::DlqError;
use crate::filter::format_ms;
use crate::summary::ReplaySummary;

/// `activity_name` of a replay's configuration event.
pub const ACTIVITY: &str = "dlq_replay";
/// Service name in the event's `producer`.
pub const SERVICE: &str = "vigil-dlq";

/// Returns the event recording `summary`; the subject is the approving (signing) key.
pub fn replay_event(summary: &ReplaySummary) -> VerificationEvent {
    let mut e = VerificationEvent::new(
        EventClass::Configuration,
        ACTIVITY,
        Status::Success,
        Producer::new(Platform::Cli, env!("CARGO_PKG_VERSION"), SERVICE),
    );
    let a = &summary.approval;
    e.subject =
        Subject::principal(a.approver_key_id.clone()).with_key_id(a.approver_key_id.clone());
    e.message = Some(format!(
        "replay of {} records from {} ({} already replayed, {} unreplayable)",
        summary.to_replay, summary.dlq_topic, summary.already_replayed, summary.unreplayable
    ));
    let mut attrs = BTreeMap::new();
    attrs.insert("replay_id".into(), summary.replay_id.clone());
    attrs.insert("dlq_topic".into(), summary.dlq_topic.clone());
    attrs.insert("approval".into(), a.mode.clone());
    attrs.insert("approver_key_id".into(), a.approver_key_id.clone());
    if let Some(p) = &a.planner_key_id {
        attrs.insert("planner_key_id".into(), p.clone());
    }
    if let Some(p) = &a.plan_id {
        attrs.insert("plan_id".into(), p.clone());
    }
    if let Some(p) = &a.plan_sha256 {
        attrs.insert("plan_sha256".into(), p.clone());
    }
    let f = &a.filter;
    attrs.insert(
        "filter_error_class".into(),
        f.error_class.clone().unwrap_or_default(),
    );
    attrs.insert(
        "filter_origin_topic".into(),
        f.origin_topic.clone().unwrap_or_default(),
    );
    attrs.insert(
        "filter_from".into(),
        f.from_ms.map(format_ms).unwrap_or_default(),
    );
    attrs.insert(
        "filter_to".into(),
        f.to_ms.map(format_ms).unwrap_or_default(),
    );
    attrs.insert("selected".into(), summary.selected.to_string());
    attrs.insert("count".into(), summary.to_replay.to_string());
    attrs.insert(
        "already_replayed".into(),
        summary.already_replayed.to_string(),
    );
    attrs.insert("unreplayable".into(), summary.unreplayable.to_string());
    attrs.insert("range".into(), summary.range_text());
    attrs.insert(
        "origin_topics".into(),
        summary
            .by_origin_topic
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    e.attributes = attrs;
    e
}

/// Registers (idempotently) the event schema under the events topic's subject and returns
/// its id, so the replay can sign its event before the first record is written.
pub async fn schema_id(
    registry_url: &str,
    events_topic: &str,
) -> Result<vigil_schemas::SchemaId, DlqError> {
    let registry = SchemaRegistry::new(registry_url)?;
    let subject = vigil_schemas::topics::value_subject(events_topic);
    Ok(registry
        .register(&subject, vigil_schemas::schema::VERIFICATION_EVENT_AVSC)
        .await?)
}
