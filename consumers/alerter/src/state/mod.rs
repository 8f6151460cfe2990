//! The alerter's state: dedup and group marks, active (notified) alerts with their
//! acknowledgement and escalation progress, and silences. Every table is bounded.
//!
//! The tables live in memory and every mutation is also written to the state changelog
//! (a compacted topic, read back by the changelog module): at start the alerter reads it back
//! ([`AlertBook::restore`]), so dedup windows, acknowledgements, silences and escalation timers
//! survive a restart. Times inside are wall-clock ms since the epoch; `Instant`s are derived
//! from them when the book is rebuilt.
//!
//! Other instances' writes, read by the changelog follower, enter through
//! [`AlertBook::apply_remote`]: same decoding, expiry and bounds as the restore, memory only
//! (an applied write is never written again, so instances do not echo each other). The last
//! write of a key in topic order wins; an active alert merges instead (acknowledgement,
//! escalation progress, routes and group count only grow), because its owner may write it
//! again (a folded alert, a notified tier) before it has read another instance's ack. One
//! race remains: two instances writing the same key within one follow round trip (only around
//! a rebalance, or for an alert's owner and an ack elsewhere) each keep the other's value in
//! memory (for alerts, the merge of both) until the next write of that key, while the topic,
//! and so a restart, keeps the later one.
//!
//! One module per table, each an `impl AlertBook` over the tables of `book`: `marks` (dedup
//! and group), `active` alerts, `escalation` progress and timers, `silences`; then the
//! `restore` at start and the `remote` writes of other instances. Below them: [`document`],
//! the stored documents (a leaf), [`writer`], the write-through to the topic, and `entries`,
//! the in-memory entries built from the documents. No module uses one above it.

mod active;
mod book;
mod clock;
pub mod document;
mod entries;
mod escalation;
#[cfg(test)]
mod fixtures;
mod marks;
mod remote;
mod restore;
mod silences;
pub mod writer;

pub use book::AlertBook;
pub use document::Ack;
pub use entries::{Rearm, Silence};
pub use escalation::TimerStep;
pub use marks::{dedup_key, group_mark_key};
pub use remote::RemoteApplied;
pub use restore::Restored;
pub use silences::SilenceError;
