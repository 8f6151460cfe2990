//! `AlerterConfig`: one YAML file per deployment (the routing tree reads best in YAML),
//! `VIGIL_*` overrides for addresses, secrets only from files or the environment.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_consumer::{ConsumerConfig, ConsumerDefaults, RuntimeConfig};
use vigil_schemas::topics;
use vigil_topology::config_file::{self, ConfigFormat};

mod routing;

pub use routing::{
    DEFAULT_DEDUP_WINDOW_MS, DEFAULT_GROUP_INTERVAL_MS, EscalationConfig, EscalationTier,
    MatchConfig, RouteConfig, parse_severity,
};

/// A configuration value that is out of range or unreadable, named by its key (the error type
/// every service's configuration shares).
pub use vigil_consumer::ServiceConfigError as ConfigError;

/// How the alerter consumes, routes, delivers and serves its API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlerterConfig {
    /// The consumer keys every consumer service shares (Kafka, schema registry for the writer
    /// schemas of alert records, group, DLQ, retry topics, bounds, timeouts), at the top of the
    /// table beside the alerter's own. The DLQ takes undecodable alerts and alerts no receiver
    /// accepted; retry topics (none by default) take transient failures (registry or DLQ
    /// outage). `pipeline_depth` here overlaps the wait for the broker to acknowledge a
    /// record's state changelog writes; notifications stay in offset order.
    #[serde(flatten, deserialize_with = "consumer_keys")]
    pub consumer: ConsumerConfig,
    /// Topic of alerts (written by the correlator).
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Compacted changelog of the alerter's state (marks, active alerts, acknowledgements,
    /// silences), read back at start so a restart keeps them. One per alerter deployment.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Largest alert value accepted, in bytes.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// The HTTP API (acknowledgements, silences).
    #[serde(default)]
    pub api: ApiConfig,
    /// State bounds.
    #[serde(default)]
    pub state: StateConfig,
    /// Retries of one delivery to one receiver.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Where notifications go.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// The routing tree; its root matches every alert.
    #[serde(default)]
    pub route: RouteConfig,
}

/// The HTTP API: `POST /alerts/{id}/ack`, `GET /alerts`, silences.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address; port 0 picks a free port.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token (trimmed); required.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Environment variable holding the bearer token, when no file is given.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Largest request body; larger ones get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

/// Bounds of the state (held in memory, written through to `state_topic`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Dedup and group marks kept; the oldest are evicted when full (counted).
    #[serde(default = "default_max_dedup_entries")]
    pub max_dedup_entries: usize,
    /// Active (notified, not expired) alerts kept for acknowledgement and escalation.
    #[serde(default = "default_max_active_alerts")]
    pub max_active_alerts: usize,
    /// How long a notified alert stays active (listed, acknowledgeable).
    #[serde(default = "default_active_ttl_ms")]
    pub active_ttl_ms: u64,
    /// Silences kept; creating one more is refused.
    #[serde(default = "default_max_silences")]
    pub max_silences: usize,
}

/// Retries of one delivery: exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per delivery, the first included; then the alert is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff ceiling after the first failure; doubles per failure.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff ceiling.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Longest wait for a rate-limit token before the delivery counts as failed.
    #[serde(default = "default_rate_limit_max_wait_ms")]
    pub rate_limit_max_wait_ms: u64,
}

/// Kind of receiver, i.e. the payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// Generic webhook: the alert as JSON, HMAC-SHA256 signed.
    Webhook,
    /// Slack incoming webhook (`text` + `blocks`).
    Slack,
    /// PagerDuty Events API v2 (`trigger`, `dedup_key` = fingerprint).
    Pagerduty,
}

impl ReceiverKind {
    /// Returns the kind as written in config and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Pagerduty => "pagerduty",
        }
    }
}

