//! `CorrelatorConfig`: one TOML file per deployment, `VIGIL_*` overrides for addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_consumer::{RetryTopic, RuntimeConfig};
use vigil_schemas::topics;
use vigil_topology::KafkaClientConfig;
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
    /// Kafka connection; `VIGIL_KAFKA_BOOTSTRAP` overrides `bootstrap_servers`.
    #[serde(default = "default_kafka")]
    pub kafka: KafkaClientConfig,
    /// Schema registry URL; `VIGIL_SCHEMA_REGISTRY_URL` overrides it.
    #[serde(default = "default_schema_registry_url")]
    pub schema_registry_url: String,
    /// Consumer group of the correlator.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topic of verified events.
    #[serde(default = "default_verified_topic")]
    pub verified_topic: String,
    /// Topic alerts are written to.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Dead-letter topic for undecodable records.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// Delayed retry topics for transient failures (alerts topic unreachable); empty: DLQ
    /// after the in-process retries.
    #[serde(default = "default_retry_topics")]
    pub retry_topics: Vec<RetryTopic>,
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
    /// Records of one partition handled at once: decoding overlaps, while the windows are fed
    /// and alerts queued strictly in offset order; alert acknowledgements are awaited after.
    #[serde(default = "default_pipeline_depth")]
    pub pipeline_depth: usize,
    /// Linger of the alerts producer (the Kafka client's `linger_ms` applies to nothing else
    /// here): alerts are rare and their latency matters more than batching.
    #[serde(default)]
    pub alerts_linger_ms: u32,
    /// Records queued per partition before the partition is paused.
    #[serde(default = "default_max_in_flight_per_partition")]
    pub max_in_flight_per_partition: usize,
    /// How often stored offsets are committed.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a shutdown waits for records being handled.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
}

fn default_kafka() -> KafkaClientConfig {
    KafkaClientConfig::new("127.0.0.1:9092")
}
fn default_schema_registry_url() -> String {
    "http://127.0.0.1:8081".to_owned()
}
fn default_group_id() -> String {
    "vigil-correlator".to_owned()
}
fn default_verified_topic() -> String {
    topics::EVENTS_VERIFIED.to_owned()
}
fn default_alerts_topic() -> String {
    topics::ALERTS.to_owned()
}
fn default_dlq_topic() -> String {
    topics::DLQ.to_owned()
}
fn default_retry_topics() -> Vec<RetryTopic> {
    RuntimeConfig::new("correlator", "g", vec!["t".to_owned()]).retry_topics
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
fn default_max_in_flight_per_partition() -> usize {
    256
}
fn default_pipeline_depth() -> usize {
    32
}
fn default_commit_interval_ms() -> u64 {
    5_000
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
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
        config_file::apply_address_env(&get, &mut self.kafka, &mut self.schema_registry_url);
        if let Some(v) = config_file::env_value(&get, "VIGIL_RULES_DIR") {
            self.rules_dir = PathBuf::from(v);
        }
    }

    /// Returns the consumer runtime configuration (window state depends on event order, so the
    /// handler feeds the engine inside each record's turn).
    pub fn runtime_config(&self) -> RuntimeConfig {
        let mut c = RuntimeConfig::new(
            "correlator",
            &self.group_id,
            vec![self.verified_topic.clone()],
        );
        c.dlq_topic = self.dlq_topic.clone();
        c.retry_topics = self.retry_topics.clone();
        c.max_in_flight_per_partition = self.max_in_flight_per_partition;
        c.pipeline_depth = self.pipeline_depth;
        c.commit_interval_ms = self.commit_interval_ms;
        c.shutdown_timeout_ms = self.shutdown_timeout_ms;
        c
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
        self.kafka
            .validate()
            .map_err(|e| invalid("kafka", e.to_string()))?;
        if !self.schema_registry_url.starts_with("http://")
            && !self.schema_registry_url.starts_with("https://")
        {
            return Err(invalid("schema_registry_url", "must be an http(s) URL"));
        }
        for (key, topic) in [
            ("verified_topic", &self.verified_topic),
            ("alerts_topic", &self.alerts_topic),
            ("dlq_topic", &self.dlq_topic),
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
        self.runtime_config()
            .validate()
            .map_err(|e| invalid("runtime", e.to_string()))?;
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
        assert_eq!(defaults.retry_topics, runtime_default);
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
        clash.retry_topics[0].topic = clash.verified_topic.clone();
        let e = clash.validate().err().unwrap_or_else(|| panic!("accepted"));
        assert!(e.to_string().contains("retry_topics[0].topic"), "{e}");
    }
}
