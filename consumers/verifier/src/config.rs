//! `VerifierConfig`: one TOML file per deployment, `VIGIL_*` overrides for addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_consumer::{ConsumerConfig, ConsumerDefaults, RuntimeConfig};
use vigil_schemas::topics;
use vigil_topology::config_file::{self, ConfigFormat};

/// A configuration value that is out of range or unreadable, named by its key (the error type
/// every service's configuration shares).
pub use vigil_consumer::ServiceConfigError as ConfigError;

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid("verifier", key, reason)
}

/// How the verifier consumes, verifies and publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    /// The consumer keys every consumer service shares (Kafka, schema registry, group, DLQ,
    /// retry topics, bounds, timeouts), at the top of the table beside the verifier's own.
    /// `pipeline_depth` here is how many records of one partition are verified at once: their
    /// signature checks batch together and their produce acknowledgements overlap, while
    /// verdicts are still judged and written in the partition's order.
    #[serde(flatten, deserialize_with = "consumer_keys")]
    pub consumer: ConsumerConfig,
    /// Topic of signed raw events.
    #[serde(default = "default_raw_topic")]
    pub raw_topic: String,
    /// Topic the verdicts are written to.
    #[serde(default = "default_verified_topic")]
    pub verified_topic: String,
    /// Compacted key registry topic.
    #[serde(default = "default_keys_topic")]
    pub keys_topic: String,
    /// Administrator public keys whose signatures make key registry records trusted: an SPKI
    /// PEM file of one or more keys, or a folder of `*.pem` / `*.pub` files. Required
    /// (`VIGIL_TRUST_ANCHORS` overrides it).
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
    /// Migration window only: also apply unsigned key registry records, until `vigil keys
    /// adopt` has re-signed them (docs/operations.md, "Signed key registry").
    #[serde(default)]
    pub accept_unsigned_key_records: bool,
    /// Largest accepted distance between an event's `occurred_at` and the verifier's clock.
    #[serde(default = "default_max_clock_skew_ms")]
    pub max_clock_skew_ms: u64,
    /// Bound of the replay memory (key id + nonce, kept for the skew window); when full the
    /// oldest entries are evicted and counted.
    #[serde(default = "default_nonce_cache_max_entries")]
    pub nonce_cache_max_entries: usize,
    /// Largest signature batch handed to `verify_batch`; 1 verifies each record on its own.
    #[serde(default = "default_verify_batch_max")]
    pub verify_batch_max: usize,
    /// Largest raw value accepted, in bytes; larger ones are dead-lettered unverified.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// How long start-up waits for the key registry to load before giving up.
    #[serde(default = "default_key_registry_load_timeout_ms")]
    pub key_registry_load_timeout_ms: u64,
    /// Name written to `VerifiedEvent.verifier` (default: host name and process id).
    #[serde(default)]
    pub verifier_id: Option<String>,
}

/// The verifier's consumer defaults: group `vigil-verifier`, 64 records in flight and 64
/// verified at once per partition, offsets committed every 5 s, 30 s to shut down.
fn consumer_defaults() -> ConsumerDefaults {
    ConsumerDefaults {
        max_in_flight_per_partition: 64,
        pipeline_depth: 64,
        commit_interval_ms: 5_000,
        shutdown_timeout_ms: 30_000,
        ..ConsumerDefaults::runtime("vigil-verifier")
    }
}

fn consumer_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConsumerConfig, D::Error> {
    ConsumerConfig::deserialize_with_defaults(d, consumer_defaults())
}

fn default_raw_topic() -> String {
    topics::EVENTS_RAW.to_owned()
}
fn default_verified_topic() -> String {
    topics::EVENTS_VERIFIED.to_owned()
}
fn default_keys_topic() -> String {
    topics::KEYS.to_owned()
}
fn default_max_clock_skew_ms() -> u64 {
    300_000
}
fn default_nonce_cache_max_entries() -> usize {
    1_000_000
}
fn default_verify_batch_max() -> usize {
    64
}
fn default_max_value_bytes() -> usize {
    vigil_schemas::wire::DEFAULT_MAX_VALUE_BYTES
}
fn default_key_registry_load_timeout_ms() -> u64 {
    60_000
}

