//! What every consumer service's configuration shares: the consumer keys ([`ConsumerConfig`],
//! flattened into each service's table) and the one error type of configuration load and
//! validation ([`ServiceConfigError`]: a file that cannot be read or parsed, a value out of
//! range, or a secret that cannot be read, named by its key).

use serde::{Deserialize, Deserializer};
use vigil_topology::KafkaClientConfig;
use vigil_topology::config_file::ConfigFileError;

use crate::config::{RetryTopic, RuntimeConfig};

/// The consumer keys of a service's configuration table: how it reaches Kafka and the schema
/// registry, the group it consumes in, where failures go and how hard it consumes.
///
/// Each service embeds it with `#[serde(flatten, deserialize_with = ...)]` and its own
/// [`ConsumerDefaults`] (see [`ConsumerConfig::deserialize_with_defaults`]), so the keys sit at
/// the top of the service's table. The topic a service consumes keeps its own name per service
/// (`raw_topic`, `verified_topic`, `alerts_topic`) and is passed to
/// [`ConsumerConfig::runtime_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Kafka connection; `VIGIL_KAFKA_BOOTSTRAP` overrides `bootstrap_servers`.
    pub kafka: KafkaClientConfig,
    /// Schema registry URL; `VIGIL_SCHEMA_REGISTRY_URL` overrides it.
    pub schema_registry_url: String,
    /// Consumer group of the service.
    pub group_id: String,
    /// Dead-letter topic for records that cannot be handled.
    pub dlq_topic: String,
    /// Delayed retry topics for transient failures, tried in order; empty: DLQ after the
    /// in-process retries.
    pub retry_topics: Vec<RetryTopic>,
    /// Records queued per partition before the partition is paused.
    pub max_in_flight_per_partition: usize,
    /// Records of one partition handled at once; offsets are still stored in order. 1 handles
    /// one record at a time.
    pub pipeline_depth: usize,
    /// How often stored offsets are committed.
    pub commit_interval_ms: u64,
    /// How long a shutdown waits for records being handled.
    pub shutdown_timeout_ms: u64,
}

/// The values a service's [`ConsumerConfig`] takes for keys its file does not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDefaults {
    /// Default `group_id`.
    pub group_id: &'static str,
    /// Default `retry_topics`.
    pub retry_topics: Vec<RetryTopic>,
    /// Default `max_in_flight_per_partition`.
    pub max_in_flight_per_partition: usize,
    /// Default `pipeline_depth`.
    pub pipeline_depth: usize,
    /// Default `commit_interval_ms`.
    pub commit_interval_ms: u64,
    /// Default `shutdown_timeout_ms`.
    pub shutdown_timeout_ms: u64,
}

impl ConsumerDefaults {
    /// Returns the consumer runtime's own defaults ([`RuntimeConfig::new`]) for `group_id`.
    pub fn runtime(group_id: &'static str) -> Self {
        let runtime = RuntimeConfig::new("defaults", group_id, Vec::new());
        Self {
            group_id,
            retry_topics: runtime.retry_topics,
            max_in_flight_per_partition: runtime.max_in_flight_per_partition,
            pipeline_depth: runtime.pipeline_depth,
            commit_interval_ms: runtime.commit_interval_ms,
            shutdown_timeout_ms: runtime.shutdown_timeout_ms,
        }
    }
}

/// The consumer keys as a file writes them: every one optional. Not `deny_unknown_fields`: the
/// keys are flattened into the service's table, whose own `deny_unknown_fields` refuses whatever
/// neither it nor this struct takes.
#[derive(Deserialize)]
struct ConsumerKeys {
    kafka: Option<KafkaClientConfig>,
    schema_registry_url: Option<String>,
    group_id: Option<String>,
    dlq_topic: Option<String>,
    retry_topics: Option<Vec<RetryTopic>>,
    max_in_flight_per_partition: Option<usize>,
    pipeline_depth: Option<usize>,
    commit_interval_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
}

