//! Errors of the audit sink, classified like every Vigil error.

use vigil_schemas::error::ErrorClass;

/// What went wrong in the audit sink or its tools.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A config key is missing or out of range.
    #[error("invalid config: {key}: {reason}")]
    Config {
        /// The offending key.
        key: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The sink's configuration is unusable (file, key or value).
    #[error(transparent)]
    Settings(#[from] crate::config::ConfigError),
    /// The sink's metrics could not be registered (already registered in this registry?).
    #[error("cannot register audit sink metrics")]
    Metrics(#[source] prometheus::Error),
    /// ClickHouse refused or failed a statement.
    #[error("clickhouse {what}")]
    ClickHouse {
        /// What the sink was doing.
        what: String,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// Kafka failed.
    #[error("kafka {what}")]
    Kafka {
        /// What the sink was doing.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The sink's signing key could not be loaded.
    #[error("signing key: {0}")]
    SigningKey(String),
    /// Stored state contradicts itself (e.g. a replay range no longer in Kafka).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
    /// Writing an export failed.
    #[error("export")]
    Io(#[from] std::io::Error),
}

impl AuditError {
    /// Returns the Vigil error class: ClickHouse outages and network errors are transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuditError::ClickHouse { source, .. } => clickhouse_class(source),
            AuditError::Kafka { .. } => ErrorClass::Transient,
            AuditError::Config { .. } | AuditError::Settings(_) | AuditError::SigningKey(_) => {
                ErrorClass::BadData
            }
            AuditError::Inconsistent(_) | AuditError::Io(_) | AuditError::Metrics(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// Wraps a ClickHouse error with what the sink was doing.
    pub fn clickhouse(what: impl Into<String>, source: clickhouse::error::Error) -> Self {
        AuditError::ClickHouse {
            what: what.into(),
            source,
        }
    }
}

/// Returns whether a ClickHouse failure is worth retrying (network, timeout, overload).
pub fn clickhouse_class(e: &clickhouse::error::Error) -> ErrorClass {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => ErrorClass::Transient,
        E::BadResponse(text) => {
            // Codes that mean "try again later": too many parts, memory limit, timeouts,
            // server shutting down, table read-only on a replica, keeper unavailable.
            const RETRYABLE: [&str; 9] = [
                "Code: 252.",
                "Code: 241.",
                "Code: 159.",
                "Code: 209.",
                "Code: 210.",
                "Code: 242.",
                "Code: 999.",
                "Code: 202.",
                "Code: 3.",
            ];
            if RETRYABLE.iter().any(|c| text.starts_with(c)) || !text.starts_with("Code:") {
                ErrorClass::Transient
            } else {
                ErrorClass::Internal
            }
        }
        _ => ErrorClass::Internal,
    }
}
