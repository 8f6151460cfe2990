//! Emitter settings: what a platform team puts in its deployment's TOML.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::spool::{FsyncPolicy, SpoolConfig};

/// Invalid emitter settings, naming the offending key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("producer.{key}: {reason}")]
pub struct ConfigError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Settings of an [`crate::Emitter`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitterConfig {
    /// Topic events are written to.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Events `emit` may queue in memory before it spills to the spool.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// How long librdkafka keeps retrying a record before it is moved to the spool.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Directory of the crash-safe spool; one emitter per directory.
    pub spool_dir: PathBuf,
    /// Upper bound of the spool on disk; past it events are dropped and counted.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Size of one spool segment file.
    #[serde(default = "default_spool_segment_bytes")]
    pub spool_segment_bytes: u64,
    /// When spooled records are forced to disk: `always`, `never`, `every:N` records or
    /// `interval_ms:N`.
    #[serde(default = "default_spool_fsync")]
    pub spool_fsync: String,
    /// Records replayed from the spool per batch once the broker is back.
    #[serde(default = "default_drain_batch_records")]
    pub drain_batch_records: usize,
    /// How long `close` waits for in-flight records before it spools them.
    #[serde(default = "default_close_timeout_ms")]
    pub close_timeout_ms: u64,
}

fn default_topic() -> String {
    "vigil.events.raw".to_owned()
}
fn default_queue_capacity() -> usize {
    10_000
}
fn default_delivery_timeout_ms() -> u64 {
    10_000
}
fn default_spool_max_bytes() -> u64 {
    SpoolConfig::DEFAULT_MAX_BYTES
}
fn default_spool_segment_bytes() -> u64 {
    SpoolConfig::DEFAULT_SEGMENT_BYTES
}
fn default_spool_fsync() -> String {
    "every:1000".to_owned()
}
fn default_drain_batch_records() -> usize {
    1000
}
fn default_close_timeout_ms() -> u64 {
    10_000
}

impl EmitterConfig {
    /// Returns the defaults with the spool in `spool_dir`.
    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            topic: default_topic(),
            queue_capacity: default_queue_capacity(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: default_spool_max_bytes(),
            spool_segment_bytes: default_spool_segment_bytes(),
            spool_fsync: default_spool_fsync(),
            drain_batch_records: default_drain_batch_records(),
            close_timeout_ms: default_close_timeout_ms(),
        }
    }

    /// Checks every value, naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| {
            Err(ConfigError {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.topic.is_empty() {
            return err("topic", "must not be empty");
        }
        if self.queue_capacity == 0 || self.queue_capacity > 10_000_000 {
            return err("queue_capacity", "must be between 1 and 10000000");
        }
        if !(100..=3_600_000).contains(&self.delivery_timeout_ms) {
            return err("delivery_timeout_ms", "must be between 100 and 3600000");
        }
        if self.drain_batch_records == 0 || self.drain_batch_records > 100_000 {
            return err("drain_batch_records", "must be between 1 and 100000");
        }
        self.fsync_policy()?;
        self.spool_config().validate().map_err(|e| ConfigError {
            key: "spool",
            reason: e.to_string(),
        })
    }

    /// Parses `spool_fsync`.
    pub fn fsync_policy(&self) -> Result<FsyncPolicy, ConfigError> {
        let bad = || ConfigError {
            key: "spool_fsync",
            reason: format!(
                "expected always, never, every:N or interval_ms:N, got {:?}",
                self.spool_fsync
            ),
        };
        match self.spool_fsync.split_once(':') {
            None if self.spool_fsync == "always" => Ok(FsyncPolicy::Always),
            None if self.spool_fsync == "never" => Ok(FsyncPolicy::Never),
            Some(("every", n)) => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(FsyncPolicy::EveryN(n)),
                _ => Err(bad()),
            },
            Some(("interval_ms", n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(n))),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// Returns the spool settings these values describe.
    pub fn spool_config(&self) -> SpoolConfig {
        let mut c = SpoolConfig::new(&self.spool_dir);
        c.max_bytes = self.spool_max_bytes;
        c.segment_bytes = self.spool_segment_bytes;
        c.fsync = self.fsync_policy().unwrap_or(SpoolConfig::DEFAULT_FSYNC);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_rejects_unknown_keys() {
        EmitterConfig::new("/tmp/x")
            .validate()
            .expect("defaults valid");
        let parsed: Result<EmitterConfig, _> =
            toml::from_str("spool_dir = \"/tmp/x\"\nqueue_capcity = 5\n");
        assert!(
            parsed
                .expect_err("unknown key")
                .to_string()
                .contains("queue_capcity")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = EmitterConfig::new("/tmp/x");
        c.spool_fsync = "sometimes".into();
        assert_eq!(c.validate().expect_err("bad").key, "spool_fsync");
        let mut c = EmitterConfig::new("/tmp/x");
        c.queue_capacity = 0;
        assert_eq!(c.validate().expect_err("bad").key, "queue_capacity");
        let mut c = EmitterConfig::new("/tmp/x");
        c.spool_segment_bytes = 1;
        assert_eq!(c.validate().expect_err("bad").key, "spool");
    }

    #[test]
    fn fsync_policies_parse() {
        let mut c = EmitterConfig::new("/tmp/x");
        for (text, want) in [
            ("always", FsyncPolicy::Always),
            ("never", FsyncPolicy::Never),
            ("every:10", FsyncPolicy::EveryN(10)),
            (
                "interval_ms:50",
                FsyncPolicy::Interval(Duration::from_millis(50)),
            ),
        ] {
            c.spool_fsync = text.into();
            assert_eq!(c.fsync_policy(), Ok(want));
        }
    }
}
