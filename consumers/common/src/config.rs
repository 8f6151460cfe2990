//! Configuration of the consumer runtime: what to consume, how hard to retry, where failures go.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// A configuration value that is out of range, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consumer.{key}: {reason}")]
pub struct ConfigError {
    /// The offending key, e.g. `retry.initial_backoff_ms` or `retry_topics[1].delay_ms`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// How one consumer group of a service consumes, retries and dead-letters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Name of the service, used as the `service` metric label (e.g. `verifier`).
    pub service: String,
    /// Kafka consumer group id; also written to `vigil-consumer-group` so a retry record is
    /// handled only by the group that failed it.
    pub group_id: String,
    /// Topics the service handles. The retry topics are subscribed to in addition.
    pub topics: Vec<String>,
    /// Records handed to one partition's worker and not yet handled; when full, the partition is
    /// paused until its worker catches up.
    #[serde(default = "default_max_in_flight_per_partition")]
    pub max_in_flight_per_partition: usize,
    /// Handler calls running at once for consecutive records of one partition, started in
    /// offset order; offsets are still stored strictly in order. 1 (the default) handles one
    /// record at a time. Deeper pipelines overlap a handler's waits (a produce acknowledgement)
    /// and let it batch work across records; a crash then re-delivers up to this many records
    /// per partition.
    #[serde(default = "default_pipeline_depth")]
    pub pipeline_depth: usize,
    /// In-process retries of transient errors.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Delayed retry topics, tried in order after the in-process attempts; empty means a record
    /// goes to the DLQ as soon as its in-process attempts are spent.
    #[serde(default = "default_retry_topics")]
    pub retry_topics: Vec<RetryTopic>,
    /// Where records that cannot be handled are parked, original bytes untouched.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// How often stored offsets are committed in the background.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How often librdkafka reports statistics (consumer lag); 0 disables the lag metric.
    #[serde(default = "default_statistics_interval_ms")]
    pub statistics_interval_ms: u64,
    /// How long a shutdown waits for workers to finish the records they hold.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
}

/// A delayed retry topic and how long a record waits in it before it is handled again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryTopic {
    /// Topic name, e.g. `vigil.retry.10s`.
    pub topic: String,
    /// Delay between the failure and the next attempt.
    pub delay_ms: u64,
}

/// How transient errors are retried inside the process before a record moves to a retry topic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Handler calls per stage (the original topic, then each retry topic), the first included.
    #[serde(default = "default_in_process_attempts")]
    pub in_process_attempts: u32,
    /// Backoff ceiling after the first failure; it doubles with each further failure.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff ceiling.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// How the actual wait is drawn below the ceiling.
    #[serde(default)]
    pub jitter: Jitter,
}

/// Randomisation of backoff waits, so that many consumers failing together do not retry together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform between zero and the ceiling ("full jitter").
    #[default]
    Full,
    /// Exactly the ceiling.
    None,
}

fn default_max_in_flight_per_partition() -> usize {
    64
}
fn default_pipeline_depth() -> usize {
    1
}
fn default_retry_topics() -> Vec<RetryTopic> {
    vec![
        RetryTopic {
            topic: "vigil.retry.10s".to_owned(),
            delay_ms: 10_000,
        },
        RetryTopic {
            topic: "vigil.retry.5m".to_owned(),
            delay_ms: 300_000,
        },
    ]
}
fn default_dlq_topic() -> String {
    "vigil.dlq".to_owned()
}
fn default_commit_interval_ms() -> u64 {
    5_000
}
fn default_statistics_interval_ms() -> u64 {
    5_000
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_in_process_attempts() -> u32 {
    3
}
fn default_initial_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    5_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            in_process_attempts: default_in_process_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            jitter: Jitter::default(),
        }
    }
}

/// Longest delay a retry topic may declare; longer waits belong in a scheduler, not a consumer.
const MAX_RETRY_DELAY_MS: u64 = 24 * 3600 * 1000;

impl RetryPolicy {
    /// Returns the wait after failed attempt number `failures` (1 for the first failure): a ceiling
    /// of `initial_backoff_ms * 2^(failures-1)` capped at `max_backoff_ms`, jittered.
    pub fn backoff(&self, failures: u32) -> Duration {
        self.backoff_with(failures, &mut rand::thread_rng())
    }

    /// Like [`RetryPolicy::backoff`], with the random source given (for tests).
    pub fn backoff_with(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling_ms(failures);
        let ms = match self.jitter {
            Jitter::Full => rng.gen_range(0..=ceiling),
            Jitter::None => ceiling,
        };
        Duration::from_millis(ms)
    }

    /// Returns the backoff ceiling after `failures` failures, never above `max_backoff_ms`.
    pub fn ceiling_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.in_process_attempts) {
            return Err(invalid(
                "retry.in_process_attempts",
                format!(
                    "must be between 1 and 100, got {}",
                    self.in_process_attempts
                ),
            ));
        }
        if self.initial_backoff_ms == 0 {
            return Err(invalid("retry.initial_backoff_ms", "must be >= 1"));
        }
        if self.max_backoff_ms < self.initial_backoff_ms || self.max_backoff_ms > 3_600_000 {
            return Err(invalid(
                "retry.max_backoff_ms",
                format!(
                    "must be between retry.initial_backoff_ms ({}) and 3600000, got {}",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            ));
        }
        Ok(())
    }
}