impl ConsumerConfig {
    /// Returns the configuration a file without consumer keys gives: `defaults`, Kafka at
    /// `127.0.0.1:9092`, the schema registry at `http://127.0.0.1:8081`, the DLQ `vigil.dlq`.
    pub fn with_defaults(defaults: ConsumerDefaults) -> Self {
        Self {
            kafka: KafkaClientConfig::new("127.0.0.1:9092"),
            schema_registry_url: "http://127.0.0.1:8081".to_owned(),
            group_id: defaults.group_id.to_owned(),
            dlq_topic: vigil_schemas::topics::DLQ.to_owned(),
            retry_topics: defaults.retry_topics,
            max_in_flight_per_partition: defaults.max_in_flight_per_partition,
            pipeline_depth: defaults.pipeline_depth,
            commit_interval_ms: defaults.commit_interval_ms,
            shutdown_timeout_ms: defaults.shutdown_timeout_ms,
        }
    }

    /// Deserializes the consumer keys, taking `defaults` for those not written. Services call
    /// it from the `deserialize_with` function of their flattened `consumer` field.
    pub fn deserialize_with_defaults<'de, D: Deserializer<'de>>(
        deserializer: D,
        defaults: ConsumerDefaults,
    ) -> Result<Self, D::Error> {
        let keys = ConsumerKeys::deserialize(deserializer)?;
        let d = Self::with_defaults(defaults);
        Ok(Self {
            kafka: keys.kafka.unwrap_or(d.kafka),
            schema_registry_url: keys.schema_registry_url.unwrap_or(d.schema_registry_url),
            group_id: keys.group_id.unwrap_or(d.group_id),
            dlq_topic: keys.dlq_topic.unwrap_or(d.dlq_topic),
            retry_topics: keys.retry_topics.unwrap_or(d.retry_topics),
            max_in_flight_per_partition: keys
                .max_in_flight_per_partition
                .unwrap_or(d.max_in_flight_per_partition),
            pipeline_depth: keys.pipeline_depth.unwrap_or(d.pipeline_depth),
            commit_interval_ms: keys.commit_interval_ms.unwrap_or(d.commit_interval_ms),
            shutdown_timeout_ms: keys.shutdown_timeout_ms.unwrap_or(d.shutdown_timeout_ms),
        })
    }

    /// Applies `VIGIL_KAFKA_BOOTSTRAP` and `VIGIL_SCHEMA_REGISTRY_URL` from `get`.
    pub fn apply_address_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        vigil_topology::config_file::apply_address_env(
            &get,
            &mut self.kafka,
            &mut self.schema_registry_url,
        );
    }

    /// Returns the consumer runtime configuration of `service` consuming `source_topic`.
    pub fn runtime_config(&self, service: &str, source_topic: &str) -> RuntimeConfig {
        let mut c = RuntimeConfig::new(service, &self.group_id, vec![source_topic.to_owned()]);
        c.retry_topics = self.retry_topics.clone();
        c.dlq_topic = self.dlq_topic.clone();
        c.max_in_flight_per_partition = self.max_in_flight_per_partition;
        c.pipeline_depth = self.pipeline_depth;
        c.commit_interval_ms = self.commit_interval_ms;
        c.shutdown_timeout_ms = self.shutdown_timeout_ms;
        c
    }

    /// Checks the consumer keys of `service` consuming `source_topic`, naming the first
    /// offending key.
    pub fn validate(
        &self,
        service: &'static str,
        source_topic: &str,
    ) -> Result<(), ServiceConfigError> {
        let invalid =
            |key: String, reason: String| ServiceConfigError::invalid(service, key, reason);
        self.kafka
            .validate()
            .map_err(|e| invalid("kafka".to_owned(), e.to_string()))?;
        if !self.schema_registry_url.starts_with("http://")
            && !self.schema_registry_url.starts_with("https://")
        {
            return Err(invalid(
                "schema_registry_url".to_owned(),
                format!("must be an http(s) URL, got {:?}", self.schema_registry_url),
            ));
        }
        self.runtime_config(service, source_topic)
            .validate()
            .map_err(|e| invalid(e.key, e.reason))
    }
}

