//! The alerter's state changelog: a compacted Kafka topic (`vigil.alerter.state` by default)
//! holding the latest version of every dedup / group mark, active alert and silence, so a
//! restarted alerter knows what it already told whom.
//!
//! Keys: `mark/<dedup key>`, `alert/<alert id>`, `silence/<silence id>`. Values: a small JSON
//! document with `"v": 1`, wall-clock times in ms since the epoch ([`crate::state::document`]).
//! Removal, expiry and eviction write a tombstone (null value) so compaction drops the key.
//! Writes are enqueued while the [`AlertBook`](crate::state::AlertBook) lock is held, so the
//! topic sees mutations in the order they happened; callers collect them in a [`Pending`] and
//! wait for the broker's acks before storing an offset or answering an API call
//! ([`crate::state::writer`]).
//!
//! This module reads the topic back, on top of the state: at start ([`read_snapshot`],
//! [`decode_snapshot`]), then continuously. Each record carries the header
//! [`INSTANCE_HEADER`] naming the alerter instance that wrote it (a random id drawn at start).
//! After [`read_snapshot`] each instance keeps reading the topic from the snapshot's end
//! offsets with a [`Follower`] and applies the writes of the other instances
//! ([`follow_record`]); records without the header (written before it existed) are applied
//! too. The topic's order is the order of the state: the last write of a key wins. Partitions
//! added to the topic after the start are not followed (it has one).

mod follower;
mod snapshot;

pub use follower::{Followed, Follower, follow_record};
pub use snapshot::{RestoreError, Snapshot, decode_snapshot, read_snapshot};

// The documents and the writer belong to the state (which this module depends on, never the
// reverse); they are also reachable here, where the topic's format is described.
pub use crate::state::document::{
    AlertDoc, ChangelogError, EscalationDoc, MAX_VALUE_BYTES, MarkDoc, OriginDoc, SilenceDoc,
    StateKey, StateValue, VERSION, decode, encode,
};
pub use crate::state::writer::{Changelog, INSTANCE_HEADER, Pending, StateWriteError};