/// One receiver. Secrets (`*_file` or `*_env`) are never written inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Name routes refer to; also a metric label (bounded by the config).
    pub name: String,
    /// Payload shape.
    pub kind: ReceiverKind,
    /// Target URL (not secret). PagerDuty defaults to the public Events v2 endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the URL, for URLs that are secrets themselves (Slack incoming webhooks).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Webhook: file holding the HMAC-SHA256 key.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Webhook: environment variable holding the HMAC-SHA256 key.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Webhook: file holding a bearer token sent as `Authorization: Bearer`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PagerDuty: file holding the integration routing key.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// PagerDuty: environment variable holding the routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// Deliveries per minute (token bucket refill rate).
    #[serde(default = "default_rate_limit_per_minute")]
    pub rate_limit_per_minute: u32,
    /// Deliveries allowed back to back (token bucket size).
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// Timeout of one HTTP request, connect included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// The alerter's consumer defaults: group `vigil-alerter`, no retry topics, 64 records in flight
/// and 32 handled at once per partition, offsets committed every second.
fn consumer_defaults() -> ConsumerDefaults {
    ConsumerDefaults {
        retry_topics: Vec::new(),
        max_in_flight_per_partition: 64,
        pipeline_depth: 32,
        commit_interval_ms: 1_000,
        ..ConsumerDefaults::runtime("vigil-alerter")
    }
}

fn consumer_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConsumerConfig, D::Error> {
    ConsumerConfig::deserialize_with_defaults(d, consumer_defaults())
}

fn default_alerts_topic() -> String {
    topics::ALERTS.to_owned()
}
fn default_state_topic() -> String {
    STATE_TOPIC.to_owned()
}
fn default_max_value_bytes() -> usize {
    vigil_schemas::wire::DEFAULT_MAX_VALUE_BYTES
}
fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9410))
}
fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_max_dedup_entries() -> usize {
    100_000
}
fn default_max_active_alerts() -> usize {
    10_000
}
fn default_active_ttl_ms() -> u64 {
    24 * 3_600_000
}
fn default_max_silences() -> usize {
    1_000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}
fn default_rate_limit_max_wait_ms() -> u64 {
    10_000
}
fn default_rate_limit_per_minute() -> u32 {
    600
}
fn default_rate_limit_burst() -> u32 {
    20
}
fn default_timeout_ms() -> u64 {
    5_000
}
/// Default state changelog topic (declared in `topology/topics.yaml`).
pub const STATE_TOPIC: &str = "vigil.alerter.state";

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_api_listen(),
            bearer_token_file: None,
            bearer_token_env: None,
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            max_dedup_entries: default_max_dedup_entries(),
            max_active_alerts: default_max_active_alerts(),
            active_ttl_ms: default_active_ttl_ms(),
            max_silences: default_max_silences(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            rate_limit_max_wait_ms: default_rate_limit_max_wait_ms(),
        }
    }
}

impl Default for AlerterConfig {
    fn default() -> Self {
        Self {
            consumer: ConsumerConfig::with_defaults(consumer_defaults()),
            alerts_topic: default_alerts_topic(),
            state_topic: default_state_topic(),
            max_value_bytes: default_max_value_bytes(),
            api: ApiConfig::default(),
            state: StateConfig::default(),
            delivery: DeliveryConfig::default(),
            receivers: Vec::new(),
            route: RouteConfig::default(),
        }
    }
}

/// Reads a secret from a file (trimmed) or an environment variable, naming `key` on failure.
pub fn read_secret(
    key: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    // Name the key actually used, so the operator looks at the right place.
    let used = match (file, env) {
        (None, Some(_)) => key.replace("_file", "_env"),
        _ => key.to_owned(),
    };
    let secret = |reason: String| ConfigError::Secret {
        service: "alerter",
        key: used.clone(),
        reason,
    };
    let value = match (file, env) {
        (Some(p), _) => {
            std::fs::read_to_string(p).map_err(|e| secret(format!("{}: {e}", p.display())))?
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| secret(format!("environment variable {var} is not set")))?,
        (None, None) => return Ok(None),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(secret("empty".to_owned()));
    }
    Ok(Some(value))
}