/// A service configuration that cannot be used, naming the offending key as `<service>.<key>`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceConfigError {
    /// A value is out of range.
    #[error("{}{service}.{key}: {reason}", file_prefix(.path.as_deref()))]
    Invalid {
        /// The file, for services whose messages name it (the alerter's `<defaults>` too).
        path: Option<String>,
        /// The service's config table, e.g. `verifier` or `audit_sink`.
        service: &'static str,
        /// The offending key, e.g. `receivers[1].url`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret named by the configuration could not be read.
    #[error("{service}.{key}: cannot read secret: {reason}")]
    Secret {
        /// The service's config table.
        service: &'static str,
        /// The key naming the secret.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The file could not be read or parsed (unknown keys included).
    #[error(transparent)]
    File(#[from] ConfigFileError),
}

impl ServiceConfigError {
    /// Returns an [`ServiceConfigError::Invalid`] without a file name.
    pub fn invalid(
        service: &'static str,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ServiceConfigError::Invalid {
            path: None,
            service,
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Returns the error naming `path` as its file, for services whose messages name it.
    #[must_use]
    pub fn in_file(self, path: &str) -> Self {
        match self {
            ServiceConfigError::Invalid {
                service,
                key,
                reason,
                ..
            } => ServiceConfigError::Invalid {
                path: Some(path.to_owned()),
                service,
                key,
                reason,
            },
            other => other,
        }
    }

    /// Returns the offending key, if the error names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ServiceConfigError::Invalid { key, .. } | ServiceConfigError::Secret { key, .. } => {
                Some(key)
            }
            ServiceConfigError::File(_) => None,
        }
    }
}

