//! Vigil event contract: Avro schemas, typed model, Confluent wire codec, Ed25519 signing.
//!
//! Every other Vigil crate builds on this one. The pieces, in the order an event travels:
//!
//! - [`schema`]: the `.avsc` files under `schemas/avro/`, embedded and parsed once.
//! - [`model`]: serde types mirroring those schemas field for field ([`VerificationEvent`],
//!   [`VerifiedEvent`], [`KeyStatus`], [`Alert`]).
//! - [`codec`]: Avro encoding through apache-avro's direct serde path, decoding with schema
//!   resolution when the writer used another schema version.
//! - [`wire`]: Confluent framing (magic byte, 4-byte schema id, body) with every length checked.
//! - [`signing`]: Ed25519 keys from standard PEM files, signing and (batch) verification.
//! - [`headers`]: Kafka header names, [`RecordSigner`] building a signed record, and the
//!   parser for incoming signature headers.
//! - [`registry`]: a caching Confluent schema registry client (async, no runtime of its own).
//! - [`vectors`]: canonical test vectors the Python and JavaScript SDKs must reproduce.
//!
//! The crate is pure: no Kafka client and no async runtime. Hostile bytes give typed errors that
//! carry an [`ErrorClass`], never a panic.

pub mod admin;
pub mod chain;
pub mod codec;
pub mod error;
pub mod headers;
pub mod model;
pub mod registry;
pub mod schema;
pub mod signing;
pub mod topics;
pub mod vectors;
pub mod verdict;
pub mod wire;

pub use admin::{Refusal, TrustAnchorError, TrustAnchors};
pub use chain::{ErrorChain, error_chain};
pub use codec::{AvroRecord, Codec, WriterSchema};
pub use error::ErrorClass;
pub use headers::{HeaderError, RecordSigner, SignatureHeaders, SignedRecord};
pub use model::{
    Alert, DigitalSignature, EventClass, KeyState, KeyStatus, Platform, Producer, Severity,
    SignatureState, Status, Subject, Trace, VerificationEvent, VerifiedEvent,
};
pub use registry::{RegistryError, SchemaRegistry};
pub use signing::{EventSigner, KeyId, PublicKey, Signature, SigningError};
pub use verdict::{VerdictEncoder, VerdictFields};
pub use wire::{SchemaId, WireError};
