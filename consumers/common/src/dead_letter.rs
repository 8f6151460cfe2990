//! The headers the runtime appends to a record it parks in the DLQ or a retry topic, and the
//! helpers that build and read them (the `vigil dlq` tooling uses the same ones).
//!
//! The original key, value and headers are kept byte for byte; the runtime's headers are appended
//! after the original ones as one block, each name once. Values are ASCII: decimal numbers,
//! timestamps in milliseconds since the Unix epoch (`-1` for a record without timestamp).
//! [`write`] is the one writer that produces a parked record.

mod writer;

pub use writer::{Original, write};

use crate::handler::{ErrorClass, RecordHeader};

/// Why the record was parked: `bad_data` or `transient` (attempt budget spent).
pub const ERROR_CLASS: &str = "vigil-error-class";
/// The handler's error message, truncated to [`MAX_ERROR_BYTES`].
pub const ERROR: &str = "vigil-error";
/// Topic the record was first written to.
pub const ORIGIN_TOPIC: &str = "vigil-origin-topic";
/// Partition of the original record.
pub const ORIGIN_PARTITION: &str = "vigil-origin-partition";
/// Offset of the original record.
pub const ORIGIN_OFFSET: &str = "vigil-origin-offset";
/// Timestamp of the original record, ms since the epoch, `-1` if it had none.
pub const ORIGIN_TIMESTAMP: &str = "vigil-origin-timestamp";
/// Consumer group that failed the record; a retry record is handled only by this group.
pub const CONSUMER_GROUP: &str = "vigil-consumer-group";
/// Handler calls made for the record so far, across every stage.
pub const ATTEMPTS: &str = "vigil-attempts";
/// When the first handler call failed, ms since the epoch.
pub const FIRST_FAILED_AT: &str = "vigil-first-failed-at";
/// When the last handler call failed, ms since the epoch.
pub const LAST_FAILED_AT: &str = "vigil-last-failed-at";
/// Retry records only: the record is not handled again before this time, ms since the epoch.
pub const RETRY_NOT_BEFORE: &str = "vigil-retry-not-before";

/// Every header a dead letter carries, in the order the runtime writes them.
pub const DEAD_LETTER_HEADERS: [&str; 10] = [
    ERROR_CLASS,
    ERROR,
    ORIGIN_TOPIC,
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
    ORIGIN_TIMESTAMP,
    CONSUMER_GROUP,
    ATTEMPTS,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
];

/// Every header name the runtime may append (dead-letter headers plus the retry deadline).
pub const RUNTIME_HEADERS: [&str; 11] = [
    ERROR_CLASS,
    ERROR,
    ORIGIN_TOPIC,
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
    ORIGIN_TIMESTAMP,
    CONSUMER_GROUP,
    ATTEMPTS,
    FIRST_FAILED_AT,
    LAST_FAILED_AT,
    RETRY_NOT_BEFORE,
];

/// Longest `vigil-error` value; longer messages are cut at a character boundary.
pub const MAX_ERROR_BYTES: usize = 1024;

