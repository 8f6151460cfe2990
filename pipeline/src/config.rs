//! What a pipeline runs: the services' own configs, prefilled for a namespace.

use std::path::{Path, PathBuf};

use vigil_alerter::AlerterConfig;
use vigil_audit_sink::AuditSinkConfig;
use vigil_consumer::ConsumerConfig;
use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_correlator::CorrelatorConfig;
use vigil_schemas::EventSigner;
use vigil_topology::KafkaClientConfig;
use vigil_verifier::VerifierConfig;

use crate::error::PipelineError;
use crate::namespace::Namespace;
use crate::running::ServiceKind;

/// Commit interval of every in-process service: a stop commits promptly and a reader of the
/// namespace sees offsets move within a fraction of a second.
const COMMIT_INTERVAL_MS: u64 = 200;
/// How long a consumer service drains on stop before giving up on in-flight records.
const SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// How long the verifier waits for its key registry to load at start.
const KEY_REGISTRY_LOAD_TIMEOUT_MS: u64 = 20_000;

/// Where the stack's services are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Kafka client settings every service and helper uses.
    pub kafka: KafkaClientConfig,
    /// Schema registry base URL.
    pub schema_registry_url: String,
    /// ClickHouse HTTP URL.
    pub clickhouse_url: String,
}

