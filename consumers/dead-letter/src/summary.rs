//! What a replay did and who authorized it: the record its configuration event is built from.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::filter::Filter;

/// Who authorized a replay, as recorded in its configuration event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// `plan` (maker-checker), `none` (explicit `--no-approval`) or `dry-run`.
    pub mode: String,
    /// Key id of the planner (plan mode).
    pub planner_key_id: Option<String>,
    /// Key id of the approver, which also signs the event.
    pub approver_key_id: String,
    /// The plan's id.
    pub plan_id: Option<String>,
    /// SHA-256 of the plan's signed bytes.
    pub plan_sha256: Option<String>,
    /// Filters the records were selected with.
    pub filter: Filter,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Random id, also in the ledger entries and the event.
    pub replay_id: String,
    /// The DLQ read.
    pub dlq_topic: String,
    /// True when nothing was written.
    pub dry_run: bool,
    /// Records selected (filter or plan).
    pub selected: u64,
    /// Records left out because the ledger says they were replayed before.
    pub already_replayed: u64,
    /// Records left out because their dead-letter headers are unreadable.
    pub unreplayable: u64,
    /// Records to write back (dry run) or written back.
    pub to_replay: u64,
    /// Per DLQ partition, lowest and highest offset written back.
    pub range: BTreeMap<i32, (i64, i64)>,
    /// Records written back per origin topic.
    pub by_origin_topic: BTreeMap<String, u64>,
    /// The coordinates written back, in order.
    pub replayed: Vec<String>,
    /// Id of the configuration event (not for dry runs).
    pub event_id: Option<String>,
    /// Who authorized it.
    pub approval: Approval,
}

impl ReplaySummary {
    /// Returns the range as `p0:10-20,p3:4-4`.
    pub fn range_text(&self) -> String {
        self.range
            .iter()
            .map(|(p, (lo, hi))| format!("p{p}:{lo}-{hi}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}
