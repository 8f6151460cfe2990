//! Vigil producer SDK: platforms emit signed verification events without ever blocking on Kafka.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vigil_producer::{Emitter, EmitterConfig};
//! use vigil_schemas::{EventSigner, RecordSigner, SchemaId, VerificationEvent};
//! use vigil_topology::KafkaClientConfig;
//!
//! let signer = EventSigner::from_pkcs8_pem_file("/etc/vigil/signing.pem")?;
//! let records = RecordSigner::new(signer, SchemaId(1))?;
//! let emitter = Emitter::start(
//!     &EmitterConfig::new("/var/lib/vigil/spool"),
//!     &KafkaClientConfig::from_env(),
//!     records,
//!     None,
//! )?;
//! # let event: VerificationEvent = todo!();
//! emitter.emit(event)?; // returns at once
//! emitter.close();      // flushes, spools what the broker did not take
//! # Ok(()) }
//! ```
//!
//! - [`Emitter`]: bounded queue → encode/sign thread → idempotent producer; disk spool when the
//!   broker is unreachable or the queue is full, replayed in order.
//! - [`spool`]: the crash-safe, length + CRC framed segment spool.
//! - [`schema_id`]: registers the event schema and caches its id beside the spool, so an emitter
//!   starts even while the registry is down.
//! - [`trace`]: trace context from the current `tracing` span.
//! - [`draft`]: event completion from JSON, shared by the CLI and the SDK bindings.
//! - [`sdk`]: the one core under the Python and Node.js SDKs (options, key, errors with codes).

pub mod config;
pub mod draft;
pub mod emitter;
mod internal_events;
pub mod metrics;
pub mod record;
pub mod schema_id;
pub mod sdk;
pub mod spool;
pub mod trace;

pub use config::{ConfigError, EmitterConfig};
pub use emitter::{EmitError, Emitter, EmitterError, FlushReport, QueueFull};
pub use metrics::{DropReason, ProducerMetrics};
pub use record::PendingRecord;
pub use trace::{TraceContextLayer, child_span, current_trace};