impl AlerterConfig {
    /// Parses a YAML document; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Self, ConfigError> {
        Ok(config_file::parse(text, path, ConfigFormat::Yaml)?)
    }

    /// Reads a YAML file (or the defaults), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = config_file::load(path, ConfigFormat::Yaml, Self::default)?;
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    /// Applies `VIGIL_KAFKA_BOOTSTRAP` and `VIGIL_SCHEMA_REGISTRY_URL` from `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        self.consumer.apply_address_env(get);
    }

    /// Returns the consumer runtime configuration of the alerter.
    pub fn runtime_config(&self) -> RuntimeConfig {
        self.consumer.runtime_config("alerter", &self.alerts_topic)
    }

    /// Checks every value, naming the first offending key (`path` names the file).
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            path: Some(path.to_owned()),
            service: "alerter",
            key,
            reason,
        };
        self.consumer
            .validate("alerter", &self.alerts_topic)
            .map_err(|e| e.in_file(path))?;
        if self.alerts_topic.trim().is_empty() {
            return Err(invalid("alerts_topic".into(), "must not be empty".into()));
        }
        let dlq_topic = &self.consumer.dlq_topic;
        if dlq_topic.trim().is_empty() || *dlq_topic == self.alerts_topic {
            return Err(invalid(
                "dlq_topic".into(),
                "must be set and differ from alerts_topic".into(),
            ));
        }
        if self.state_topic.trim().is_empty()
            || self.state_topic == self.alerts_topic
            || self.state_topic == *dlq_topic
        {
            return Err(invalid(
                "state_topic".into(),
                "must be set and differ from alerts_topic and dlq_topic".into(),
            ));
        }
        if !(1_024..=64 * 1024 * 1024).contains(&self.max_value_bytes) {
            return Err(invalid(
                "max_value_bytes".into(),
                format!(
                    "must be between 1024 and 67108864, got {}",
                    self.max_value_bytes
                ),
            ));
        }
        if self.api.bearer_token_file.is_none() && self.api.bearer_token_env.is_none() {
            return Err(invalid(
                "api.bearer_token_file".into(),
                "the API needs a bearer token (bearer_token_file or bearer_token_env)".into(),
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&self.api.max_body_bytes) {
            return Err(invalid(
                "api.max_body_bytes".into(),
                format!(
                    "must be between 256 and 16777216, got {}",
                    self.api.max_body_bytes
                ),
            ));
        }
        for (key, v, lo, hi) in [
            (
                "state.max_dedup_entries",
                self.state.max_dedup_entries,
                1,
                10_000_000,
            ),
            (
                "state.max_active_alerts",
                self.state.max_active_alerts,
                1,
                1_000_000,
            ),
            ("state.max_silences", self.state.max_silences, 1, 100_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(
                    key.into(),
                    format!("must be between {lo} and {hi}, got {v}"),
                ));
            }
        }
        if self.state.active_ttl_ms < 1_000 {
            return Err(invalid(
                "state.active_ttl_ms".into(),
                "must be >= 1000".into(),
            ));
        }
        let d = &self.delivery;
        if !(1..=50).contains(&d.max_attempts) {
            return Err(invalid(
                "delivery.max_attempts".into(),
                format!("must be between 1 and 50, got {}", d.max_attempts),
            ));
        }
        if d.initial_backoff_ms == 0 || d.max_backoff_ms < d.initial_backoff_ms {
            return Err(invalid(
                "delivery.max_backoff_ms".into(),
                "need 1 <= initial_backoff_ms <= max_backoff_ms".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let key = |k: &str| format!("receivers[{i}].{k}");
            if r.name.trim().is_empty() || !names.insert(r.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is empty or repeated", r.name),
                ));
            }
            match (&r.url, &r.url_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(key("url"), "set url or url_file, not both".into()));
                }
                (None, None) if r.kind != ReceiverKind::Pagerduty => {
                    return Err(invalid(key("url"), "url or url_file is required".into()));
                }
                (Some(u), None) if !u.starts_with("http://") && !u.starts_with("https://") => {
                    return Err(invalid(
                        key("url"),
                        format!("must be an http(s) URL, got {u:?}"),
                    ));
                }
                _ => {}
            }
            if r.secret_file.is_some() && r.secret_env.is_some() {
                return Err(invalid(
                    key("secret_file"),
                    "set secret_file or secret_env".into(),
                ));
            }
            if r.kind == ReceiverKind::Pagerduty
                && r.routing_key_file.is_none()
                && r.routing_key_env.is_none()
            {
                return Err(invalid(
                    key("routing_key_file"),
                    "pagerduty needs routing_key_file or routing_key_env".into(),
                ));
            }
            if r.rate_limit_per_minute == 0 || r.rate_limit_burst == 0 {
                return Err(invalid(
                    key("rate_limit_per_minute"),
                    "rate_limit_per_minute and rate_limit_burst must be >= 1".into(),
                ));
            }
            if !(10..=120_000).contains(&r.timeout_ms) {
                return Err(invalid(
                    key("timeout_ms"),
                    format!("must be between 10 and 120000, got {}", r.timeout_ms),
                ));
            }
        }
        validate_route(&self.route, "route", &names, &invalid)?;
        Ok(())
    }
}