fn file_prefix(path: Option<&str>) -> String {
    path.map(|p| format!("{p}: ")).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// A service table as the services write theirs: own keys plus the flattened consumer keys.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[serde(default)]
        own_ms: u64,
        #[serde(flatten, deserialize_with = "probe_consumer")]
        consumer: ConsumerConfig,
    }

    fn probe_defaults() -> ConsumerDefaults {
        ConsumerDefaults {
            retry_topics: Vec::new(),
            pipeline_depth: 8,
            ..ConsumerDefaults::runtime("probe-group")
        }
    }

    fn probe_consumer<'de, D: Deserializer<'de>>(d: D) -> Result<ConsumerConfig, D::Error> {
        ConsumerConfig::deserialize_with_defaults(d, probe_defaults())
    }

    fn parse(text: &str) -> Result<Probe, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn flattened_keys_sit_beside_the_service_s_own_and_take_its_defaults() {
        let empty = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty.own_ms, 0);
        assert_eq!(
            empty.consumer,
            ConsumerConfig::with_defaults(probe_defaults())
        );
        assert_eq!(empty.consumer.group_id, "probe-group");
        assert_eq!(empty.consumer.pipeline_depth, 8);
        assert_eq!(empty.consumer.max_in_flight_per_partition, 64);
        assert_eq!(empty.consumer.kafka.bootstrap_servers, "127.0.0.1:9092");

        let set = parse(
            "own_ms = 5\ngroup_id = \"g\"\npipeline_depth = 3\nshutdown_timeout_ms = 9\n\
             [[retry_topics]]\ntopic = \"r.1s\"\ndelay_ms = 1000\n\
             [kafka]\nbootstrap_servers = \"k:1\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.own_ms, 5);
        assert_eq!(set.consumer.group_id, "g");
        assert_eq!(set.consumer.pipeline_depth, 3);
        assert_eq!(set.consumer.shutdown_timeout_ms, 9);
        assert_eq!(set.consumer.retry_topics.len(), 1);
        assert_eq!(set.consumer.kafka.bootstrap_servers, "k:1");
        let rc = set.consumer.runtime_config("probe", "src");
        assert_eq!(rc.service, "probe");
        assert_eq!(rc.topics, vec!["src".to_owned()]);
        assert_eq!(rc.group_id, "g");
        assert_eq!(rc.pipeline_depth, 3);
        assert_eq!(rc.shutdown_timeout_ms, 9);
        assert_eq!(rc.retry_topics, set.consumer.retry_topics);
    }

    #[test]
    fn unknown_keys_are_refused_by_name_beside_flattened_ones() {
        let e = parse("pipeline_dept = 3\n").expect_err("unknown top-level key");
        assert!(e.contains("pipeline_dept"), "{e}");
        let e = parse("own_ms = 1\ngroup_id = \"g\"\nbogus = 1\n").expect_err("unknown");
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[kafka]\nbootstrap = \"k:1\"\n").expect_err("unknown kafka key");
        assert!(e.contains("bootstrap"), "{e}");
        let e = parse("[[retry_topics]]\ntopic = \"t\"\ndelay = 1\n").expect_err("unknown");
        assert!(e.contains("delay"), "{e}");
        let e = parse("pipeline_depth = \"x\"\n").expect_err("wrong type");
        assert!(e.contains("invalid type"), "{e}");
    }

    type Mutation = Box<dyn Fn(&mut ConsumerConfig)>;

    #[test]
    fn validation_names_the_consumer_key() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("kafka", Box::new(|c| c.kafka.bootstrap_servers.clear())),
            (
                "schema_registry_url",
                Box::new(|c| c.schema_registry_url = "x".into()),
            ),
            ("group_id", Box::new(|c| c.group_id = " ".into())),
            ("dlq_topic", Box::new(|c| c.dlq_topic = "src".into())),
            (
                "retry_topics[0].topic",
                Box::new(|c| {
                    c.retry_topics = vec![RetryTopic {
                        topic: "src".into(),
                        delay_ms: 1,
                    }]
                }),
            ),
            (
                "max_in_flight_per_partition",
                Box::new(|c| c.max_in_flight_per_partition = 0),
            ),
            ("pipeline_depth", Box::new(|c| c.pipeline_depth = 0)),
            ("commit_interval_ms", Box::new(|c| c.commit_interval_ms = 0)),
            (
                "shutdown_timeout_ms",
                Box::new(|c| c.shutdown_timeout_ms = 0),
            ),
        ];
        ConsumerConfig::with_defaults(probe_defaults())
            .validate("probe", "src")
            .unwrap_or_else(|e| panic!("defaults: {e}"));
        for (key, mutate) in cases {
            let mut c = ConsumerConfig::with_defaults(probe_defaults());
            mutate(&mut c);
            let e = c.validate("probe", "src").expect_err(key);
            assert_eq!(e.key(), Some(key), "{e}");
            assert!(e.to_string().starts_with(&format!("probe.{key}: ")), "{e}");
            let in_file = e.in_file("p.toml").to_string();
            assert!(
                in_file.starts_with(&format!("p.toml: probe.{key}: ")),
                "{in_file}"
            );
        }
    }

    #[test]
    fn messages_name_the_service_key_and_file() {
        let e = ServiceConfigError::invalid("verifier", "raw_topic", "must not be empty");
        assert_eq!(e.to_string(), "verifier.raw_topic: must not be empty");
        assert_eq!(e.key(), Some("raw_topic"));
        let e = ServiceConfigError::Invalid {
            path: Some("a.yaml".into()),
            service: "alerter",
            key: "receivers[0].url".into(),
            reason: "url or url_file is required".into(),
        };
        assert_eq!(
            e.to_string(),
            "a.yaml: alerter.receivers[0].url: url or url_file is required"
        );
        let e = ServiceConfigError::Secret {
            service: "alerter",
            key: "api.bearer_token_file".into(),
            reason: "the API needs a bearer token".into(),
        };
        assert_eq!(
            e.to_string(),
            "alerter.api.bearer_token_file: cannot read secret: the API needs a bearer token"
        );
    }
}
