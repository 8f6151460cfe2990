//! Where the tooling reads and writes, and the names it uses.

use std::time::Duration;

use vigil_topology::KafkaClientConfig;

/// Header added to every replayed record: `<dlq topic>/<partition>/<offset>`.
pub const REPLAYED_FROM: &str = "vigil-replayed-from";
/// Default replay ledger topic (compacted, keyed by `<dlq topic>/<partition>/<offset>`).
pub const DEFAULT_LEDGER_TOPIC: &str = "vigil.dlq.replays";
/// Default bound on the records one command reads into memory (list, replay, plan).
pub const DEFAULT_MAX_RECORDS: usize = 100_000;

/// Where the tooling reads and writes.
#[derive(Debug, Clone)]
pub struct DlqConfig {
    /// Kafka client settings.
    pub kafka: KafkaClientConfig,
    /// The dead-letter topic read.
    pub dlq_topic: String,
    /// The replay ledger topic.
    pub ledger_topic: String,
    /// Where replay configuration events go.
    pub events_topic: String,
    /// Upper bound of any one scan or broker round trip sequence.
    pub timeout: Duration,
    /// Upper bound of the records one command holds in memory.
    pub max_records: usize,
}

impl DlqConfig {
    /// Returns the defaults for the given Kafka settings (`vigil.dlq`, `vigil.dlq.replays`,
    /// `vigil.events.raw`, 60 s, [`DEFAULT_MAX_RECORDS`]).
    pub fn new(kafka: KafkaClientConfig) -> Self {
        Self {
            kafka,
            dlq_topic: vigil_schemas::topics::DLQ.to_owned(),
            ledger_topic: DEFAULT_LEDGER_TOPIC.to_owned(),
            events_topic: vigil_schemas::topics::EVENTS_RAW.to_owned(),
            timeout: Duration::from_secs(60),
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}