fn validate_route(
    route: &RouteConfig,
    at: &str,
    names: &BTreeSet<&str>,
    invalid: &impl Fn(String, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (j, r) in route.receivers.iter().enumerate() {
        if !names.contains(r.as_str()) {
            return Err(invalid(
                format!("{at}.receivers[{j}]"),
                format!("unknown receiver {r:?}"),
            ));
        }
    }
    for (j, s) in route.matcher.severity.iter().enumerate() {
        if parse_severity(s).is_none() {
            return Err(invalid(
                format!("{at}.match.severity[{j}]"),
                format!("unknown severity {s:?}"),
            ));
        }
    }
    if let Some(e) = &route.escalation {
        if e.tiers.is_empty() {
            return Err(invalid(
                format!("{at}.escalation.tiers"),
                "must not be empty".into(),
            ));
        }
        for (t, tier) in e.tiers.iter().enumerate() {
            if tier.after_ms == 0 || tier.receivers.is_empty() {
                return Err(invalid(
                    format!("{at}.escalation.tiers[{t}]"),
                    "after_ms must be >= 1 and receivers non-empty".into(),
                ));
            }
            for (j, r) in tier.receivers.iter().enumerate() {
                if !names.contains(r.as_str()) {
                    return Err(invalid(
                        format!("{at}.escalation.tiers[{t}].receivers[{j}]"),
                        format!("unknown receiver {r:?}"),
                    ));
                }
            }
        }
    }
    for (k, child) in route.routes.iter().enumerate() {
        validate_route(child, &format!("{at}.routes[{k}]"), names, invalid)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/alerter.example.yaml");

    #[test]
    fn example_file_parses_and_validates() {
        let c = AlerterConfig::from_yaml(EXAMPLE, "alerter.example.yaml").expect("parses");
        c.validate("alerter.example.yaml").expect("valid");
        assert_eq!(c.receivers.len(), 4);
        assert!(!c.route.routes.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = AlerterConfig::from_yaml("alerts_topik: x\n", "f.yaml").expect_err("unknown");
        assert!(err.to_string().contains("alerts_topik"), "{err}");
    }

    #[test]
    fn validation_names_file_and_key() {
        let text = "api: {bearer_token_env: T}\nreceivers:\n  - {name: a, kind: webhook, url: \"http://x\"}\nroute:\n  receivers: [a]\n  routes:\n    - {receivers: [b]}\n";
        let c = AlerterConfig::from_yaml(text, "f.yaml").expect("parses");
        let err = c.validate("f.yaml").expect_err("unknown receiver");
        assert_eq!(
            err.to_string(),
            "f.yaml: alerter.route.routes[0].receivers[0]: unknown receiver \"b\""
        );
        let no_token = AlerterConfig::default()
            .validate("<defaults>")
            .expect_err("token");
        assert!(
            no_token.to_string().contains("api.bearer_token_file"),
            "{no_token}"
        );
    }
}
