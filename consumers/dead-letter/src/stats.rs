//! Counts of dead letters by error class, origin topic and hour of failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::filter::format_ms;
use crate::record::{DeadLetter, UNKNOWN};

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;

/// Counts over a set of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Records counted.
    pub total: u64,
    /// Records whose runtime headers are missing or garbled.
    pub unreadable_headers: u64,
    /// By `vigil-error-class` (`unknown` when unreadable).
    pub by_error_class: BTreeMap<String, u64>,
    /// By `vigil-origin-topic` (`unknown` when unreadable).
    pub by_origin_topic: BTreeMap<String, u64>,
    /// By hour of `vigil-last-failed-at` (RFC 3339, UTC, truncated to the hour).
    pub by_hour: BTreeMap<String, u64>,
}

impl Stats {
    /// Counts one record.
    pub fn add(&mut self, record: &DeadLetter) {
        self.total += 1;
        if record.parsed.is_err() {
            self.unreadable_headers += 1;
        }
        *self
            .by_error_class
            .entry(record.error_class().to_owned())
            .or_default() += 1;
        *self
            .by_origin_topic
            .entry(record.origin_topic().to_owned())
            .or_default() += 1;
        let hour = record.failed_at_ms().map_or_else(
            || UNKNOWN.to_owned(),
            |t| format_ms(t.div_euclid(HOUR_MS) * HOUR_MS),
        );
        *self.by_hour.entry(hour).or_default() += 1;
    }

    /// Renders the counts as three plain-text tables.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "total {}  (unreadable headers: {})",
            self.total, self.unreadable_headers
        );
        for (title, map) in [
            ("error class", &self.by_error_class),
            ("origin topic", &self.by_origin_topic),
            ("hour (last failure, UTC)", &self.by_hour),
        ] {
            let width = map
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(0)
                .max(title.len());
            let _ = writeln!(out, "\n{title:<width$}  count");
            for (k, n) in map {
                let _ = writeln!(out, "{k:<width$}  {n:>5}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Coordinate;

    #[test]
    fn unreadable_records_are_counted_as_unknown() {
        let mut s = Stats::default();
        s.add(&DeadLetter::new(
            Coordinate {
                partition: 0,
                offset: 0,
            },
            Some(HOUR_MS + 5),
            None,
            None,
            vec![],
        ));
        assert_eq!(s.total, 1);
        assert_eq!(s.unreadable_headers, 1);
        assert_eq!(s.by_error_class.get(UNKNOWN), Some(&1));
        assert_eq!(s.by_hour.get("1970-01-01T01:00:00Z"), Some(&1));
        assert!(s.to_table().contains("unknown"));
    }
}
