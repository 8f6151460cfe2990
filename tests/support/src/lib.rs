#![allow(clippy::expect_used)] // test support: a failed setup should stop the test loudly

//! What Vigil's tests and benches share: service addresses from `VIGIL_*` variables (so the
//! same suite runs against `scripts/stack`, docker-compose or a real cluster), fresh topics,
//! producing and committed offsets (this file); a service running in-process
//! ([`RunningService`]), a child process ([`ChildProcess`]), a key registry
//! ([`KeyRegistryFixture`]), verified events fed straight into a topic ([`Feeder`]), alerts
//! read back ([`AlertReader`]), waiting ([`eventually`]) and metric values ([`metric`]).

pub mod alerts;
pub mod feed;
pub mod keys;
pub mod metrics;
pub mod pack;
pub mod process;
pub mod service;
pub mod wait;

pub use alerts::{AlertReader, ReadAlert};
pub use feed::Feeder;
pub use keys::KeyRegistryFixture;
pub use metrics::metric;
pub use process::ChildProcess;
pub use service::{RunningService, Shutdown};
pub use wait::{WAIT, eventually, eventually_async};

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Returns `VIGIL_KAFKA_BOOTSTRAP`, or panics with the command that sets it.
pub fn kafka_bootstrap() -> String {
    required("VIGIL_KAFKA_BOOTSTRAP")
}

/// Returns `VIGIL_SCHEMA_REGISTRY_URL` without a trailing slash.
pub fn schema_registry_url() -> String {
    required("VIGIL_SCHEMA_REGISTRY_URL")
        .trim_end_matches('/')
        .to_owned()
}

/// Returns `VIGIL_CLICKHOUSE_URL` without a trailing slash.
pub fn clickhouse_url() -> String {
    required("VIGIL_CLICKHOUSE_URL")
        .trim_end_matches('/')
        .to_owned()
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `eval \"$(scripts/stack up)\"` first, or use scripts/test")
    })
}

/// Registers `T`'s schema under `topic`'s value subject in the test registry and returns its id.
pub async fn register_schema<T: vigil_schemas::AvroRecord>(topic: &str) -> vigil_schemas::SchemaId {
    vigil_schemas::SchemaRegistry::new(&schema_registry_url())
        .unwrap_or_else(|e| panic!("schema registry client: {e}"))
        .register(&vigil_schemas::topics::value_subject(topic), T::SCHEMA_JSON)
        .await
        .unwrap_or_else(|e| panic!("registering the schema of {topic}: {e}"))
}

/// Returns a loopback port nothing listens on now (bound and released; a test that needs it to
/// stay free for long should bind it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
        .port()
}

/// Returns a topic name no other test uses (the rust-rdkafka `rand_test_topic` pattern).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Returns a client config pointing at the test broker.
pub fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", kafka_bootstrap());
    c
}

/// Creates a topic with `partitions` partitions and replication 1, and waits until it exists.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]).await;
}

/// Like [`create_topic`], with topic `configs` (`max.message.bytes`, `cleanup.policy`, ...).
pub async fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    create(topic).await;
}

/// Creates a one-partition compacted topic kept forever, as `topology/topics.yaml` declares the
/// state topics (`vigil.keys`, `vigil.alerter.state`); panics on failure.
pub async fn create_compacted_topic(name: &str) {
    create(
        NewTopic::new(name, 1, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact")
            .set("retention.ms", "-1"),
    )
    .await;
}

async fn create(topic: NewTopic<'_>) {
    let admin: AdminClient<DefaultClientContext> = client_config()
        .create()
        .expect("admin client for the test broker");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[topic], &opts)
        .await
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating test topic {t}: {e}"));
    }
}

/// The committed offset of each partition `0..partitions` of `topic` for `group`, -1 where the
/// group committed none. Reads without joining the group.
pub fn committed_offsets(
    group: &str,
    topic: &str,
    partitions: i32,
) -> std::collections::HashMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let mut c = client_config();
    c.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = c.create().expect("offset reader for the test broker");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => (p, o),
            _ => (p, -1),
        })
        .collect()
}

/// How many records `group` has committed over partitions `0..partitions` of `topic` (the
/// sum of the committed offsets; a partition with none counts 0).
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    committed_offsets(group, topic, partitions)
        .values()
        .map(|o| (*o).max(0))
        .sum()
}

/// Returns an idempotent producer for the test broker.
pub fn producer() -> rdkafka::producer::FutureProducer {
    let mut c = client_config();
    c.set("linger.ms", "1").set("enable.idempotence", "true");
    c.create().expect("producer for the test broker")
}

/// Sends `value` with `key` and `headers` to `topic` and waits for the acknowledgement.
pub async fn send(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: &[(&str, &[u8])],
) {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    p.send(
        rdkafka::producer::FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(h),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("sending to {topic}: {e}"));
}

/// Sends a signed record (key, value and every signature header) to `topic`.
pub async fn send_signed(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    r: &vigil_schemas::SignedRecord,
) {
    let headers: Vec<(&str, &[u8])> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    send(p, topic, &r.key, &r.value, &headers).await;
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// Partition read from.
    pub partition: i32,
    /// Offset read from.
    pub offset: i64,
    /// The record's timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads `topic` from the beginning with a throwaway group until `n` records arrived or
/// `timeout` passed.
pub async fn read_records(topic: &str, n: usize, timeout: Duration) -> Vec<ReadRecord> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    let mut c = client_config();
    c.set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = c.create().expect("reader for the test broker");
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribing to {topic}: {e}"));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let Ok(Ok(m)) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        out.push(ReadRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out
}
