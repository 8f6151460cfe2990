//! The one DLQ writer: every service that parks a record (the runtime's workers, the alerter's
//! undeliverable alerts, the audit sink's undecodable rows) writes it through [`write`].

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::DeadLetterHeaders;
use crate::handler::RecordHeader;

/// The original record as it is written back: key, value and headers byte for byte.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    /// Record key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Record value; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The original headers in wire order; the DLQ block is appended after them.
    pub headers: &'a [RecordHeader],
    /// Timestamp to give the parked record; `None` lets the producer stamp it.
    pub timestamp_ms: Option<i64>,
}

/// Returns the record to produce to `topic`: the original headers, then `block` (from
/// [`DeadLetterHeaders::to_headers`]), each name once.
fn record<'a>(
    topic: &'a str,
    original: &Original<'a>,
    block: &'a [(&'static str, Vec<u8>)],
) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(original.headers.len() + block.len());
    for (k, v) in original.headers {
        headers = headers.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    for (k, v) in block {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    let mut out = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(k) = original.key {
        out = out.key(k);
    }
    if let Some(v) = original.value {
        out = out.payload(v);
    }
    if let Some(ts) = original.timestamp_ms {
        out = out.timestamp(ts);
    }
    out
}

/// Writes `original` with the `headers` block to `topic` (the DLQ or a retry topic) and waits
/// for the broker's acknowledgement; `queue_timeout` bounds the wait for room in the producer
/// queue. One attempt: callers decide whether and how to retry.
pub async fn write(
    producer: &FutureProducer,
    topic: &str,
    original: &Original<'_>,
    headers: &DeadLetterHeaders,
    queue_timeout: Duration,
) -> Result<(), KafkaError> {
    let block = headers.to_headers();
    producer
        .send(record(topic, original, &block), queue_timeout)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;
    use crate::ErrorClass;

    #[test]
    fn the_record_keeps_the_original_bytes_and_appends_the_block() {
        let originals: Vec<RecordHeader> = vec![
            ("traceparent".into(), Some(b"00-abc-def-01".to_vec())),
            ("nullable".into(), None),
        ];
        let original = Original {
            key: Some(b"subject"),
            value: Some(&[0, 0, 0, 0, 1, 0xff]),
            headers: &originals,
            timestamp_ms: Some(1_700_000_000_000),
        };
        let dl = DeadLetterHeaders {
            error_class: ErrorClass::BadData,
            error: "bad framing".to_owned(),
            origin_topic: "vigil.events.raw".to_owned(),
            origin_partition: 3,
            origin_offset: 42,
            origin_timestamp_ms: None,
            consumer_group: "vigil-verifier".to_owned(),
            attempts: 1,
            first_failed_at_ms: 5,
            last_failed_at_ms: 6,
            retry_not_before_ms: None,
        };
        let block = dl.to_headers();
        let r = record("vigil.dlq", &original, &block);
        assert_eq!(r.topic, "vigil.dlq");
        assert_eq!(r.key, Some(&b"subject"[..]));
        assert_eq!(r.payload, Some(&[0u8, 0, 0, 0, 1, 0xff][..]));
        assert_eq!(r.timestamp, Some(1_700_000_000_000));
        let h = r.headers.as_ref().expect("headers");
        let names: Vec<&str> = h.iter().map(|h| h.key).collect();
        let mut expected = vec!["traceparent", "nullable"];
        expected.extend(super::super::DEAD_LETTER_HEADERS);
        assert_eq!(names, expected);
        assert_eq!(h.get(0).value, Some(&b"00-abc-def-01"[..]));
        assert_eq!(h.get(1).value, None);
        assert_eq!(h.get(2).value, Some(&b"bad_data"[..]));
        let no_ts = Original {
            timestamp_ms: None,
            ..original
        };
        assert_eq!(record("t", &no_ts, &block).timestamp, None);
    }
}
