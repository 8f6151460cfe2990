//! How a run ends: the [`RunSummary`] of a clean stop, or the [`RuntimeError`] that stopped it.
//!
//! A leaf module: the loop (`runtime`) and the partition workers (`worker`) both report through
//! these types, so neither has to import the other's.

use rdkafka::error::KafkaError;
use vigil_topology::KafkaConfigError;

use crate::config::ConfigError;

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka client configuration is invalid.
    #[error(transparent)]
    KafkaConfig(#[from] KafkaConfigError),
    /// The metrics could not be registered (already registered in this registry?).
    #[error("cannot register consumer metrics")]
    Metrics(#[source] prometheus::Error),
    /// A Kafka client could not be created or subscribed.
    #[error("kafka: cannot {what}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The handler reported an internal error (a bug); the record's offset was not stored.
    #[error("internal error handling {topic}/{partition}@{offset}: {message}")]
    Internal {
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// The handler's message.
        message: String,
    },
    /// A partition worker ended without being told to (a bug in the runtime); its partition's
    /// unfinished records were not stored.
    #[error("worker of {topic}/{partition} stopped unexpectedly")]
    WorkerStopped {
        /// Topic of the partition.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A record could not be written to the DLQ or a retry topic and retrying cannot help; its
    /// offset was not stored.
    #[error(transparent)]
    Park(Box<ParkError>),
}

/// A record that could not be written to the DLQ or a retry topic.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {topic}/{partition}@{offset} to {target_topic}")]
pub struct ParkError {
    /// The DLQ or retry topic.
    pub target_topic: String,
    /// Topic of the record.
    pub topic: String,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// The producer's error.
    #[source]
    pub source: KafkaError,
}

/// What a run did, counted over all partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records handled successfully.
    pub handled: u64,
    /// Records the handler rejected (published as security events by the service).
    pub rejected: u64,
    /// Records written to the DLQ.
    pub dead_lettered: u64,
    /// Records moved to a delayed retry topic.
    pub retry_scheduled: u64,
    /// Retry records of other consumer groups passed over.
    pub skipped: u64,
    /// In-process retries after transient errors.
    pub in_process_retries: u64,
    /// Records read but left unfinished (shutdown, revoke, fatal error); their offsets were not
    /// stored, so they are read again.
    pub unfinished: u64,
}
