#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Shared pieces of the runtime's integration tests: fresh topics per test, a scripted handler
//! that records every call, producing, reading back, committed offsets and metric values.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_consumer::{
    ConsumerRuntime, HandleError, Handler, InboundRecord, Outcome, RecordHeader, RetryPolicy,
    RetryTopic, RunSummary, RuntimeConfig, RuntimeError,
};
#[allow(unused_imports)] // not every test binary uses every helper
pub use vigil_test_support::{RunningService, WAIT, eventually, eventually_async, metric};
use vigil_topology::{KafkaClientConfig, LogFormat};

/// A set of fresh topics and a consumer group used by one test.
pub struct Topics {
    pub source: String,
    pub retry: Vec<String>,
    pub dlq: String,
    pub group: String,
}

impl Topics {
    /// Creates a source topic with `partitions` partitions, two retry topics and a DLQ.
    pub async fn create(partitions: i32) -> Self {
        vigil_topology::telemetry::init_tracing(LogFormat::Text, "warn");
        let t = Topics {
            source: vigil_test_support::unique_name("consumer-src"),
            retry: vec![
                vigil_test_support::unique_name("consumer-retry1"),
                vigil_test_support::unique_name("consumer-retry2"),
            ],
            dlq: vigil_test_support::unique_name("consumer-dlq"),
            group: vigil_test_support::unique_name("consumer-group"),
        };
        vigil_test_support::create_topic(&t.source, partitions).await;
        for r in &t.retry {
            vigil_test_support::create_topic(r, 2).await;
        }
        vigil_test_support::create_topic(&t.dlq, 1).await;
        t
    }

    /// Returns a runtime configuration with test-sized timings: 1 s and 2 s retry topics.
    pub fn config(&self) -> RuntimeConfig {
        let mut c = RuntimeConfig::new("test", self.group.clone(), vec![self.source.clone()]);
        c.retry = RetryPolicy {
            in_process_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 50,
            ..RetryPolicy::default()
        };
        c.retry_topics = vec![
            RetryTopic {
                topic: self.retry[0].clone(),
                delay_ms: 1_000,
            },
            RetryTopic {
                topic: self.retry[1].clone(),
                delay_ms: 2_000,
            },
        ];
        c.dlq_topic = self.dlq.clone();
        c.commit_interval_ms = 500;
        c.statistics_interval_ms = 500;
        c.shutdown_timeout_ms = 20_000;
        c
    }
}

pub fn kafka() -> KafkaClientConfig {
    KafkaClientConfig::new(vigil_test_support::kafka_bootstrap())
}

/// What the scripted handler answers for one call.
pub type Script = dyn Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync;

/// A handler that answers by script and records every call with the time it was made.
pub struct Scripted {
    script: Box<Script>,
    delay: Box<dyn Fn(&InboundRecord) -> Duration + Send + Sync>,
    pub calls: Mutex<Vec<(Instant, InboundRecord)>>,
}

impl Scripted {
    pub fn new(
        script: impl Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::slow(Duration::ZERO, script)
    }

    /// Like `new`, but every call takes `delay`.
    pub fn slow(
        delay: Duration,
        script: impl Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Self::delayed(move |_| delay, script)
    }

    /// Like `new`, but a call for record `r` first sleeps `delay(r)` (without blocking a thread).
    pub fn delayed(
        delay: impl Fn(&InboundRecord) -> Duration + Send + Sync + 'static,
        script: impl Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Box::new(script),
            delay: Box::new(delay),
            calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<InboundRecord> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn timed_calls(&self) -> Vec<(Instant, InboundRecord)> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Handler for Scripted {
    async fn handle(&self, record: &InboundRecord) -> Result<Outcome, HandleError> {
        let delay = (self.delay)(record);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), record.clone()));
        (self.script)(record)
    }
}

/// A runtime running in the background until `stop` is called.
pub type Running = RunningService<Result<RunSummary, RuntimeError>>;

/// Starts `handler` under a runtime with `config` in the background.
pub fn start_runtime<H: Handler>(config: RuntimeConfig, handler: Arc<H>) -> Running {
    RunningService::spawn(move |telemetry, shutdown| {
        let runtime = ConsumerRuntime::new(config, &kafka(), &telemetry).expect("valid runtime");
        async move { runtime.run(handler, shutdown).await }
    })
}

pub fn producer() -> FutureProducer {
    kafka().producer().create().expect("test producer")
}

/// Produces one record and returns its (partition, offset).
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) -> (i32, i64) {
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
    if let Some(p) = partition {
        r = r.partition(p);
    }
    if let Some(k) = key {
        r = r.key(k);
    }
    if let Some(v) = value {
        r = r.payload(v);
    }
    let d = producer
        .send(r, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("test record delivered");
    (d.partition, d.offset)
}

pub use vigil_test_support::ReadRecord;

/// Reads `n` records of `topic` from the beginning with a throwaway group.
pub async fn read(topic: &str, n: usize) -> Vec<ReadRecord> {
    let out = vigil_test_support::read_records(topic, n, WAIT).await;
    assert_eq!(
        out.len(),
        n,
        "read {} of {n} records from {topic}",
        out.len()
    );
    out
}

fn admin_consumer(group: &str) -> BaseConsumer {
    let mut c: ClientConfig = vigil_test_support::client_config();
    c.set("group.id", group).set("enable.auto.commit", "false");
    c.create().expect("offset reader")
}

/// Returns the high watermark of each partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let c = admin_consumer(&vigil_test_support::unique_name("watermarks"));
    (0..partitions)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

/// Returns the committed offset of each partition of `topic` for `group` (-1 when none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    vigil_test_support::committed_offsets(group, topic, partitions)
}

/// Returns a value's text, for assertions.
pub fn text(v: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned()
}