impl RuntimeConfig {
    /// Returns a configuration with the defaults for everything but what identifies the consumer.
    pub fn new(
        service: impl Into<String>,
        group_id: impl Into<String>,
        topics: Vec<String>,
    ) -> Self {
        Self {
            service: service.into(),
            group_id: group_id.into(),
            topics,
            max_in_flight_per_partition: default_max_in_flight_per_partition(),
            pipeline_depth: default_pipeline_depth(),
            retry: RetryPolicy::default(),
            retry_topics: default_retry_topics(),
            dlq_topic: default_dlq_topic(),
            commit_interval_ms: default_commit_interval_ms(),
            statistics_interval_ms: default_statistics_interval_ms(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
        }
    }

    /// Checks every value, naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The service name becomes a metric label: keep it short and plain.
        if self.service.is_empty()
            || self.service.len() > 64
            || !self
                .service
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "service",
                format!(
                    "must be 1-64 characters of [a-z0-9_-], got {:?}",
                    self.service
                ),
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("group_id", "must not be empty"));
        }
        if self.topics.is_empty() {
            return Err(invalid("topics", "must name at least one topic"));
        }
        // Every topic the runtime reads or writes must be distinct: consuming its own DLQ or a
        // retry topic as a source would loop records forever.
        let mut seen = BTreeSet::new();
        for (i, t) in self.topics.iter().enumerate() {
            check_topic_name(&format!("topics[{i}]"), t)?;
            if !seen.insert(t.as_str()) {
                return Err(invalid(
                    format!("topics[{i}]"),
                    format!("{t:?} is listed twice"),
                ));
            }
        }
        for (i, r) in self.retry_topics.iter().enumerate() {
            let key = format!("retry_topics[{i}].topic");
            check_topic_name(&key, &r.topic)?;
            if !seen.insert(r.topic.as_str()) {
                return Err(invalid(key, format!("{:?} is already used", r.topic)));
            }
            if r.delay_ms > MAX_RETRY_DELAY_MS {
                return Err(invalid(
                    format!("retry_topics[{i}].delay_ms"),
                    format!("must be <= {MAX_RETRY_DELAY_MS}, got {}", r.delay_ms),
                ));
            }
        }
        check_topic_name("dlq_topic", &self.dlq_topic)?;
        if seen.contains(self.dlq_topic.as_str()) {
            return Err(invalid(
                "dlq_topic",
                format!(
                    "{:?} is also consumed; the DLQ must be a topic of its own",
                    self.dlq_topic
                ),
            ));
        }
        if !(1..=100_000).contains(&self.max_in_flight_per_partition) {
            return Err(invalid(
                "max_in_flight_per_partition",
                format!(
                    "must be between 1 and 100000, got {}",
                    self.max_in_flight_per_partition
                ),
            ));
        }
        if !(1..=10_000).contains(&self.pipeline_depth) {
            return Err(invalid(
                "pipeline_depth",
                format!("must be between 1 and 10000, got {}", self.pipeline_depth),
            ));
        }
        self.retry.validate()?;
        if !(100..=3_600_000).contains(&self.commit_interval_ms) {
            return Err(invalid(
                "commit_interval_ms",
                format!(
                    "must be between 100 and 3600000, got {}",
                    self.commit_interval_ms
                ),
            ));
        }
        if self.statistics_interval_ms != 0
            && !(100..=3_600_000).contains(&self.statistics_interval_ms)
        {
            return Err(invalid(
                "statistics_interval_ms",
                format!(
                    "must be 0 or between 100 and 3600000, got {}",
                    self.statistics_interval_ms
                ),
            ));
        }
        if !(1..=3_600_000).contains(&self.shutdown_timeout_ms) {
            return Err(invalid(
                "shutdown_timeout_ms",
                format!(
                    "must be between 1 and 3600000, got {}",
                    self.shutdown_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// Returns every topic the runtime subscribes to: the service's topics, then the retry topics.
    pub fn subscribed_topics(&self) -> Vec<&str> {
        self.topics
            .iter()
            .map(String::as_str)
            .chain(self.retry_topics.iter().map(|r| r.topic.as_str()))
            .collect()
    }

    /// Returns the position of `topic` among the retry topics, if it is one.
    pub(crate) fn retry_stage_of(&self, topic: &str) -> Option<usize> {
        self.retry_topics.iter().position(|r| r.topic == topic)
    }
}

/// Kafka's own rules for topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let legal = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if legal {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{name:?} is not a legal topic name (1-249 characters of [a-zA-Z0-9._-])"),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config() -> RuntimeConfig {
        RuntimeConfig::new(
            "verifier",
            "vigil-verifier",
            vec!["vigil.events.raw".to_owned()],
        )
    }

    #[test]
    fn defaults_are_valid_and_match_the_topology() {
        let c = config();
        c.validate().expect("defaults validate");
        assert_eq!(c.retry.in_process_attempts, 3);
        assert_eq!(c.retry.initial_backoff_ms, 100);
        assert_eq!(c.retry.max_backoff_ms, 5_000);
        assert_eq!(
            c.subscribed_topics(),
            ["vigil.events.raw", "vigil.retry.10s", "vigil.retry.5m"]
        );
        assert_eq!(c.dlq_topic, "vigil.dlq");
    }

    #[test]
    fn toml_uses_defaults_and_refuses_unknown_keys() {
        let c: RuntimeConfig = toml::from_str(
            r#"
            service = "verifier"
            group_id = "vigil-verifier"
            topics = ["vigil.events.raw"]
            [retry]
            in_process_attempts = 5
            jitter = "none"
            "#,
        )
        .expect("parses");
        assert_eq!(c.retry.in_process_attempts, 5);
        assert_eq!(c.retry.jitter, Jitter::None);
        assert_eq!(c.retry.max_backoff_ms, 5_000);
        assert_eq!(c.retry_topics, config().retry_topics);

        let err = toml::from_str::<RuntimeConfig>(
            "service = \"v\"\ngroup_id = \"g\"\ntopics = [\"t\"]\nretry_delay = 5\n",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("retry_delay"), "{err}");
    }

    #[test]
    fn validation_names_the_offending_key() {
        type Mutation = Box<dyn Fn(&mut RuntimeConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "service",
                Box::new(|c| c.service = "Verifier Service".into()),
            ),
            ("group_id", Box::new(|c| c.group_id = " ".into())),
            ("topics", Box::new(|c| c.topics.clear())),
            (
                "topics[1]",
                Box::new(|c| c.topics.push("vigil.events.raw".into())),
            ),
            ("topics[0]", Box::new(|c| c.topics[0] = "bad topic".into())),
            (
                "retry_topics[1].topic",
                Box::new(|c| c.retry_topics[1].topic = "vigil.retry.10s".into()),
            ),
            (
                "retry_topics[0].topic",
                Box::new(|c| c.retry_topics[0].topic = "vigil.events.raw".into()),
            ),
            (
                "retry_topics[1].delay_ms",
                Box::new(|c| c.retry_topics[1].delay_ms = u64::MAX),
            ),
            (
                "dlq_topic",
                Box::new(|c| c.dlq_topic = "vigil.retry.5m".into()),
            ),
            ("dlq_topic", Box::new(|c| c.dlq_topic = String::new())),
            (
                "max_in_flight_per_partition",
                Box::new(|c| c.max_in_flight_per_partition = 0),
            ),
            ("pipeline_depth", Box::new(|c| c.pipeline_depth = 0)),
            (
                "retry.in_process_attempts",
                Box::new(|c| c.retry.in_process_attempts = 0),
            ),
            (
                "retry.initial_backoff_ms",
                Box::new(|c| c.retry.initial_backoff_ms = 0),
            ),
            (
                "retry.max_backoff_ms",
                Box::new(|c| c.retry.max_backoff_ms = 50),
            ),
            ("commit_interval_ms", Box::new(|c| c.commit_interval_ms = 0)),
            (
                "statistics_interval_ms",
                Box::new(|c| c.statistics_interval_ms = 5),
            ),
            (
                "shutdown_timeout_ms",
                Box::new(|c| c.shutdown_timeout_ms = 0),
            ),
        ];
        for (key, mutate) in cases {
            let mut c = config();
            mutate(&mut c);
            let err = c.validate().expect_err(key);
            assert_eq!(err.key, key, "{err}");
            assert!(
                err.to_string().starts_with(&format!("consumer.{key}: ")),
                "{err}"
            );
        }
        let mut c = config();
        c.retry_topics.clear();
        c.statistics_interval_ms = 0;
        c.validate()
            .expect("no retry topics and no statistics are allowed");
    }

    #[test]
    fn backoff_ceiling_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        let ceilings: Vec<u64> = (1..=8).map(|f| p.ceiling_ms(f)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.ceiling_ms(0), 100);
        assert_eq!(
            p.ceiling_ms(u32::MAX),
            5000,
            "huge attempt counts must not overflow"
        );
        let exact = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        assert_eq!(exact.backoff(3), Duration::from_millis(400));
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..=10 {
            let ceiling = Duration::from_millis(p.ceiling_ms(failures));
            let draws: Vec<Duration> = (0..500)
                .map(|_| p.backoff_with(failures, &mut rng))
                .collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "failures={failures}");
            let below_half = draws.iter().filter(|d| **d < ceiling / 2).count();
            // Uniform draws: about half fall below the midpoint; 150..350 of 500 is far from chance.
            assert!(
                (150..350).contains(&below_half),
                "failures={failures}: {below_half}"
            );
        }
    }
}
