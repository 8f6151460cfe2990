//! Vigil correlator: Sigma detection and correlation rules over verified events.
//!
//! **Engine decision.** Sigma detection and v2 correlation (`event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, group-by, timespan) run in `rsigma-eval` / `rsigma-parser`
//! 0.23 (MIT; 0.24+ need rustc 1.96). Measured on this machine (1 core, release): 720 k
//! events/s through a 6-rule pack over flat JSON maps, snapshot export/import of window state
//! built in, bounded state (`max_state_entries`) built in. Implementing the subset ourselves
//! would cost more and match the specification less faithfully. Vigil adds what Sigma lacks,
//! `correlation.type: absence` ("A not followed by B within T"), in [`engine`].
//!
//! **Delivery: at-least-once.** A verified record's offset is stored only after every alert it
//! completed was acknowledged on the alerts topic. **State across restarts and failover**: on
//! start the correlator replays the verified topic from `max timespan + allowed lateness` before
//! now up to the group's committed offsets, feeding windows without emitting (those alerts were
//! emitted before the restart), so a half-filled window survives a restart. When the consumer
//! group assigns it verified partitions it did not hold (a standby taking over from a dead
//! active instance, any rebalance), it rebuilds fresh windows the same way for its whole
//! assignment (one engine serves all its partitions) on a blocking thread, while the records
//! wait; the fresh windows then replace the live ones, keeping the live rule pack. The first
//! assignment after start is not rebuilt again when its committed offsets are still those the
//! start-up replay ran to. A failed or timed-out rebuild is logged and counted
//! (`vigil_correlator_rebuilds_total{result="failed"}`) and the previous windows keep running.
//! Events the previous owner evaluated after its last commit are evaluated again: an alert they
//! completed is produced twice, with the same `fingerprint` (rule id plus group key, see
//! [`fingerprint`]) and a new `alert_id`, which the alerter's dedup window suppresses. Windows
//! only see the partitions an instance holds, so rules grouped by anything but the subject (the
//! verified record key) need a single active instance (docs/operations.md, "Scale partitions").

pub mod config;
pub mod engine;
pub mod fields;
mod internal_events;
pub mod rules;
mod service;

pub use config::{ConfigError, CorrelatorConfig};
pub use engine::{Correlator, EngineSettings, EngineStats, fingerprint};
pub use rules::{RuleError, RulePack};
pub use service::{CorrelatorError, run};

#[cfg(test)]
mod tests;
