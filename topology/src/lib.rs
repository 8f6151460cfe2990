//! Vigil's topic topology, Kafka client configuration and the telemetry every service shares.
//!
//! - [`topics`]: `topology/topics.yaml`, parsed and validated with file and line in every error.
//! - [`config_file`]: one way to read a service's config file and apply `VIGIL_*` overrides.
//! - [`admin`]: plan and apply the declared topology through the Kafka Admin API.
//! - [`kafka`]: bounded, explicit librdkafka configuration for producers and consumers.
//! - [`telemetry`]: tracing, the Prometheus registry and the `/metrics` `/healthz` `/readyz` server.

pub mod admin;
pub mod config_file;
pub mod kafka;
pub mod telemetry;
pub mod topics;

pub use admin::{AdminError, Change, Conflict, Plan, TopologyAdmin};
pub use kafka::{KafkaClientConfig, KafkaConfigError};
pub use telemetry::{Health, InternalEvent, LogFormat, Telemetry};
pub use topics::{ReplicationOverride, TopicSpec, Topology, TopologyError};
