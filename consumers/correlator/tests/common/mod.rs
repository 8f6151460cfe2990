//! Shared setup of the correlator tests: fresh topics and groups, a correlator running in this
//! process (or in a child process), with vigil-test-support's feeder of the verified topic and
//! reader of the alerts topic.

#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use vigil_consumer::{ConsumerConfig, RunSummary};
use vigil_correlator::{CorrelatorConfig, CorrelatorError};
use vigil_test_support::{ChildProcess, RunningService, create_topic};
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_topology::{KafkaClientConfig, Telemetry};

// Producing, waiting and topic creation are vigil-test-support's, shared with the other crates.
#[allow(unused_imports)] // not every test binary uses every helper
pub use vigil_test_support::feed::{bad, event};
#[allow(unused_imports)]
pub use vigil_test_support::{
    AlertReader, Feeder, KeyRegistryFixture, ReadAlert, create_topic_with, eventually, producer,
    send_signed,
};

/// The built-in rule pack of the repository.
pub fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

/// Fresh verified / alerts / DLQ topics for one correlator test.
pub struct Topics {
    pub verified: String,
    pub alerts: String,
    pub dlq: String,
}

impl Topics {
    pub async fn create(verified_partitions: i32) -> Self {
        let t = Topics {
            verified: unique_name("ct-verified"),
            alerts: unique_name("ct-alerts"),
            dlq: unique_name("ct-dlq"),
        };
        create_topic(&t.verified, verified_partitions).await;
        create_topic(&t.alerts, 1).await;
        create_topic(&t.dlq, 1).await;
        t
    }

    /// A correlator configuration over these topics with a fresh group and the built-in pack.
    pub fn config(&self) -> CorrelatorConfig {
        let defaults = CorrelatorConfig::default();
        CorrelatorConfig {
            consumer: ConsumerConfig {
                kafka: KafkaClientConfig {
                    linger_ms: 1,
                    ..KafkaClientConfig::new(kafka_bootstrap())
                },
                schema_registry_url: schema_registry_url(),
                group_id: unique_name("ct-group"),
                dlq_topic: self.dlq.clone(),
                // The shared vigil.retry.* topics would mix this test's group with everyone
                // else's.
                retry_topics: Vec::new(),
                commit_interval_ms: 200,
                shutdown_timeout_ms: 10_000,
                ..defaults.consumer.clone()
            },
            verified_topic: self.verified.clone(),
            alerts_topic: self.alerts.clone(),
            rules_dir: rules_dir(),
            reload_poll_ms: 0,
            rebuild_timeout_ms: 30_000,
            ..defaults
        }
    }

    /// The same configuration as TOML, for a correlator in a child process.
    pub fn config_toml(&self, group: &str) -> String {
        format!(
            "schema_registry_url = {:?}\ngroup_id = {group:?}\nverified_topic = {:?}\nalerts_topic = {:?}\ndlq_topic = {:?}\nretry_topics = []\nrules_dir = {:?}\nreload_poll_ms = 0\ncommit_interval_ms = 200\n[kafka]\nbootstrap_servers = {:?}\nlinger_ms = 1\n",
            schema_registry_url(),
            self.verified,
            self.alerts,
            self.dlq,
            rules_dir().display().to_string(),
            kafka_bootstrap(),
        )
    }
}

/// Returns a correlator counter (a series of it with `labels`) as a count.
pub fn count(correlator: &Correlator, name: &str, labels: &[(&str, &str)]) -> u64 {
    correlator.metric(name, labels) as u64
}

/// Returns how many events `correlator` evaluated.
pub fn events(correlator: &Correlator) -> u64 {
    count(correlator, "vigil_correlator_events_total", &[])
}

/// Waits until `correlator` evaluated `n` events.
pub async fn evaluated(correlator: &Correlator, n: u64) {
    eventually(
        &format!("{n} events evaluated"),
        Duration::from_secs(60),
        || events(correlator) >= n,
    )
    .await;
}

/// A correlator running in this process until stopped or aborted.
pub type Correlator = RunningService<Result<RunSummary, CorrelatorError>>;

/// Starts a correlator with `config` in this process.
pub fn start_correlator(config: CorrelatorConfig) -> Correlator {
    RunningService::spawn(move |telemetry, shutdown| async move {
        vigil_correlator::run(&config, &telemetry, shutdown).await
    })
}

/// Set in a re-executed test binary: the path of the TOML config its correlator runs.
const CHILD_ENV: &str = "VIGIL_CORRELATOR_CHILD_CONFIG";

/// A correlator in its own process: this test binary re-executed to run only the test `test`,
/// which starts with [`run_as_child`], with the correlator configuration at `config`. Killed
/// (SIGKILL) when dropped, however the test ends.
pub fn spawn_child(test: &str, config: &std::path::Path) -> ChildProcess {
    ChildProcess::this_test(test, CHILD_ENV, config)
}

/// In a child started by [`spawn_child`]: runs the correlator until killed. Returns
/// `false` at once in the test's own process.
pub async fn run_as_child() -> bool {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let config = CorrelatorConfig::from_toml(&text, &path).unwrap();
    vigil_correlator::run(&config, &Telemetry::new(), std::future::pending())
        .await
        .unwrap();
    true
}
