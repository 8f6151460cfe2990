//! Why assembling, starting, stopping or tearing down a pipeline failed.

use vigil_consumer::key_registry::KeyRegistryError;
use vigil_topology::{AdminError, TopologyError};

use crate::running::ServiceKind;

/// The step of [`crate::apply_topology`] that failed: after a failed `plan` nothing was
/// created, after a failed `apply` some topics may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyStep {
    /// Comparing the wanted topics with the cluster.
    Plan,
    /// Creating the missing topics.
    Apply,
}

impl std::fmt::Display for TopologyStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopologyStep::Plan => "plan",
            TopologyStep::Apply => "apply",
        })
    }
}

/// Why a pipeline could not be assembled, started or torn down.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The namespace name is not usable for topics, groups and a database.
    #[error("invalid namespace {name:?}: {reason}")]
    Namespace {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The built-in topology could not be read or adapted.
    #[error("topology")]
    Topology(#[source] TopologyError),
    /// Kafka refused a topology step.
    #[error("topology {step}")]
    Admin {
        /// The step.
        step: TopologyStep,
        /// Kafka's answer.
        #[source]
        source: AdminError,
    },
    /// Kafka did not answer a topology step in time.
    #[error("topology {step}: no answer from Kafka within {secs}s")]
    AdminTimeout {
        /// The step.
        step: TopologyStep,
        /// The time waited.
        secs: u64,
    },
    /// The key registry writer could not be created.
    #[error("key registry")]
    KeyRegistry(#[source] KeyRegistryError),
    /// The verifier could not be built.
    #[error("verifier")]
    Verifier(#[source] vigil_verifier::VerifierError),
    /// The correlator's configuration is invalid.
    #[error("correlator")]
    Correlator(#[source] vigil_correlator::ConfigError),
    /// The alerter's configuration is invalid.
    #[error("alerter config")]
    AlerterConfig(#[source] vigil_alerter::ConfigError),
    /// The alerter could not be built.
    #[error("alerter")]
    Alerter(#[source] vigil_alerter::AlerterError),
    /// A service's metrics could not be registered.
    #[error("cannot register {service} metrics")]
    Metrics {
        /// The service.
        service: ServiceKind,
        /// The registry's refusal.
        #[source]
        source: prometheus::Error,
    },
    /// The audit sink (or its ClickHouse store) could not be built.
    #[error("audit sink")]
    AuditSink(#[source] vigil_audit_sink::AuditError),
    /// A service's task ended before it became ready.
    #[error("{service} stopped during start-up")]
    StoppedDuringStartup {
        /// The service.
        service: ServiceKind,
    },
    /// Services were not ready in time.
    #[error("not ready after {secs}s: {waiting}")]
    NotReady {
        /// The time waited.
        secs: u64,
        /// The services still not ready, comma-separated.
        waiting: String,
    },
    /// A Kafka client could not be created or a request failed.
    #[error("kafka")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// Kafka refused to delete one topic.
    #[error("{topic}: {code}")]
    DeleteTopic {
        /// The topic.
        topic: String,
        /// Kafka's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The schema registry could not be reached or refused a request.
    #[error("schema registry")]
    SchemaRegistry(#[source] reqwest::Error),
    /// ClickHouse refused or failed a statement.
    #[error("clickhouse")]
    ClickHouse(#[source] clickhouse::error::Error),
    /// A request got no answer in time.
    #[error("no answer within {secs}s")]
    Timeout {
        /// The time waited.
        secs: u64,
    },
}

/// Why a running service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The verifier's error.
    #[error(transparent)]
    Verifier(vigil_verifier::VerifierError),
    /// The correlator's error.
    #[error(transparent)]
    Correlator(vigil_correlator::CorrelatorError),
    /// The alerter's error.
    #[error(transparent)]
    Alerter(vigil_alerter::AlerterError),
    /// The audit sink's error.
    #[error(transparent)]
    AuditSink(vigil_audit_sink::AuditError),
}

/// Why [`crate::Pipeline::stop`] got no summary from a service.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The service stopped with an error.
    #[error(transparent)]
    Failed(ServiceError),
    /// The service's task panicked or was cancelled.
    #[error(transparent)]
    Panicked(tokio::task::JoinError),
    /// The service did not stop in time; its task was aborted.
    #[error("did not stop within {secs}s")]
    TimedOut {
        /// The time waited.
        secs: u64,
    },
}
