//! Which dead letters a command looks at.

use serde::{Deserialize, Serialize};

use crate::error::DlqError;
use crate::record::DeadLetter;

/// Filters shared by `list`, `stats`, `replay` and plans; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Error class (`bad_data`, `transient`, or `unknown` for unreadable headers).
    pub error_class: Option<String>,
    /// Origin topic.
    pub origin_topic: Option<String>,
    /// Failed at or after this time, ms since the epoch (inclusive).
    pub from_ms: Option<i64>,
    /// Failed before this time, ms since the epoch (exclusive).
    pub to_ms: Option<i64>,
}

impl Filter {
    /// Returns true when `record` passes every set field; the time is `vigil-last-failed-at`,
    /// else the DLQ record's timestamp, and a record with neither fails any time bound.
    pub fn matches(&self, record: &DeadLetter) -> bool {
        if self
            .error_class
            .as_deref()
            .is_some_and(|c| c != record.error_class())
        {
            return false;
        }
        if self
            .origin_topic
            .as_deref()
            .is_some_and(|t| t != record.origin_topic())
        {
            return false;
        }
        if self.from_ms.is_none() && self.to_ms.is_none() {
            return true;
        }
        let Some(at) = record.failed_at_ms() else {
            return false;
        };
        self.from_ms.is_none_or(|f| at >= f) && self.to_ms.is_none_or(|t| at < t)
    }

    /// Checks the bounds are ordered.
    pub fn validate(&self) -> Result<(), DlqError> {
        if let (Some(f), Some(t)) = (self.from_ms, self.to_ms)
            && f >= t
        {
            return Err(DlqError::Invalid(format!(
                "--from ({}) must be before --to ({})",
                format_ms(f),
                format_ms(t)
            )));
        }
        if let Some(c) = &self.error_class
            && !["bad_data", "transient", "rejected", "internal", "unknown"].contains(&c.as_str())
        {
            return Err(DlqError::Invalid(format!(
                "--error-class {c:?}: expected bad_data, transient or unknown"
            )));
        }
        Ok(())
    }
}

/// Parses an RFC 3339 time (`2026-11-23T03:00:00Z`) into ms since the epoch.
pub fn parse_time(text: &str) -> Result<i64, DlqError> {
    vigil_schemas::model::parse_rfc3339(text)
        .map(|micros| micros.div_euclid(1000))
        .ok_or_else(|| DlqError::Invalid(format!("{text:?} is not an RFC 3339 time")))
}

/// Formats ms since the epoch as RFC 3339, or the number itself when out of range.
pub fn format_ms(ms: i64) -> String {
    ms.checked_mul(1000)
        .and_then(vigil_schemas::model::format_rfc3339)
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::Coordinate;

    fn rec(headers: Vec<(&str, &str)>, ts: Option<i64>) -> DeadLetter {
        DeadLetter::new(
            Coordinate {
                partition: 0,
                offset: 0,
            },
            ts,
            None,
            None,
            headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v.as_bytes().to_vec())))
                .collect(),
        )
    }

    #[test]
    fn time_bounds_are_half_open_and_fall_back_to_record_time() {
        let f = Filter {
            from_ms: Some(10),
            to_ms: Some(20),
            ..Filter::default()
        };
        assert!(f.matches(&rec(vec![], Some(10))));
        assert!(f.matches(&rec(vec![], Some(19))));
        assert!(!f.matches(&rec(vec![], Some(20))));
        assert!(!f.matches(&rec(vec![], None)));
        let unknown = Filter {
            error_class: Some("unknown".into()),
            ..Filter::default()
        };
        assert!(unknown.matches(&rec(vec![("x", "y")], None)));
    }

    #[test]
    fn times_parse_and_validate() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert!(parse_time("yesterday").is_err());
        let f = Filter {
            from_ms: Some(2),
            to_ms: Some(1),
            ..Filter::default()
        };
        assert!(f.validate().is_err());
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
    }
}
