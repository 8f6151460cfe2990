//! The one core under the Python and Node.js SDKs: options as the bindings pass them (JSON
//! with the same keys in both languages), the signing key from a file or an environment
//! variable, the schema id resolved (and cached beside the spool), event completion from
//! [`crate::draft`], and errors with a stable `code` each binding maps to its own idiom.
//! Nothing here is written twice in the bindings: they convert types and hold the GIL or the
//! event loop's thread as briefly as they can.

use std::path::PathBuf;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use vigil_schemas::model::Platform;
use vigil_schemas::{
    EventSigner, KeyId, RecordSigner, SchemaId, SignedRecord, Trace, VerificationEvent,
};
use vigil_topology::KafkaClientConfig;

use crate::draft::{self, DraftError, ProducerDefaults};
use crate::emitter::{EmitError, Emitter, EmitterError, FlushReport, QueueFull};
use crate::metrics::ProducerMetrics;
use crate::schema_id::SchemaIdError;
use crate::{EmitterConfig, schema_id};

/// Options of an SDK emitter, as JSON from a binding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdkOptions {
    /// The emitting service, filled into each event's `producer.service`.
    pub service: String,
    /// Key id the signatures name (`vigil-key-id`).
    pub key_id: String,
    /// Ed25519 signing key, PKCS#8 PEM file.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Name of an environment variable holding the PKCS#8 PEM text (exclusive with the file).
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// Kafka bootstrap servers; `VIGIL_KAFKA_BOOTSTRAP` or the local stack when absent.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Schema registry URL; `VIGIL_SCHEMA_REGISTRY_URL` or the local stack when absent.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Host name for `producer.host`; this machine's when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Queue, spool and delivery settings (the Rust SDK's [`EmitterConfig`], same keys).
    pub emitter: EmitterConfig,
}

impl SdkOptions {
    /// Parses the options a binding passes.
    pub fn from_json(text: &str) -> Result<Self, SdkError> {
        serde_json::from_str(text).map_err(|e| SdkError::Config(e.to_string()))
    }

    fn signer(&self) -> Result<EventSigner, SdkError> {
        let pem = match (&self.signing_key_file, &self.signing_key_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| SdkError::SigningKey(format!("reading {}: {e}", path.display())))?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                SdkError::SigningKey(format!("environment variable {var} is not set"))
            })?,
            (Some(_), Some(_)) => {
                return Err(SdkError::Config(
                    "give signing_key_file or signing_key_env, not both".into(),
                ));
            }
            (None, None) => {
                return Err(SdkError::Config(
                    "a signing key is needed: signing_key_file or signing_key_env".into(),
                ));
            }
        };
        let key_id =
            KeyId::new(&self.key_id).map_err(|e| SdkError::Config(format!("key_id: {e}")))?;
        // The PEM text never reaches an error message or a log line.
        Ok(EventSigner::from_pkcs8_pem(&pem)
            .map_err(|e| SdkError::SigningKey(e.to_string()))?
            .with_key_id(key_id))
    }

    fn registry_url(&self) -> String {
        self.schema_registry_url.clone().unwrap_or_else(|| {
            std::env::var("VIGIL_SCHEMA_REGISTRY_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8081".to_owned())
        })
    }

    fn kafka(&self) -> KafkaClientConfig {
        match &self.bootstrap_servers {
            Some(servers) => KafkaClientConfig::new(servers),
            None => KafkaClientConfig::from_env(),
        }
    }
}

/// Why an SDK call failed; [`SdkError::code`] is what the bindings expose.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The options are invalid.
    #[error("invalid options: {0}")]
    Config(String),
    /// The signing key could not be read or parsed.
    #[error("signing key: {0}")]
    SigningKey(String),
    /// No schema id: the registry refused or was unreachable with nothing cached.
    #[error("resolving the event schema id")]
    SchemaRegistry(#[source] SchemaIdError),
    /// The emitter could not start (spool, Kafka client, threads).
    #[error("starting the emitter")]
    Start(#[source] EmitterError),
    /// The event is not a valid `VerificationEvent`.
    #[error(transparent)]
    InvalidEvent(#[from] DraftError),
    /// The event could not be encoded or signed.
    #[error("encoding the event: {0}")]
    Encode(String),
    /// The emitter is closed.
    #[error("emitter is closed")]
    Closed,
    /// Queue full and the spool refused the event: it is lost, and counted.
    #[error("{0}")]
    Dropped(String),
}

impl SdkError {
    /// A stable, lowercase code for the bindings (`err.code` in Node, the exception class in
    /// Python).
    pub fn code(&self) -> &'static str {
        match self {
            SdkError::Config(_) => "config",
            SdkError::SigningKey(_) => "signing_key",
            SdkError::SchemaRegistry(_) => "schema_registry",
            SdkError::Start(_) => "start",
            SdkError::InvalidEvent(_) => "invalid_event",
            SdkError::Encode(_) => "encode",
            SdkError::Closed => "closed",
            SdkError::Dropped(_) => "dropped",
        }
    }

    /// The message with its whole source chain, for a binding's exception text.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }
}

impl From<EmitError> for SdkError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Closed => SdkError::Closed,
            EmitError::Dropped(why) => SdkError::Dropped(format!("event dropped: {why}")),
        }
    }
}