impl Endpoints {
    /// Reads `VIGIL_KAFKA_BOOTSTRAP`, `VIGIL_SCHEMA_REGISTRY_URL` and `VIGIL_CLICKHOUSE_URL`
    /// (an empty value counts as unset), defaulting to the local stack's addresses.
    pub fn from_env() -> Self {
        Endpoints {
            kafka: KafkaClientConfig::from_env(),
            schema_registry_url: env_or("VIGIL_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"),
            clickhouse_url: env_or("VIGIL_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The audit sink of a pipeline: its config and its digest-signing key.
#[derive(Clone)]
pub struct AuditSinkSetup {
    /// The sink's config (topic, group and database of the namespace).
    pub config: AuditSinkConfig,
    /// Signs the sink's digests.
    pub signer: EventSigner,
}

/// Which services a pipeline runs, with each one's config. A `None` service is not started.
///
/// The `with_*` methods fill a service's config for the namespace (its topics, group, the
/// endpoints, short commit intervals); change any field afterwards before [`crate::Pipeline::start`].
#[derive(Clone)]
pub struct PipelineConfig {
    /// The namespace every topic, group and database name comes from.
    pub namespace: Namespace,
    /// Where Kafka, the schema registry and ClickHouse are.
    pub endpoints: Endpoints,
    /// The verifier: raw → verified, judged against the namespace's key registry.
    pub verifier: Option<VerifierConfig>,
    /// The correlator: verified → alerts.
    pub correlator: Option<CorrelatorConfig>,
    /// The alerter: alerts → receivers.
    pub alerter: Option<AlerterConfig>,
    /// The audit sink: verified → ClickHouse.
    pub audit_sink: Option<AuditSinkSetup>,
}

impl PipelineConfig {
    /// Returns a config for `namespace` that runs no service yet.
    pub fn new(namespace: Namespace, endpoints: Endpoints) -> Self {
        PipelineConfig {
            namespace,
            endpoints,
            verifier: None,
            correlator: None,
            alerter: None,
            audit_sink: None,
        }
    }

    /// Returns `service`'s consumer keys in the namespace: the endpoints, its group, the
    /// namespace's DLQ, no retry topics, short commit and shutdown intervals; the service's
    /// own bounds from `defaults`.
    fn consumer(&self, service: &str, defaults: ConsumerConfig) -> ConsumerConfig {
        ConsumerConfig {
            kafka: self.endpoints.kafka.clone(),
            schema_registry_url: self.endpoints.schema_registry_url.clone(),
            group_id: self.namespace.group(service),
            dlq_topic: self.namespace.dlq_topic(),
            retry_topics: Vec::new(),
            commit_interval_ms: COMMIT_INTERVAL_MS,
            shutdown_timeout_ms: SHUTDOWN_TIMEOUT_MS,
            ..defaults
        }
    }

    /// Adds the verifier, reading the namespace's raw and keys topics and trusting the
    /// administrator public keys in `trust_anchors` (a PEM file or folder); it has no retry
    /// topics, so the shared `vigil.retry.*` never sees the namespace's records.
    pub fn with_verifier(mut self, trust_anchors: impl Into<PathBuf>) -> Self {
        let defaults = VerifierConfig::default();
        let ns = &self.namespace;
        self.verifier = Some(VerifierConfig {
            consumer: self.consumer("verifier", defaults.consumer.clone()),
            raw_topic: ns.raw_topic(),
            verified_topic: ns.verified_topic(),
            keys_topic: ns.keys_topic(),
            trust_anchors: Some(trust_anchors.into()),
            key_registry_load_timeout_ms: KEY_REGISTRY_LOAD_TIMEOUT_MS,
            verifier_id: Some(ns.group("verifier")),
            ..defaults
        });
        self
    }

    /// Adds the correlator with the rule files of `rules_dir` (read once: no reload polling, no
    /// rebuild of windows from the verified topic at start), without retry topics.
    pub fn with_correlator(mut self, rules_dir: impl Into<PathBuf>) -> Self {
        let defaults = CorrelatorConfig::default();
        let ns = &self.namespace;
        self.correlator = Some(CorrelatorConfig {
            consumer: self.consumer("correlator", defaults.consumer.clone()),
            verified_topic: ns.verified_topic(),
            alerts_topic: ns.alerts_topic(),
            rules_dir: rules_dir.into(),
            reload_poll_ms: 0,
            rebuild_on_start: false,
            ..defaults
        });
        self
    }

    /// Adds the alerter. `routing_yaml` holds the top-level `receivers:`, `route:` and any
    /// `delivery:` / `escalations:` keys of an alerter config file; the namespace's topics,
    /// group and an API on `127.0.0.1:0` guarded by the token in `api_token_file` are added.
    pub fn with_alerter(
        mut self,
        routing_yaml: &str,
        api_token_file: &Path,
    ) -> Result<Self, PipelineError> {
        let yaml = alerter_yaml(
            &self.namespace,
            &self.endpoints.schema_registry_url,
            routing_yaml,
            api_token_file,
        );
        let mut config = AlerterConfig::from_yaml(&yaml, ALERTER_CONFIG_PATH)
            .map_err(PipelineError::AlerterConfig)?;
        config.consumer.kafka = self.endpoints.kafka.clone();
        self.alerter = Some(config);
        Ok(self)
    }

    /// Adds the audit sink writing the namespace's verified topic into its database, flushing
    /// every 200 ms and signing a digest every 100 events or 2 s with `signer`.
    pub fn with_audit_sink(mut self, signer: EventSigner) -> Self {
        let ns = &self.namespace;
        self.audit_sink = Some(AuditSinkSetup {
            config: AuditSinkConfig {
                topic: ns.verified_topic(),
                group: ns.group("audit-sink"),
                database: ns.database(),
                flush_interval_ms: 200,
                digest_every_events: 100,
                digest_interval_ms: 2_000,
                dlq_topic: ns.dlq_topic(),
                ..AuditSinkConfig::default()
            },
            signer,
        });
        self
    }

    /// Returns a writer of the namespace's key registry topic (`vigil keys` in code) signing as
    /// administrator `admin`: register, rotate or revoke the keys the verifier trusts.
    pub async fn key_writer(&self, admin: EventSigner) -> Result<KeyStatusWriter, PipelineError> {
        KeyStatusWriter::new(
            &self.namespace.keys_topic(),
            &self.endpoints.schema_registry_url,
            &self.endpoints.kafka,
            admin,
        )
        .await
        .map_err(PipelineError::KeyRegistry)
    }

    /// Returns the services this config starts, in start order.
    pub fn services(&self) -> Vec<ServiceKind> {
        [
            (self.verifier.is_some(), ServiceKind::Verifier),
            (self.correlator.is_some(), ServiceKind::Correlator),
            (self.alerter.is_some(), ServiceKind::Alerter),
            (self.audit_sink.is_some(), ServiceKind::AuditSink),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect()
    }
}

/// The name error messages give the alerter config built by [`PipelineConfig::with_alerter`].
pub(crate) const ALERTER_CONFIG_PATH: &str = "<pipeline alerter config>";

fn alerter_yaml(
    ns: &Namespace,
    schema_registry_url: &str,
    routing_yaml: &str,
    api_token_file: &Path,
) -> String {
    format!(
        "schema_registry_url: {reg:?}\ngroup_id: {group:?}\nalerts_topic: {alerts:?}\ndlq_topic: {dlq:?}\n\
         state_topic: {state:?}\n\
         commit_interval_ms: {COMMIT_INTERVAL_MS}\n\
         api: {{listen: \"127.0.0.1:0\", bearer_token_file: {token:?}}}\n\
         {routing}",
        reg = schema_registry_url,
        group = ns.group("alerter"),
        alerts = ns.alerts_topic(),
        dlq = ns.dlq_topic(),
        state = ns.alerter_state_topic(),
        token = api_token_file.display().to_string(),
        routing = routing_yaml,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PipelineConfig {
        let ns = Namespace::new("vigil-test", "x1").unwrap_or_else(|e| panic!("{e}"));
        let endpoints = Endpoints {
            kafka: KafkaClientConfig::new("127.0.0.1:1"),
            schema_registry_url: "http://127.0.0.1:2".to_owned(),
            clickhouse_url: "http://127.0.0.1:3".to_owned(),
        };
        PipelineConfig::new(ns, endpoints)
    }

    #[test]
    fn a_new_config_runs_nothing() {
        assert!(config().services().is_empty());
    }

    #[test]
    fn services_read_and_write_the_namespace_topics() {
        let c = config()
            .with_verifier("/etc/vigil/admins.pem")
            .with_correlator("/rules")
            .with_audit_sink(EventSigner::generate());
        assert_eq!(
            c.services(),
            [
                ServiceKind::Verifier,
                ServiceKind::Correlator,
                ServiceKind::AuditSink
            ]
        );
        let v = c.verifier.as_ref().unwrap_or_else(|| panic!("verifier"));
        assert_eq!(v.raw_topic, "vigil-test-x1.events.raw");
        assert_eq!(v.verified_topic, "vigil-test-x1.events.verified");
        assert_eq!(v.keys_topic, "vigil-test-x1.keys");
        assert_eq!(v.consumer.dlq_topic, "vigil-test-x1.dlq");
        assert_eq!(v.consumer.group_id, "vigil-test-x1-verifier");
        assert!(v.consumer.retry_topics.is_empty());
        assert_eq!(v.consumer.kafka.bootstrap_servers, "127.0.0.1:1");
        let k = c
            .correlator
            .as_ref()
            .unwrap_or_else(|| panic!("correlator"));
        assert_eq!(k.verified_topic, v.verified_topic);
        assert_eq!(k.alerts_topic, "vigil-test-x1.alerts");
        assert_eq!(k.rules_dir, PathBuf::from("/rules"));
        assert!(k.consumer.retry_topics.is_empty());
        let s = c.audit_sink.as_ref().unwrap_or_else(|| panic!("sink"));
        assert_eq!(s.config.topic, v.verified_topic);
        assert_eq!(s.config.database, "vigil_test_x1");
        assert_eq!(s.config.group, "vigil-test-x1-audit-sink");
    }

    #[test]
    fn the_alerter_gets_the_namespace_and_the_callers_routing() {
        let routing = "receivers:\n  - {name: hook, kind: webhook, url: \"http://127.0.0.1:9/h\"}\n\
                       route: {receivers: [hook], dedup_window_ms: 1000}\n";
        let c = config()
            .with_alerter(routing, Path::new("/tmp/token"))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = c.alerter.as_ref().unwrap_or_else(|| panic!("alerter"));
        assert_eq!(a.alerts_topic, "vigil-test-x1.alerts");
        assert_eq!(a.state_topic, "vigil-test-x1.alerter.state");
        assert_eq!(a.consumer.group_id, "vigil-test-x1-alerter");
        assert_eq!(a.consumer.schema_registry_url, "http://127.0.0.1:2");
        assert_eq!(a.consumer.kafka.bootstrap_servers, "127.0.0.1:1");
        assert_eq!(a.receivers.len(), 1);
        assert_eq!(a.receivers[0].name, "hook");
    }

    #[test]
    fn a_bad_routing_yaml_is_refused() {
        assert!(
            config()
                .with_alerter("receivers: 3\n", Path::new("/tmp/token"))
                .is_err()
        );
    }
}