/// A runtime header block that is missing a header or holds a value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterHeaderError {
    /// The header is absent (or null).
    #[error("header {0} is missing")]
    Missing(&'static str),
    /// The header's value is not what the runtime writes.
    #[error("header {header}: {reason}")]
    Invalid {
        /// The header name.
        header: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// The runtime's account of a parked record: where it came from and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterHeaders {
    /// Why the record was parked.
    pub error_class: ErrorClass,
    /// The last handler error message.
    pub error: String,
    /// Topic the record was first written to.
    pub origin_topic: String,
    /// Partition of the original record.
    pub origin_partition: i32,
    /// Offset of the original record.
    pub origin_offset: i64,
    /// Timestamp of the original record, if it had one.
    pub origin_timestamp_ms: Option<i64>,
    /// Consumer group that failed the record.
    pub consumer_group: String,
    /// Handler calls made so far, across every stage.
    pub attempts: u32,
    /// When the first handler call failed.
    pub first_failed_at_ms: i64,
    /// When the last handler call failed.
    pub last_failed_at_ms: i64,
    /// Retry records only: not handled again before this time.
    pub retry_not_before_ms: Option<i64>,
}

impl DeadLetterHeaders {
    /// Returns the header block to append after the original headers.
    pub fn to_headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut h = vec![
            (ERROR_CLASS, self.error_class.as_str().as_bytes().to_vec()),
            (
                ERROR,
                truncate_utf8(&self.error, MAX_ERROR_BYTES)
                    .as_bytes()
                    .to_vec(),
            ),
            (ORIGIN_TOPIC, self.origin_topic.as_bytes().to_vec()),
            (
                ORIGIN_PARTITION,
                self.origin_partition.to_string().into_bytes(),
            ),
            (ORIGIN_OFFSET, self.origin_offset.to_string().into_bytes()),
            (
                ORIGIN_TIMESTAMP,
                self.origin_timestamp_ms
                    .unwrap_or(-1)
                    .to_string()
                    .into_bytes(),
            ),
            (CONSUMER_GROUP, self.consumer_group.as_bytes().to_vec()),
            (ATTEMPTS, self.attempts.to_string().into_bytes()),
            (
                FIRST_FAILED_AT,
                self.first_failed_at_ms.to_string().into_bytes(),
            ),
            (
                LAST_FAILED_AT,
                self.last_failed_at_ms.to_string().into_bytes(),
            ),
        ];
        if let Some(t) = self.retry_not_before_ms {
            h.push((RETRY_NOT_BEFORE, t.to_string().into_bytes()));
        }
        h
    }

    /// Reads the runtime header block at the end of `headers` (see [`split_headers`]).
    pub fn parse(headers: &[RecordHeader]) -> Result<Self, DeadLetterHeaderError> {
        let (_, block) = split_headers(headers);
        let get = |name: &'static str| -> Result<&[u8], DeadLetterHeaderError> {
            block
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
                .ok_or(DeadLetterHeaderError::Missing(name))
        };
        let class_text = text(ERROR_CLASS, get(ERROR_CLASS)?)?;
        // A rejected record is a security event, never a dead letter.
        let error_class = ErrorClass::parse(class_text)
            .filter(|c| *c != ErrorClass::Rejected)
            .ok_or_else(|| DeadLetterHeaderError::Invalid {
                header: ERROR_CLASS,
                reason: format!("unknown class {class_text:?}"),
            })?;
        let origin_timestamp = number::<i64>(ORIGIN_TIMESTAMP, get(ORIGIN_TIMESTAMP)?)?;
        let retry_not_before_ms = match block.iter().find(|(k, _)| k == RETRY_NOT_BEFORE) {
            Some((_, Some(v))) => Some(number::<i64>(RETRY_NOT_BEFORE, v)?),
            Some((_, None)) => return Err(DeadLetterHeaderError::Missing(RETRY_NOT_BEFORE)),
            None => None,
        };
        let origin_partition = number::<i32>(ORIGIN_PARTITION, get(ORIGIN_PARTITION)?)?;
        if origin_partition < 0 {
            return Err(DeadLetterHeaderError::Invalid {
                header: ORIGIN_PARTITION,
                reason: format!("negative partition {origin_partition}"),
            });
        }
        let origin_offset = number::<i64>(ORIGIN_OFFSET, get(ORIGIN_OFFSET)?)?;
        if origin_offset < 0 {
            return Err(DeadLetterHeaderError::Invalid {
                header: ORIGIN_OFFSET,
                reason: format!("negative offset {origin_offset}"),
            });
        }
        let origin_topic = text(ORIGIN_TOPIC, get(ORIGIN_TOPIC)?)?.to_owned();
        if origin_topic.is_empty() {
            return Err(DeadLetterHeaderError::Invalid {
                header: ORIGIN_TOPIC,
                reason: "empty topic".to_owned(),
            });
        }
        Ok(Self {
            error_class,
            error: text(ERROR, get(ERROR)?)?.to_owned(),
            origin_topic,
            origin_partition,
            origin_offset,
            origin_timestamp_ms: (origin_timestamp >= 0).then_some(origin_timestamp),
            consumer_group: text(CONSUMER_GROUP, get(CONSUMER_GROUP)?)?.to_owned(),
            attempts: number::<u32>(ATTEMPTS, get(ATTEMPTS)?)?,
            first_failed_at_ms: number::<i64>(FIRST_FAILED_AT, get(FIRST_FAILED_AT)?)?,
            last_failed_at_ms: number::<i64>(LAST_FAILED_AT, get(LAST_FAILED_AT)?)?,
            retry_not_before_ms,
        })
    }
}

/// Splits `headers` into the original headers and the runtime block after them.
///
/// The block is the longest run at the end of the list made of runtime header names, each at
/// most once; everything before it is returned untouched, so a replay restores the original
/// headers exactly. (An original record that itself ended with runtime header names would be
/// ambiguous; replay tooling strips them before writing back to the original topic.)
pub fn split_headers(headers: &[RecordHeader]) -> (&[RecordHeader], &[RecordHeader]) {
    let mut seen = [false; RUNTIME_HEADERS.len()];
    let mut start = headers.len();
    while start > 0 {
        let name = headers[start - 1].0.as_str();
        match RUNTIME_HEADERS.iter().position(|n| *n == name) {
            Some(i) if !seen[i] => {
                seen[i] = true;
                start -= 1;
            }
            _ => break,
        }
    }
    headers.split_at(start)
}

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn text<'a>(header: &'static str, v: &'a [u8]) -> Result<&'a str, DeadLetterHeaderError> {
    std::str::from_utf8(v).map_err(|e| DeadLetterHeaderError::Invalid {
        header,
        reason: format!("not UTF-8: {e}"),
    })
}

