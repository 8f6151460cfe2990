//! `CorrelatorConfig`: one TOML file per deployment, `VIGIL_*` overrides for addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_consumer::{ConsumerConfig, ConsumerDefaults, RuntimeConfig};
use vigil_schemas::topics;
use vigil_topology::config_file::{self, ConfigFormat};

use crate::engine::EngineSettings;

/// A configuration value that is out of range or unreadable, named by its key (the error type
/// every service's configuration shares).
pub use vigil_consumer::ServiceConfigError as ConfigError;

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid("correlator", key, reason)
}

/// How the correlator consumes, correlates and alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelatorConfig {
    /// The consumer keys every consumer service shares (Kafka, schema registry, group, DLQ,
    /// retry topics, bounds, timeouts), at the top of the table beside the correlator's own.
    /// Retry topics take records whose alerts topic was unreachable; `pipeline_depth` here
    /// overlaps decoding, while windows are fed and alerts queued strictly in offset order.
    #[serde(flatten, deserialize_with = "consumer_keys")]
    pub consumer: ConsumerConfig,
    /// Topic of verified events.
    #[serde(default = "default_verified_topic")]
    pub verified_topic: String,
    /// Topic alerts are written to.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Directory of Sigma rule files (`*.yml`); `VIGIL_RULES_DIR` overrides it.
    #[serde(default = "default_rules_dir")]
    pub rules_dir: PathBuf,
    /// How often the rule directory is checked for changes (0: only on SIGHUP).
    #[serde(default = "default_reload_poll_ms")]
    pub reload_poll_ms: u64,
    /// How far behind the newest event time an event may arrive and still count.
    #[serde(default = "default_allowed_lateness_ms")]
    pub allowed_lateness_ms: u64,
    /// Bound of correlation state (group keys over all rules); evictions are counted.
    #[serde(default = "default_max_state_keys")]
    pub max_state_keys: usize,
    /// Most evidence event ids and trace ids per alert.
    #[serde(default = "default_max_evidence")]
    pub max_evidence: usize,
    /// Rebuild windows by replaying the verified topic up to the committed offsets: on start,
    /// and when partitions this instance did not hold are assigned to it (failover).
    #[serde(default = "default_true")]
    pub rebuild_on_start: bool,
    /// Most events one replay (start-up or failover) reads.
    #[serde(default = "default_rebuild_max_events")]
    pub rebuild_max_events: usize,
    /// How long one replay may read: at start the correlator then starts with what it read; on
    /// failover records wait for it (plus up to 35 s of broker queries) before the previous
    /// windows are kept.
    #[serde(default = "default_rebuild_timeout_ms")]
    pub rebuild_timeout_ms: u64,
    /// Linger of the alerts producer (the Kafka client's `linger_ms` applies to nothing else
    /// here): alerts are rare and their latency matters more than batching.
    #[serde(default)]
    pub alerts_linger_ms: u32,
}

/// The correlator's consumer defaults: group `vigil-correlator`, 256 records in flight and 32
/// handled at once per partition, offsets committed every 5 s, 30 s to shut down.
fn consumer_defaults() -> ConsumerDefaults {
    ConsumerDefaults {
        max_in_flight_per_partition: 256,
        pipeline_depth: 32,
        commit_interval_ms: 5_000,
        shutdown_timeout_ms: 30_000,
        ..ConsumerDefaults::runtime("vigil-correlator")
    }
}

fn consumer_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConsumerConfig, D::Error> {
    ConsumerConfig::deserialize_with_defaults(d, consumer_defaults())
}

fn default_verified_topic() -> String {
    topics::EVENTS_VERIFIED.to_owned()
}
fn default_alerts_topic() -> String {
    topics::ALERTS.to_owned()
}
fn default_rules_dir() -> PathBuf {
    PathBuf::from("rules")
}
fn default_reload_poll_ms() -> u64 {
    2_000
}
fn default_allowed_lateness_ms() -> u64 {
    30_000
}
fn default_max_state_keys() -> usize {
    100_000
}
fn default_max_evidence() -> usize {
    20
}
fn default_true() -> bool {
    true
}
fn default_rebuild_max_events() -> usize {
    2_000_000
}
fn default_rebuild_timeout_ms() -> u64 {
    120_000
}

impl Default for CorrelatorConfig {
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
fn unreachable_default() -> CorrelatorConfig {
    panic!("an empty correlator config parses")
}

impl CorrelatorConfig {
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

    /// Applies `VIGIL_KAFKA_BOOTSTRAP`, `VIGIL_SCHEMA_REGISTRY_URL` and `VIGIL_RULES_DIR`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        self.consumer.apply_address_env(&get);
        if let Some(v) = config_file::env_value(&get, "VIGIL_RULES_DIR") {
            self.rules_dir = PathBuf::from(v);
        }
    }

    /// Returns the consumer runtime configuration (window state depends on event order, so the
    /// handler feeds the engine inside each record's turn).
    pub fn runtime_config(&self) -> RuntimeConfig {
        self.consumer
            .runtime_config("correlator", &self.verified_topic)
    }

    /// Returns the engine bounds.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            allowed_lateness_us: i64::try_from(self.allowed_lateness_ms)
                .unwrap_or(i64::MAX / 1_000)
                .saturating_mul(1_000),
            max_state_keys: self.max_state_keys,
            max_evidence: self.max_evidence,
        }
    }

    /// Checks every value, naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.consumer.validate("correlator", &self.verified_topic)?;
        for (key, topic) in [
            ("verified_topic", &self.verified_topic),
            ("alerts_topic", &self.alerts_topic),
            ("dlq_topic", &self.consumer.dlq_topic),
        ] {
            if topic.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.alerts_linger_ms > 5_000 {
            return Err(invalid("alerts_linger_ms", "must be at most 5000"));
        }
        if self.max_state_keys == 0 {
            return Err(invalid("max_state_keys", "must be at least 1"));
        }
        if self.max_evidence == 0 || self.max_evidence > 1_000 {
            return Err(invalid("max_evidence", "must be 1..=1000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_topics_default_to_the_runtime_s_and_are_configurable() {
        let defaults = CorrelatorConfig::default();
        let runtime_default =
            RuntimeConfig::new("correlator", "g", vec!["t".to_owned()]).retry_topics;
        assert!(!runtime_default.is_empty());
        assert_eq!(defaults.consumer.retry_topics, runtime_default);
        assert_eq!(defaults.runtime_config().retry_topics, runtime_default);

        let own = CorrelatorConfig::from_toml(
            "[[retry_topics]]\ntopic = \"demo.retry.1s\"\ndelay_ms = 1000\n",
            "c.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rc = own.runtime_config();
        assert_eq!(rc.retry_topics.len(), 1);
        assert_eq!(
            (
                rc.retry_topics[0].topic.as_str(),
                rc.retry_topics[0].delay_ms
            ),
            ("demo.retry.1s", 1_000)
        );
        assert!(rc.subscribed_topics().contains(&"demo.retry.1s"));

        let none = CorrelatorConfig::from_toml("retry_topics = []\n", "c.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            none.runtime_config().subscribed_topics(),
            vec![topics::EVENTS_VERIFIED]
        );

        let mut clash = CorrelatorConfig::default();
        clash.consumer.retry_topics[0].topic = clash.verified_topic.clone();
        let e = clash.validate().err().unwrap_or_else(|| panic!("accepted"));
        assert!(e.to_string().contains("retry_topics[0].topic"), "{e}");
    }
}
