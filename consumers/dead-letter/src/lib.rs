//! Vigil dead-letter tooling: stats, inspection and approved replay.
//!
//! Everything read from the DLQ is treated as hostile: a record whose runtime headers are
//! missing or garbled is shown and counted as `unknown`, never a panic, and is never replayed
//! (its origin is not known).
//!
//! - [`scan`]: a bounded, read-only pass over the DLQ (an `assign()`ed consumer that never
//!   commits): it seeks with `offsets_for_times` when a start time is given and stops at the end
//!   offsets captured when it started, so it never consumes forever.
//! - [`stats`], [`inspect`]: counts by error class, origin topic and hour; one record's headers
//!   and decoded value (or a bounded hexdump).
//! - [`plan`]: maker-checker. A planner signs the exact set of DLQ coordinates (with a digest of
//!   each record); an approver holding a *different* key executes exactly that set.
//! - [`replay`]: writes the original key, value and headers back to the origin topic with a
//!   `vigil-replayed-from` header, rate-limited, idempotent through a replay ledger written in
//!   the same Kafka transaction as the records, and recorded as a signed `configuration` event.
//!
//! **Delivery guarantee of a replay: exactly-once per DLQ record and ledger.** A DLQ record is
//! replayed at most once per ledger topic: its ledger entry commits atomically with the
//! replayed record, the replay reads the ledger only after its transactional id has fenced any
//! earlier replayer of the same DLQ, and skips what the ledger holds.

pub mod config;
pub mod error;
pub mod event;
pub mod filter;
pub mod inspect;
pub mod ledger;
pub mod plan;
pub mod record;
pub mod replay;
pub mod scan;
pub mod stats;
pub mod summary;

pub use config::{DEFAULT_LEDGER_TOPIC, DEFAULT_MAX_RECORDS, DlqConfig, REPLAYED_FROM};
pub use error::DlqError;
pub use filter::Filter;
pub use plan::{PlanEntry, ReplayPlan};
pub use record::{Coordinate, DeadLetter};
pub use replay::ReplayOptions;
pub use scan::{Selection, scan};
pub use stats::Stats;
pub use summary::{Approval, ReplaySummary};
/// The runtime's dead-letter header block, re-exported for tools that build DLQ records.
pub use vigil_consumer::{DeadLetterHeaders, ErrorClass};