impl Default for VerifierConfig {
    // `unwrap_or_default()` here would call this very function: keep the explicit match.
    #[allow(clippy::manual_unwrap_or_default)]
    fn default() -> Self {
        // An empty document takes every default; it cannot fail to parse.
        match toml::from_str("") {
            Ok(c) => c,
            Err(_) => unreachable_default(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_default() -> VerifierConfig {
    panic!("an empty verifier config parses")
}

impl VerifierConfig {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        Ok(config_file::parse(text, path, ConfigFormat::Toml)?)
    }

    /// Reads a TOML file, or the defaults when `path` is `None`; then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = config_file::load(path, ConfigFormat::Toml, Self::default)?;
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    /// Applies `VIGIL_KAFKA_BOOTSTRAP`, `VIGIL_SCHEMA_REGISTRY_URL` and `VIGIL_TRUST_ANCHORS`
    /// from `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(path) = get("VIGIL_TRUST_ANCHORS").filter(|p| !p.trim().is_empty()) {
            self.trust_anchors = Some(PathBuf::from(path));
        }
        self.consumer.apply_address_env(get);
    }

    /// Returns the consumer runtime configuration this verifier runs with.
    pub fn runtime_config(&self) -> RuntimeConfig {
        self.consumer.runtime_config("verifier", &self.raw_topic)
    }

    /// Returns the configured verifier id, or `<host>-<pid>`.
    pub fn verifier_id(&self) -> String {
        self.verifier_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "verifier".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// Checks every value, naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.consumer.validate("verifier", &self.raw_topic)?;
        let mut seen = std::collections::BTreeSet::new();
        for (key, topic) in [
            ("raw_topic", &self.raw_topic),
            ("verified_topic", &self.verified_topic),
            ("keys_topic", &self.keys_topic),
            ("dlq_topic", &self.consumer.dlq_topic),
        ] {
            if topic.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
            if !seen.insert(topic.as_str()) {
                return Err(invalid(key, format!("{topic:?} is used for two purposes")));
            }
        }
        if !(1_000..=86_400_000).contains(&self.max_clock_skew_ms) {
            return Err(invalid(
                "max_clock_skew_ms",
                format!(
                    "must be between 1000 and 86400000, got {}",
                    self.max_clock_skew_ms
                ),
            ));
        }
        if !(1_000..=100_000_000).contains(&self.nonce_cache_max_entries) {
            return Err(invalid(
                "nonce_cache_max_entries",
                format!(
                    "must be between 1000 and 100000000, got {}",
                    self.nonce_cache_max_entries
                ),
            ));
        }
        if !(1..=4096).contains(&self.verify_batch_max) {
            return Err(invalid(
                "verify_batch_max",
                format!("must be between 1 and 4096, got {}", self.verify_batch_max),
            ));
        }
        if !(1_024..=64 * 1024 * 1024).contains(&self.max_value_bytes) {
            return Err(invalid(
                "max_value_bytes",
                format!(
                    "must be between 1024 and 67108864, got {}",
                    self.max_value_bytes
                ),
            ));
        }
        if self.trust_anchors.is_none() {
            return Err(invalid(
                "trust_anchors",
                "is required: the PEM file or folder of administrator public keys that sign the \
                 key registry (or set VIGIL_TRUST_ANCHORS)",
            ));
        }
        if !(100..=3_600_000).contains(&self.key_registry_load_timeout_ms) {
            return Err(invalid(
                "key_registry_load_timeout_ms",
                format!(
                    "must be between 100 and 3600000, got {}",
                    self.key_registry_load_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_name_the_real_topics() {
        let mut c = VerifierConfig::default();
        let err = c.validate().expect_err("trust anchors have no default");
        assert!(err.to_string().contains("trust_anchors"), "{err}");
        c.apply_env(|k| (k == "VIGIL_TRUST_ANCHORS").then(|| "/etc/vigil/admins".into()));
        c.validate().expect("defaults are valid");
        assert_eq!(c.raw_topic, "vigil.events.raw");
        assert_eq!(c.max_clock_skew_ms, 300_000);
        assert_eq!(c.nonce_cache_max_entries, 1_000_000);
        assert_eq!(c.runtime_config().dlq_topic, "vigil.dlq");
    }

    #[test]
    fn toml_refuses_unknown_keys_and_env_overrides_addresses() {
        let err = VerifierConfig::from_toml("max_clock_skew = 5\n", "f.toml").expect_err("unknown");
        assert!(err.to_string().contains("max_clock_skew"), "{err}");
        let mut c = VerifierConfig::from_toml(
            "raw_topic = \"r\"\nmax_clock_skew_ms = 60000\n[kafka]\nbootstrap_servers = \"a:1\"\n",
            "f.toml",
        )
        .expect("parses");
        assert_eq!(c.raw_topic, "r");
        assert_eq!(c.consumer.kafka.bootstrap_servers, "a:1");
        c.apply_env(|k| match k {
            "VIGIL_KAFKA_BOOTSTRAP" => Some("b:2".into()),
            "VIGIL_SCHEMA_REGISTRY_URL" => Some("http://r:1".into()),
            _ => None,
        });
        assert_eq!(c.consumer.kafka.bootstrap_servers, "b:2");
        assert_eq!(c.consumer.schema_registry_url, "http://r:1");
    }

    #[test]
    fn validation_names_the_offending_key() {
        type Mutation = Box<dyn Fn(&mut VerifierConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("max_clock_skew_ms", Box::new(|c| c.max_clock_skew_ms = 0)),
            (
                "nonce_cache_max_entries",
                Box::new(|c| c.nonce_cache_max_entries = 1),
            ),
            ("verify_batch_max", Box::new(|c| c.verify_batch_max = 0)),
            (
                "verified_topic",
                Box::new(|c| c.verified_topic = c.raw_topic.clone()),
            ),
            (
                "schema_registry_url",
                Box::new(|c| c.consumer.schema_registry_url = "x".into()),
            ),
            (
                "max_in_flight_per_partition",
                Box::new(|c| c.consumer.max_in_flight_per_partition = 0),
            ),
            (
                "pipeline_depth",
                Box::new(|c| c.consumer.pipeline_depth = 0),
            ),
        ];
        for (key, mutate) in cases {
            let mut c = VerifierConfig::default();
            mutate(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
