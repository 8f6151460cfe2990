//! Vigil audit sink: exactly-once, hash-chained audit trail in ClickHouse.
//!
//! Delivery guarantee: exactly-once from `vigil.events.verified` into `audit_events`. The sink's
//! offsets live in ClickHouse (`sink_offsets`), written as a write-ahead intent before each
//! batch; every batch insert carries a deterministic `insert_deduplication_token`, and on start
//! the last batch is replayed with the same token before consumption resumes after ClickHouse's
//! offsets (Kafka's committed offsets are never used).
//!
//! Tamper evidence: a SHA-256 chain per Kafka partition over every stored column, and periodic
//! digests of the chain heads signed by the sink's own Ed25519 key (see [`chain`], [`digest`],
//! [`verify`]).

pub mod chain;
pub mod config;
pub mod digest;
pub mod error;
pub mod export;
pub mod metrics;
pub mod migrations;
pub mod queries;
pub mod row;
pub mod sink;
pub mod store;
pub mod verify;

pub use config::AuditSinkConfig;
pub use error::AuditError;
pub use sink::AuditSink;
pub use store::AuditStore;
pub use verify::{VerifyOptions, VerifyReport};
