//! Kafka client configuration shared by every Vigil producer and consumer.
//!
//! librdkafka's defaults allow a 1 GiB producer queue and a consumer prefetch of up to 64 MiB per
//! partition; Vigil bounds both explicitly here so a service's memory is known in advance.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// Options that have a first-class field or that Vigil's delivery guarantees depend on; the
/// `librdkafka` pass-through table may not set them.
const RESERVED_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "client.id",
    "group.id",
    "enable.idempotence",
    "acks",
    "enable.auto.offset.store",
    "isolation.level",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queued.max.messages.kbytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "message.max.bytes",
    "transactional.id",
];

/// Errors in Kafka client configuration, found before any connection is made.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    /// A pass-through option tried to override one Vigil manages.
    #[error("kafka.librdkafka.{key}: reserved option; use the first-class setting instead")]
    Reserved {
        /// The offending option.
        key: String,
    },
    /// A value is out of range.
    #[error("kafka.{key}: {reason}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How Vigil connects to Kafka, shared by all its clients.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaClientConfig {
    /// Comma-separated `host:port` list; `VIGIL_KAFKA_BOOTSTRAP` overrides it.
    pub bootstrap_servers: String,
    /// Client id reported to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Upper bound of the producer's in-memory queue, in bytes.
    #[serde(default = "default_producer_queue_bytes")]
    pub producer_queue_bytes: u64,
    /// Upper bound of the producer's in-memory queue, in messages.
    #[serde(default = "default_producer_queue_messages")]
    pub producer_queue_messages: u32,
    /// How long the producer waits to fill a batch (default 2 ms). Every hop of the pipeline
    /// pays it: measured on the 2-core dev host, 5 ms made emit → webhook p50 14 ms / p99 19.5 ms
    /// at 20 events/s and 2 ms made it 7.7 / 11.9 ms (`scripts/bench-e2e-latency`), while the
    /// verifier drained a backlog faster (25–26k vs 15k events/s) at the same CPU per event
    /// (`scripts/bench-verifier`): its pipelined partitions wait on acknowledgements, which
    /// linger delays. Under heavy CPU contention 1 ms cost several times more broker-thread CPU.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Producer compression codec (`none`, `lz4`, `zstd`, ...).
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Upper bound of the consumer's prefetch queue, in bytes, across its partitions.
    #[serde(default = "default_consumer_prefetch_bytes")]
    pub consumer_prefetch_bytes: u64,
    /// Largest record the clients accept, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u32,
    /// Extra librdkafka options passed through unchanged (never the reserved ones).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

fn default_client_id() -> String {
    "vigil".to_owned()
}
fn default_producer_queue_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_producer_queue_messages() -> u32 {
    100_000
}
fn default_linger_ms() -> u32 {
    2
}
fn default_compression() -> String {
    "lz4".to_owned()
}
fn default_consumer_prefetch_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_message_bytes() -> u32 {
    16 * 1024 * 1024
}

