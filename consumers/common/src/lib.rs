//! Vigil consumer runtime: the loop every Vigil service consumes through.
//!
//! **Delivery guarantee: at-least-once.** `enable.auto.offset.store=false`; a record's offset is
//! stored only after the record is finished — handled, rejected, or written with the broker's
//! acknowledgement to the DLQ or a delayed retry topic — and offsets are stored in order per
//! partition, then committed in the background, on partition revoke and on shutdown. A record
//! handled but not yet committed when the process dies is handled again, so handlers must be
//! idempotent (key side effects by `event_id`).
//!
//! - Ordering: one worker per assigned partition starts its records' handler calls in offset
//!   order (so per key in order); partitions run concurrently. With `pipeline_depth` 1 (the
//!   default) a record is handled only after the previous one finished. With a deeper pipeline
//!   up to that many calls of a partition overlap and may complete out of order; offsets are
//!   still stored strictly in order (a record's offset only once it and every earlier record
//!   finished), and side effects a handler issues inside its [`Turn`] keep the partition's order.
//!   Records whose side effects happened but whose offsets were not stored yet (re-delivered
//!   after a crash, besides stored-but-uncommitted ones) number at most `pipeline_depth` per
//!   partition. A record parked in a retry topic
//!   is retried after later records of its key, by design of delayed retries.
//! - Errors ([`ErrorClass`]): `bad_data` goes to the DLQ at once; `transient` is retried with
//!   exponential backoff and full jitter, then through the `vigil.retry.*` topics, then to the
//!   DLQ; `internal` stops the run with an error without storing the offset. `rejected` is a
//!   successful [`Outcome`].
//! - Assignment: [`Handler::partitions_assigned`] and [`Handler::partitions_revoked`] tell the
//!   handler which partitions (of the source and retry topics) it holds, in rebalance order,
//!   from the runtime's task (not librdkafka's callback), also when no record arrives; the end
//!   of a run revokes what is still held.
//! - Bounded: librdkafka's prefetch (`queued.max.messages.kbytes` from
//!   [`vigil_topology::KafkaClientConfig`]), and each partition's queue
//!   (`max_in_flight_per_partition`), beyond which the partition is paused.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vigil_consumer::{ConsumerRuntime, HandleError, Handler, InboundRecord, Outcome, RuntimeConfig};
//!
//! struct Verifier;
//! impl Handler for Verifier {
//!     async fn handle(&self, record: &InboundRecord) -> Result<Outcome, HandleError> {
//!         let _bytes = record.value.as_deref().ok_or_else(|| HandleError::bad_data("tombstone"))?;
//!         Ok(Outcome::Handled)
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = vigil_topology::Telemetry::new();
//! let kafka = vigil_topology::KafkaClientConfig::from_env();
//! let config = RuntimeConfig::new("verifier", "vigil-verifier", vec!["vigil.events.raw".into()]);
//! let runtime = ConsumerRuntime::new(config, &kafka, &telemetry)?;
//! let summary = runtime.run(Arc::new(Verifier), vigil_consumer::shutdown_signal()).await?;
//! println!("{summary:?}");
//! # Ok(())
//! # }
//! ```

mod config;
mod context;
pub mod dead_letter;
mod handler;
mod internal_events;
pub mod key_plan;
pub mod key_registry;
mod metrics;
mod outcome;
mod runtime;
mod service_config;
mod shutdown;
mod worker;

pub use config::{ConfigError, Jitter, RetryPolicy, RetryTopic, RuntimeConfig};
pub use dead_letter::{DeadLetterHeaderError, DeadLetterHeaders};
pub use handler::{ErrorClass, HandleError, Handler, InboundRecord, Outcome, RecordHeader, Turn};
pub use metrics::ConsumerMetrics;
pub use outcome::{ParkError, RunSummary, RuntimeError};
pub use runtime::ConsumerRuntime;
pub use service_config::{ConsumerConfig, ConsumerDefaults, ServiceConfigError};
pub use shutdown::shutdown_signal;