/// An emitter started from [`SdkOptions`], taking events as JSON drafts.
pub struct SdkEmitter {
    emitter: Emitter,
    defaults: ProducerDefaults,
    registry: Registry,
}

impl SdkEmitter {
    /// Reads the key, resolves the schema id (a blocking registry call, or the id cached in
    /// the spool directory when the registry is down) and starts the emitter. Records a dead
    /// process left in the spool are replayed once the broker answers.
    pub fn start(
        options: &SdkOptions,
        platform: Platform,
        sdk_version: &str,
    ) -> Result<Self, SdkError> {
        let signer = options.signer()?;
        options
            .emitter
            .validate()
            .map_err(|e| SdkError::Config(e.to_string()))?;
        std::fs::create_dir_all(&options.emitter.spool_dir).map_err(|e| {
            SdkError::Config(format!(
                "spool_dir {}: {e}",
                options.emitter.spool_dir.display()
            ))
        })?;
        let schema_id = resolve_blocking(&options.registry_url(), &options.emitter.spool_dir)?;
        let records =
            RecordSigner::new(signer, schema_id).map_err(|e| SdkError::Encode(e.to_string()))?;
        let registry = Registry::new();
        let emitter = Emitter::start(&options.emitter, &options.kafka(), records, Some(&registry))
            .map_err(SdkError::Start)?;
        Ok(Self {
            emitter,
            defaults: ProducerDefaults {
                platform,
                sdk_version: sdk_version.to_owned(),
                service: options.service.clone(),
                host: options.host.clone().or_else(host_name),
            },
            registry,
        })
    }

    /// Completes the draft and hands it to the emitter; returns at once (a full queue spills
    /// to the spool on the caller's thread: a local append, no network wait). `parent` is the
    /// binding's current trace context (OpenTelemetry's, or its own): a draft without a
    /// `trace` gets a span of its own in that trace ([`draft::adopt_trace`]).
    pub fn emit_json(&self, text: &str, parent: Option<&Trace>) -> Result<(), SdkError> {
        match self.try_emit_json(text, parent)? {
            None => Ok(()),
            Some(full) => self.spill(full),
        }
    }

    /// The fast half of [`SdkEmitter::emit_json`]: completes and queues the draft, or returns
    /// it when the queue is full, for [`SdkEmitter::spill`] outside the interpreter lock.
    pub fn try_emit_json(
        &self,
        text: &str,
        parent: Option<&Trace>,
    ) -> Result<Option<QueueFull>, SdkError> {
        let event = draft::complete_json(text, Some(&self.defaults))?;
        self.try_emit_event(event, parent)
    }

    /// [`SdkEmitter::try_emit_json`] for an event a binding completed from its own objects
    /// ([`draft::complete_from`] with [`SdkEmitter::defaults`]).
    pub fn try_emit_event(
        &self,
        mut event: VerificationEvent,
        parent: Option<&Trace>,
    ) -> Result<Option<QueueFull>, SdkError> {
        if let Some(parent) = parent {
            draft::adopt_trace(&mut event, parent)?;
        }
        Ok(self.emitter.try_enqueue(event)?)
    }

    /// What this emitter fills into a draft's producer block.
    pub fn defaults(&self) -> &ProducerDefaults {
        &self.defaults
    }

    /// The slow half: signs and spools an event the queue could not take.
    pub fn spill(&self, full: QueueFull) -> Result<(), SdkError> {
        Ok(self.emitter.spill(full.0)?)
    }

