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

pub mod event;
pub mod filter;
pub mod inspect;
pub mod ledger;
pub mod plan;
pub mod record;
pub mod replay;
pub mod scan;
pub mod stats;

use std::time::Duration;

use vigil_topology::KafkaClientConfig;

pub use filter::Filter;
pub use plan::{PlanEntry, ReplayPlan};
pub use record::{Coordinate, DeadLetter};
pub use replay::{ReplayOptions, ReplaySummary};
pub use scan::{Selection, scan};
pub use stats::Stats;
/// The runtime's dead-letter header block, re-exported for tools that build DLQ records.
pub use vigil_consumer::{DeadLetterHeaders, ErrorClass};

/// Header added to every replayed record: `<dlq topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = "vigil-replayed-from";
/// Default replay ledger topic (compacted, keyed by `<dlq topic>/<partition>/<offset>`).
pub const DEFAULT_LEDGER_TOPIC: &str = "vigil.dlq.replays";
/// Default bound on the records one command reads into memory (list, replay, plan).
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// Where the tooling reads and writes.
#[derive(Debug, Clone)]
pub struct DlqConfig {
    /// Kafka client settings.
    pub kafka: KafkaClientConfig,
    /// The dead-letter topic read.
    pub dlq_topic: String,
    /// The replay ledger topic.
    pub ledger_topic: String,
    /// Where replay configuration events go.
    pub events_topic: String,
    /// Upper bound of any one scan or broker round trip sequence.
    pub timeout: Duration,
    /// Upper bound of the records one command holds in memory.
    pub max_records: usize,
}

impl DlqConfig {
    /// Returns the defaults for the given Kafka settings (`vigil.dlq`, `vigil.dlq.replays`,
    /// `vigil.events.raw`, 60 s, [`DEFAULT_MAX_RECORDS`]).
    pub fn new(kafka: KafkaClientConfig) -> Self {
        Self {
            kafka,
            dlq_topic: vigil_schemas::topics::DLQ.to_owned(),
            ledger_topic: DEFAULT_LEDGER_TOPIC.to_owned(),
            events_topic: vigil_schemas::topics::EVENTS_RAW.to_owned(),
            timeout: Duration::from_secs(60),
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

/// Errors of the dead-letter tooling.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// A Kafka call failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client error.
        source: rdkafka::error::KafkaError,
    },
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    /// A bounded operation did not finish in time.
    #[error("timed out after {secs} s while {what}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The bound.
        secs: u64,
    },
    /// More records matched than one command may hold.
    #[error(
        "more than {0} records match; narrow the filters (--error-class, --origin-topic, --from, --to)"
    )]
    TooMany(usize),
    /// A command-line or plan value is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A plan was refused (bad signature, self-approval, tampering, changed records).
    #[error("plan refused: {0}")]
    Refused(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key could not be loaded.
    #[error("signing key: {0}")]
    Signing(#[from] vigil_schemas::SigningError),
    /// The schema registry failed.
    #[error("schema registry: {0}")]
    Registry(#[from] vigil_schemas::RegistryError),
    /// An event could not be encoded.
    #[error("encoding: {0}")]
    Wire(#[from] vigil_schemas::WireError),
    /// Another replay of the same DLQ took over this replay's transactional id.
    #[error(
        "another replay of {0} started and fenced this one; nothing of the open batch was written, re-run to continue"
    )]
    Fenced(String),
}

impl DlqError {
    /// Wraps a Kafka error with what was being done.
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        DlqError::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// Returns a read-only consumer: assigned partitions only, never commits, read_committed.
pub(crate) fn reader(
    kafka: &KafkaClientConfig,
) -> Result<rdkafka::consumer::BaseConsumer, DlqError> {
    let group = format!("vigil-dlq-reader-{}", uuid::Uuid::new_v4().simple());
    let mut config = kafka.consumer(&group);
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    config
        .create()
        .map_err(|e| DlqError::kafka("creating the dlq reader", e))
}
