//! One record read from the DLQ, with its runtime headers parsed leniently.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use vigil_consumer::RecordHeader;
use vigil_consumer::dead_letter::{self, DeadLetterHeaderError, DeadLetterHeaders};

/// Shown for a header (class, origin) a record does not carry or carries garbled.
pub const UNKNOWN: &str = "unknown";

/// A DLQ position: `PARTITION:OFFSET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coordinate {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

impl FromStr for Coordinate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, o) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not PARTITION:OFFSET"))?;
        let partition: i32 = p
            .parse()
            .map_err(|e| format!("partition {p:?} in {s:?}: {e}"))?;
        let offset: i64 = o
            .parse()
            .map_err(|e| format!("offset {o:?} in {s:?}: {e}"))?;
        if partition < 0 || offset < 0 {
            return Err(format!("{s:?}: partition and offset must not be negative"));
        }
        Ok(Coordinate { partition, offset })
    }
}

/// A record as it sits in the DLQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it sits.
    pub at: Coordinate,
    /// The DLQ record's own timestamp (when it was parked), ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub value: Option<Vec<u8>>,
    /// Every header: the original ones, then the runtime block.
    pub headers: Vec<RecordHeader>,
    /// The runtime block, or why it could not be read.
    pub parsed: Result<DeadLetterHeaders, DeadLetterHeaderError>,
}

impl DeadLetter {
    /// Builds a record from its parts, parsing the runtime block.
    pub fn new(
        at: Coordinate,
        timestamp_ms: Option<i64>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<RecordHeader>,
    ) -> Self {
        let parsed = DeadLetterHeaders::parse(&headers);
        Self {
            at,
            timestamp_ms,
            key,
            value,
            headers,
            parsed,
        }
    }

    /// Returns the error class, or `unknown`.
    pub fn error_class(&self) -> &str {
        match &self.parsed {
            Ok(h) => h.error_class.as_str(),
            Err(_) => UNKNOWN,
        }
    }

    /// Returns the origin topic, or `unknown`.
    pub fn origin_topic(&self) -> &str {
        match &self.parsed {
            Ok(h) => &h.origin_topic,
            Err(_) => UNKNOWN,
        }
    }

    /// Returns the last error message, or why the headers could not be read.
    pub fn error(&self) -> String {
        match &self.parsed {
            Ok(h) => h.error.clone(),
            Err(e) => format!("unreadable dead-letter headers: {e}"),
        }
    }

    /// Returns when it failed last (`vigil-last-failed-at`), else the DLQ record's timestamp.
    pub fn failed_at_ms(&self) -> Option<i64> {
        match &self.parsed {
            Ok(h) => Some(h.last_failed_at_ms),
            Err(_) => self.timestamp_ms,
        }
    }

    /// Returns the original headers (everything before the runtime block).
    pub fn original_headers(&self) -> &[RecordHeader] {
        dead_letter::split_headers(&self.headers).0
    }

    /// Returns a SHA-256 over key, value and headers, each length-prefixed so no two different
    /// records share an encoding; a plan binds its coordinates to these digests.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut part = |bytes: Option<&[u8]>| match bytes {
            None => h.update([0u8]),
            Some(b) => {
                h.update([1u8]);
                h.update((b.len() as u64).to_be_bytes());
                h.update(b);
            }
        };
        part(self.key.as_deref());
        part(self.value.as_deref());
        part(Some(&(self.headers.len() as u64).to_be_bytes()));
        for (k, v) in &self.headers {
            part(Some(k.as_bytes()));
            part(v.as_deref());
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_parse_and_refuse_garbage() {
        assert_eq!(
            "3:42".parse::<Coordinate>(),
            Ok(Coordinate {
                partition: 3,
                offset: 42
            })
        );
        for bad in ["", "3", "a:1", "1:b", "-1:0", "0:-5", "1:2:3"] {
            assert!(bad.parse::<Coordinate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn garbled_headers_read_as_unknown_and_digest_separates_fields() {
        let at = Coordinate {
            partition: 0,
            offset: 1,
        };
        let r = DeadLetter::new(
            at,
            Some(7),
            None,
            Some(vec![1]),
            vec![("vigil-error-class".into(), Some(vec![0xff]))],
        );
        assert_eq!(r.error_class(), UNKNOWN);
        assert_eq!(r.origin_topic(), UNKNOWN);
        assert_eq!(r.failed_at_ms(), Some(7));
        let moved = DeadLetter::new(at, Some(7), Some(vec![1]), None, r.headers.clone());
        assert_ne!(r.digest(), moved.digest());
    }
}
