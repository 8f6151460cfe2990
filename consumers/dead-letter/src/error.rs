//! The errors of the dead-letter tooling.

/// Errors of the dead-letter tooling.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// A Kafka call failed.
    #[error("kafka: {context}")]
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
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key could not be loaded.
    #[error("signing key")]
    Signing(#[from] vigil_schemas::SigningError),
    /// The schema registry failed.
    #[error("schema registry")]
    Registry(#[from] vigil_schemas::RegistryError),
    /// An event could not be encoded.
    #[error("encoding")]
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