    /// Waits up to `timeout` until every event so far is acknowledged or in the spool.
    pub fn flush(&self, timeout: Duration) -> FlushReport {
        self.emitter.flush(timeout)
    }

    /// Stops accepting events, flushes, spools what the broker did not take.
    pub fn close(&self) -> FlushReport {
        self.emitter.close()
    }

    /// The emitter's metrics.
    pub fn metrics(&self) -> &ProducerMetrics {
        self.emitter.metrics()
    }

    /// The metrics in the Prometheus text format (the Rust SDK's names).
    pub fn metrics_text(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Signs a completed draft with a PEM key, without an emitter: what the canonical vectors
/// check each binding against. The key is checked before the draft.
pub fn sign_json(
    text: &str,
    signing_key_pem: &str,
    key_id: &str,
    schema_id: u32,
) -> Result<SignedRecord, SdkError> {
    let signer = record_signer(signing_key_pem, key_id, schema_id)?;
    let event = draft::complete_json(text, None)?;
    sign_with(&signer, &event)
}

/// [`sign_json`] for an event a binding completed from its own objects
/// ([`draft::complete_from`]).
pub fn sign_event(
    event: &VerificationEvent,
    signing_key_pem: &str,
    key_id: &str,
    schema_id: u32,
) -> Result<SignedRecord, SdkError> {
    sign_with(&record_signer(signing_key_pem, key_id, schema_id)?, event)
}

fn record_signer(
    signing_key_pem: &str,
    key_id: &str,
    schema_id: u32,
) -> Result<RecordSigner, SdkError> {
    let key_id = KeyId::new(key_id).map_err(|e| SdkError::Config(format!("key_id: {e}")))?;
    let signer = EventSigner::from_pkcs8_pem(signing_key_pem)
        .map_err(|e| SdkError::SigningKey(e.to_string()))?
        .with_key_id(key_id);
    RecordSigner::new(signer, SchemaId(schema_id)).map_err(|e| SdkError::Encode(e.to_string()))
}

fn sign_with(signer: &RecordSigner, event: &VerificationEvent) -> Result<SignedRecord, SdkError> {
    signer
        .sign(event)
        .map_err(|e| SdkError::Encode(e.to_string()))
}

fn resolve_blocking(url: &str, spool_dir: &std::path::Path) -> Result<SchemaId, SdkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SdkError::Config(format!("starting the registry client: {e}")))?;
    runtime
        .block_on(schema_id::resolve(url, spool_dir))
        .map_err(SdkError::SchemaRegistry)
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_unknown_keys_and_need_one_key_source() {
        let e = SdkOptions::from_json(
            r#"{"service":"s","key_id":"k","emitter":{"spool_dir":"/tmp/x"},"colour":1}"#,
        )
        .expect_err("unknown key");
        assert!(e.to_string().contains("colour"), "{e}");
        assert_eq!(e.code(), "config");
        let o = SdkOptions::from_json(
            r#"{"service":"s","key_id":"k","emitter":{"spool_dir":"/tmp/x"}}"#,
        )
        .expect("valid");
        assert_eq!(o.signer().expect_err("no key").code(), "config");
        let o = SdkOptions::from_json(
            r#"{"service":"s","key_id":"k","signing_key_env":"VIGIL_TEST_SURELY_UNSET_KEY","emitter":{"spool_dir":"/tmp/x"}}"#,
        )
        .expect("valid");
        let e = o.signer().expect_err("unset");
        assert_eq!(e.code(), "signing_key");
    }

    #[test]
    fn a_bad_pem_says_so_without_echoing_it() {
        let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXRleHQ=\n-----END PRIVATE KEY-----\n";
        let e = sign_json("{}", secret, "k", 1).expect_err("bad key");
        assert_eq!(e.code(), "signing_key");
        assert!(!e.chain().contains("c2VjcmV0"), "{}", e.chain());
    }

    #[test]
    fn sign_json_reproduces_the_canonical_vector() {
        let v = vigil_schemas::vectors::generate().expect("vectors");
        let text = serde_json::to_string(&v.event).expect("json");
        let r = sign_json(&text, &v.signing_key_pem, &v.key_id, v.schema_id).expect("signed");
        assert_eq!(hex::encode(&r.value), v.value_hex);
        assert_eq!(hex::encode(&r.key), v.record_key_hex);
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), hex::encode(v)))
            .collect();
        let expected: Vec<(String, String)> = v
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value_hex.clone()))
            .collect();
        assert_eq!(headers, expected);
    }
}
