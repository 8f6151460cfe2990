//! Assembles the Vigil services in one process under a namespace.
//!
//! A [`Namespace`] names one throwaway copy of the pipeline: topics `<name>.*` (the built-in
//! topology renamed), consumer groups `<name>-<service>`, a ClickHouse database `<name>` with
//! `_` for `-`. [`PipelineConfig`] says which services run and how (each service's own config
//! struct, prefilled for the namespace); [`Pipeline::start`] builds and spawns them as tokio
//! tasks that share one stop switch, [`Pipeline::ready`] waits for their `/readyz` state and
//! [`Pipeline::stop`] stops them and returns what each did. [`apply_topology`] creates the
//! namespace's topics and [`teardown`] deletes them again with their schema subjects and the
//! database.
//!
//! These are the same libraries `vigil run <service>` runs; `vigil demo`, the whole-pipeline
//! tests and the emit → webhook bench assemble them here. No service crate depends on this one.

mod config;
mod error;
mod namespace;
mod running;
mod teardown;
mod topology;

pub use config::{AuditSinkSetup, Endpoints, PipelineConfig};
pub use error::{PipelineError, ServiceError, StopError, TopologyStep};
pub use namespace::Namespace;
pub use running::{Pipeline, RunningService, ServiceKind, ServiceStop, ServiceSummary};
pub use teardown::{TeardownReport, teardown};
pub use topology::apply_topology;