impl KafkaClientConfig {
    /// Returns the defaults for a given bootstrap list.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: default_client_id(),
            producer_queue_bytes: default_producer_queue_bytes(),
            producer_queue_messages: default_producer_queue_messages(),
            linger_ms: default_linger_ms(),
            compression: default_compression(),
            consumer_prefetch_bytes: default_consumer_prefetch_bytes(),
            max_message_bytes: default_max_message_bytes(),
            librdkafka: BTreeMap::new(),
        }
    }

    /// Reads the bootstrap list from `VIGIL_KAFKA_BOOTSTRAP`, defaulting to the local stack.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("VIGIL_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned()),
        )
    }

    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(KafkaConfigError::Invalid {
                key: "bootstrap_servers",
                reason: "must not be empty".to_owned(),
            });
        }
        // librdkafka's own limits: queue.buffering.max.kbytes <= 2147483647 KiB.
        if self.producer_queue_bytes < 1024 || self.producer_queue_bytes / 1024 > i32::MAX as u64 {
            return Err(KafkaConfigError::Invalid {
                key: "producer_queue_bytes",
                reason: format!(
                    "must be between 1 KiB and 2 TiB, got {}",
                    self.producer_queue_bytes
                ),
            });
        }
        if self.producer_queue_messages == 0 {
            return Err(KafkaConfigError::Invalid {
                key: "producer_queue_messages",
                reason: "must be >= 1".to_owned(),
            });
        }
        if self.consumer_prefetch_bytes < 1024 || self.consumer_prefetch_bytes / 1024 > 2_097_151 {
            return Err(KafkaConfigError::Invalid {
                key: "consumer_prefetch_bytes",
                reason: format!(
                    "must be between 1 KiB and 2 GiB, got {}",
                    self.consumer_prefetch_bytes
                ),
            });
        }
        if self.max_message_bytes < 1000 {
            return Err(KafkaConfigError::Invalid {
                key: "max_message_bytes",
                reason: format!("must be >= 1000, got {}", self.max_message_bytes),
            });
        }
        for key in self.librdkafka.keys() {
            if RESERVED_OPTIONS.contains(&key.as_str()) {
                return Err(KafkaConfigError::Reserved { key: key.clone() });
            }
        }
        Ok(())
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("message.max.bytes", self.max_message_bytes.to_string());
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// Returns an idempotent producer configuration with a bounded queue.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set(
                "queue.buffering.max.kbytes",
                (self.producer_queue_bytes / 1024).to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                self.producer_queue_messages.to_string(),
            );
        c
    }

    /// Returns a transactional producer configuration (exactly-once writes to Kafka).
    pub fn transactional_producer(&self, transactional_id: &str) -> ClientConfig {
        let mut c = self.producer();
        c.set("transactional.id", transactional_id);
        c
    }

    /// Returns an at-least-once consumer configuration: offsets are stored by the application
    /// only after a record is handled, then committed in the background; prefetch is bounded.
    pub fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        // librdkafka counts the prefetch bound per partition; a tenth of the total per partition
        // keeps a consumer with a dozen partitions within the configured bound.
        let prefetch_kb = (self.consumer_prefetch_bytes / 1024).max(1);
        let per_partition = (self.consumer_prefetch_bytes / 10).max(64 * 1024);
        let fetch =
            (self.consumer_prefetch_bytes / 8).clamp(64 * 1024, u64::from(self.max_message_bytes));
        c.set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("queued.max.messages.kbytes", prefetch_kb.to_string())
            .set("queued.min.messages", "1000")
            // librdkafka's default (1000 ms) leaves a partition unfetched for a whole second once
            // its prefetch queue reached the bound; measured by the audit sink's bench, that
            // capped a backlog drain at a third of ClickHouse's insert rate.
            .set("fetch.queue.backoff.ms", "10")
            // librdkafka checks the prefetch bound only before a fetch, and one fetch may return
            // up to fetch.max.bytes of compressed batches: with fetch.max.bytes at the message
            // bound (16 MiB), the audit sink's bench saw a whole 60 MiB backlog land in memory
            // at once (heaptrack). Fetches of an eighth of the prefetch bound keep the queue
            // plus one decompressed response within the bound for compression ratios up to ~6.
            // Larger records still arrive: the broker always returns a partition's first batch
            // whole, and receive.message.max.bytes stays above the largest message.
            // (librdkafka requires fetch.max.bytes ≥ message.max.bytes, which a consumer does
            // not otherwise use.)
            .set("message.max.bytes", fetch.to_string())
            .set("fetch.max.bytes", fetch.to_string())
            .set(
                "max.partition.fetch.bytes",
                per_partition.min(fetch).to_string(),
            )
            .set(
                "receive.message.max.bytes",
                (u64::from(self.max_message_bytes) + 64 * 1024).to_string(),
            );
        c
    }

    /// Returns an admin client configuration.
    pub fn admin(&self) -> ClientConfig {
        self.base()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_queue_is_bounded_and_idempotent() {
        let c = KafkaClientConfig::new("127.0.0.1:1").producer();
        assert_eq!(c.get("queue.buffering.max.kbytes"), Some("65536"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
    }

    #[test]
    fn consumer_stores_offsets_explicitly_and_bounds_prefetch() {
        let c = KafkaClientConfig::new("127.0.0.1:1").consumer("g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        // One fetch is an eighth of the 16 MiB bound; a 16 MiB record can still be received.
        assert_eq!(c.get("fetch.max.bytes"), Some("2097152"));
        assert_eq!(c.get("message.max.bytes"), Some("2097152"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("1677721"));
        assert_eq!(c.get("receive.message.max.bytes"), Some("16842752"));
    }

    #[test]
    fn pass_through_may_not_override_reserved_options() {
        let mut k = KafkaClientConfig::new("127.0.0.1:1");
        k.librdkafka
            .insert("enable.auto.offset.store".into(), "true".into());
        let err = k.validate().expect_err("reserved").to_string();
        assert!(err.contains("librdkafka.enable.auto.offset.store"), "{err}");
        k.librdkafka.clear();
        k.librdkafka
            .insert("socket.keepalive.enable".into(), "true".into());
        k.validate().expect("non-reserved passes");
        assert_eq!(k.producer().get("socket.keepalive.enable"), Some("true"));
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let mut k = KafkaClientConfig::new("127.0.0.1:1");
        k.producer_queue_bytes = 0;
        assert!(
            k.validate()
                .expect_err("bad")
                .to_string()
                .contains("producer_queue_bytes")
        );
        let mut k = KafkaClientConfig::new(" ");
        k.max_message_bytes = 5;
        assert!(
            k.validate()
                .expect_err("bad")
                .to_string()
                .contains("bootstrap_servers")
        );
    }
}
