//! The replay ledger: a compacted topic with one entry per replayed DLQ record.
//!
//! Key `<dlq topic>/<partition>/<offset>`, value a JSON [`LedgerEntry`]. An entry is written in
//! the same Kafka transaction as the replayed record, so the ledger holds exactly the records
//! that reached their origin topic; a replay skips every coordinate the ledger holds.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::config::DlqConfig;
use crate::error::DlqError;
use crate::filter::Filter;
use crate::record::Coordinate;
use crate::scan::{Selection, scan_topic};

/// One replayed DLQ record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The DLQ topic.
    pub dlq_topic: String,
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Where the record was written back.
    pub origin_topic: String,
    /// Id of the replay (also in its configuration event).
    pub replay_id: String,
    /// When, ms since the epoch.
    pub replayed_at_ms: i64,
}

/// Returns the ledger key of a DLQ coordinate.
pub fn ledger_key(dlq_topic: &str, at: Coordinate) -> String {
    format!("{dlq_topic}/{}/{}", at.partition, at.offset)
}

/// Creates the ledger topic (1 partition, compacted, broker-default replication) if missing.
pub async fn ensure_topic(cfg: &DlqConfig) -> Result<(), DlqError> {
    let admin: AdminClient<DefaultClientContext> = cfg
        .kafka
        .admin()
        .create()
        .map_err(|e| DlqError::kafka("creating the admin client", e))?;
    let topic = NewTopic::new(&cfg.ledger_topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&[topic], &opts)
        .await
        .map_err(|e| DlqError::kafka(format!("creating {}", cfg.ledger_topic), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(DlqError::Invalid(format!(
                    "creating ledger topic {t}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Reads the coordinates of `cfg.dlq_topic` the ledger holds; an absent ledger is empty.
pub fn load(cfg: &DlqConfig) -> Result<HashSet<Coordinate>, DlqError> {
    let prefix = format!("{}/", cfg.dlq_topic);
    let mut done = HashSet::new();
    let result = scan_topic(
        cfg,
        &cfg.ledger_topic,
        &Selection::Filter(Filter::default()),
        |r| {
            // Keys are ours, but the topic is shared: anything unexpected is skipped.
            let coord = r
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|rest| rest.replacen('/', ":", 1).parse::<Coordinate>().ok());
            // A tombstone would un-record an entry; only entries with a value count.
            if let (Some(c), Some(_)) = (coord, r.value.as_ref()) {
                done.insert(c);
            }
            Ok(())
        },
    );
    match result {
        Ok(_) => Ok(done),
        Err(DlqError::NoSuchTopic(_)) => Ok(done),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_topic_partition_offset() {
        assert_eq!(
            ledger_key(
                "vigil.dlq",
                Coordinate {
                    partition: 2,
                    offset: 9
                }
            ),
            "vigil.dlq/2/9"
        );
    }
}