fn number<T: std::str::FromStr>(header: &'static str, v: &[u8]) -> Result<T, DeadLetterHeaderError>
where
    T::Err: std::fmt::Display,
{
    let s = text(header, v)?;
    s.parse::<T>().map_err(|e| DeadLetterHeaderError::Invalid {
        header,
        reason: format!("{s:?} is not a number: {e}"),
    })
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> DeadLetterHeaders {
        DeadLetterHeaders {
            error_class: ErrorClass::Transient,
            error: "registry unavailable".to_owned(),
            origin_topic: "vigil.events.raw".to_owned(),
            origin_partition: 7,
            origin_offset: 123_456,
            origin_timestamp_ms: Some(1_700_000_000_000),
            consumer_group: "vigil-verifier".to_owned(),
            attempts: 9,
            first_failed_at_ms: 1_700_000_000_100,
            last_failed_at_ms: 1_700_000_310_000,
            retry_not_before_ms: None,
        }
    }

    fn with_originals(h: &DeadLetterHeaders, originals: &[RecordHeader]) -> Vec<RecordHeader> {
        let mut all = originals.to_vec();
        all.extend(
            h.to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v))),
        );
        all
    }

    #[test]
    fn dead_letter_block_carries_exactly_the_design_headers() {
        let names: Vec<&str> = sample().to_headers().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, DEAD_LETTER_HEADERS);
        let retry = DeadLetterHeaders {
            retry_not_before_ms: Some(5),
            ..sample()
        };
        let names: Vec<&str> = retry.to_headers().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, RUNTIME_HEADERS);
        let values: Vec<Vec<u8>> = sample().to_headers().into_iter().map(|(_, v)| v).collect();
        assert_eq!(values[3], b"7");
        assert_eq!(values[5], b"1700000000000");
    }

    #[test]
    fn build_then_parse_round_trips_and_keeps_original_headers() {
        let originals: Vec<RecordHeader> = vec![
            ("vigil-sig".into(), Some(vec![0, 255, 1, 2])),
            ("empty".into(), Some(vec![])),
            ("null".into(), None),
            // An original header may share a runtime name as long as it is not at the end.
            ("vigil-error".into(), Some(b"from a producer".to_vec())),
            ("traceparent".into(), Some(b"00-abc-def-01".to_vec())),
        ];
        for h in [
            sample(),
            DeadLetterHeaders {
                origin_timestamp_ms: None,
                retry_not_before_ms: Some(1_700_000_320_000),
                error_class: ErrorClass::BadData,
                ..sample()
            },
        ] {
            let all = with_originals(&h, &originals);
            assert_eq!(DeadLetterHeaders::parse(&all), Ok(h.clone()));
            let (orig, block) = split_headers(&all);
            assert_eq!(orig, originals.as_slice());
            assert_eq!(block.len(), h.to_headers().len());
        }
    }

    #[test]
    fn a_record_without_runtime_headers_splits_into_itself() {
        let originals: Vec<RecordHeader> = vec![("a".into(), Some(b"1".to_vec()))];
        let (orig, block) = split_headers(&originals);
        assert_eq!(orig, originals.as_slice());
        assert!(block.is_empty());
        assert_eq!(
            DeadLetterHeaders::parse(&originals),
            Err(DeadLetterHeaderError::Missing(ERROR_CLASS))
        );
    }

    #[test]
    fn malformed_values_name_their_header() {
        let cases: [(&str, &[u8]); 6] = [
            (ATTEMPTS, b"nine"),
            (ORIGIN_PARTITION, b"-3"),
            (ORIGIN_OFFSET, b"99999999999999999999999"),
            (ERROR_CLASS, b"rejected"),
            (ORIGIN_TOPIC, &[0xff, 0xfe]),
            (RETRY_NOT_BEFORE, b""),
        ];
        for (name, value) in cases {
            let mut all = with_originals(&sample(), &[]);
            all.retain(|(k, _)| k != name);
            all.push((name.to_owned(), Some(value.to_vec())));
            match DeadLetterHeaders::parse(&all) {
                Err(DeadLetterHeaderError::Invalid { header, .. }) => assert_eq!(header, name),
                other => panic!("{name}: expected invalid, got {other:?}"),
            }
        }
        let mut all = with_originals(&sample(), &[]);
        all.retain(|(k, _)| k != CONSUMER_GROUP);
        assert_eq!(
            DeadLetterHeaders::parse(&all),
            Err(DeadLetterHeaderError::Missing(CONSUMER_GROUP))
        );
    }

    #[test]
    fn long_errors_are_cut_at_a_character_boundary() {
        let h = DeadLetterHeaders {
            error: "é".repeat(MAX_ERROR_BYTES),
            ..sample()
        };
        let block = h.to_headers();
        let error = &block[1].1;
        assert!(error.len() <= MAX_ERROR_BYTES);
        assert!(std::str::from_utf8(error).is_ok());
        assert_eq!(error.len(), MAX_ERROR_BYTES);
    }
}
