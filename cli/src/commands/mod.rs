//! One module per `vigil` subcommand.

pub mod audit;
pub mod demo;
pub mod dlq;
pub mod keys;
pub mod produce;
pub mod rules;
pub mod run;
pub mod topology;

use std::time::Duration;

use anyhow::anyhow;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_schemas::SignedRecord;

/// Sends a signed record (key, value and every signature header) to `topic` and returns once
/// the broker acknowledged it, or `timeout` passed.
pub(crate) async fn send_signed(
    p: &FutureProducer,
    topic: &str,
    r: &SignedRecord,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k.as_str(),
            value: Some(v.as_slice()),
        });
    }
    p.send(
        FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers),
        timeout,
    )
    .await
    .map_err(|(e, _)| anyhow!("sending to {topic}: {e}"))?;
    Ok(())
}
