//! Configuration of `vigil run audit-sink` (the `[audit_sink]` table of the deployment TOML).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vigil_topology::config_file::{self, ConfigFileError, ConfigFormat};

/// A configuration value that is out of range or unreadable, named by its key (the error type
/// every service's configuration shares).
pub use vigil_consumer::ServiceConfigError as ConfigError;

/// The table of the deployment TOML the sink reads; the rest of the file is not its business.
const TABLE: &str = "audit_sink";

/// The deployment TOML as the sink reads it: only its own table, every other one ignored.
#[derive(Debug, Default, Deserialize)]
struct Deployment {
    #[serde(default)]
    audit_sink: Option<AuditSinkConfig>,
}

/// Settings of the audit sink. The ClickHouse URL comes from `VIGIL_CLICKHOUSE_URL` and the
/// signing key from a file (never from the TOML itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSinkConfig {
    /// Topic to consume; every partition is assigned statically to this one sink instance.
    pub topic: String,
    /// Consumer group id (used only for broker-side bookkeeping: offsets live in ClickHouse).
    pub group: String,
    /// ClickHouse database holding the audit tables (created by the migrations).
    pub database: String,
    /// A batch is flushed when it holds this many rows.
    pub batch_max_rows: usize,
    /// A batch is flushed when its rows' encoded size reaches this many bytes.
    pub batch_max_bytes: usize,
    /// A non-empty batch is flushed at the latest this long after its first row arrived.
    pub flush_interval_ms: u64,
    /// A digest row is written after this many events since the last one.
    pub digest_every_events: u64,
    /// A digest row is written at least this often while events arrive.
    pub digest_interval_ms: u64,
    /// `audit_events` rows expire this many years after `occurred_at` (applied by migrations).
    pub retention_years: u32,
    /// PKCS#8 PEM file of the sink's own Ed25519 digest-signing key (`VIGIL_AUDIT_SIGNING_KEY_FILE`).
    pub signing_key_file: Option<PathBuf>,
    /// Key id recorded with each digest; defaults to the id derived from the public key.
    pub signing_key_id: Option<String>,
    /// Topic for records that are not decodable `VerifiedEvent`s.
    pub dlq_topic: String,
    /// First retry delay of a failed ClickHouse write.
    pub retry_initial_ms: u64,
    /// Longest retry delay of a failed ClickHouse write (retries go on until shutdown).
    pub retry_max_ms: u64,
}

impl Default for AuditSinkConfig {
    fn default() -> Self {
        AuditSinkConfig {
            topic: vigil_schemas::topics::EVENTS_VERIFIED.to_owned(),
            group: "vigil-audit-sink".to_owned(),
            database: "vigil".to_owned(),
            batch_max_rows: 10_000,
            batch_max_bytes: 32 * 1024 * 1024,
            flush_interval_ms: 1_000,
            digest_every_events: 10_000,
            digest_interval_ms: 60_000,
            retention_years: 7,
            signing_key_file: None,
            signing_key_id: None,
            dlq_topic: vigil_schemas::topics::DLQ.to_owned(),
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
        }
    }
}

impl AuditSinkConfig {
    /// Parses the `[audit_sink]` table of a deployment TOML document (defaults without one).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let doc: Deployment = config_file::parse(text, path, ConfigFormat::Toml)?;
        Ok(doc.audit_sink.unwrap_or_default())
    }

    /// Reads the `[audit_sink]` table of the deployment TOML at `path` (the defaults when
    /// `path` is `None` or the file has no such table); then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let shown = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ConfigFileError::Read {
                    path: shown.clone(),
                    source,
                })?;
                Self::from_toml(&text, &shown)?
            }
            None => Self::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    /// Applies `VIGIL_AUDIT_TOPIC`, `VIGIL_AUDIT_DATABASE` and `VIGIL_AUDIT_GROUP` from `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("VIGIL_AUDIT_TOPIC") {
            self.topic = v;
        }
        if let Some(v) = get("VIGIL_AUDIT_DATABASE") {
            self.database = v;
        }
        if let Some(v) = get("VIGIL_AUDIT_GROUP") {
            self.group = v;
        }
    }

    /// Fails fast naming the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError::invalid(TABLE, key, reason));
        if self.topic.is_empty() {
            return bad("topic", "must not be empty");
        }
        if self.group.is_empty() {
            return bad("group", "must not be empty");
        }
        if !is_identifier(&self.database) {
            return bad("database", "must be an identifier ([A-Za-z_][A-Za-z0-9_]*)");
        }
        if !(1..=1_000_000).contains(&self.batch_max_rows) {
            return bad("batch_max_rows", "must be in 1..=1000000");
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.batch_max_bytes) {
            return bad("batch_max_bytes", "must be in 1 KiB..=1 GiB");
        }
        if !(1..=600_000).contains(&self.flush_interval_ms) {
            return bad("flush_interval_ms", "must be in 1..=600000");
        }
        if self.digest_every_events == 0 {
            return bad("digest_every_events", "must be at least 1");
        }
        if self.digest_interval_ms == 0 {
            return bad("digest_interval_ms", "must be at least 1");
        }
        if !(1..=100).contains(&self.retention_years) {
            return bad("retention_years", "must be in 1..=100");
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return bad(
                "retry_max_ms",
                "retry_initial_ms must be > 0 and <= retry_max_ms",
            );
        }
        Ok(())
    }
}

/// Returns whether `s` is a plain SQL identifier (safe to splice into DDL).
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_keys_are_named() {
        assert!(AuditSinkConfig::default().validate().is_ok());
        let c = AuditSinkConfig {
            database: "x;drop".into(),
            ..Default::default()
        };
        assert!(
            c.validate()
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
                .contains("database")
        );
        let c = AuditSinkConfig {
            batch_max_rows: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default()
                .contains("batch_max_rows")
        );
        let parsed: Result<AuditSinkConfig, _> = toml::from_str("topic = \"t\"\nbogus = 1\n");
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: AuditSinkConfig =
            toml::from_str("flush_interval_ms = 250\n").unwrap_or_default();
        assert_eq!(parsed.flush_interval_ms, 250);
    }

    #[test]
    fn load_reads_only_the_audit_sink_table_then_the_environment() {
        let doc = "[verifier]\nanything = 1\n[audit_sink]\ndatabase = \"audit\"\n";
        let mut c = AuditSinkConfig::from_toml(doc, "d.toml").expect("parses");
        assert_eq!(c.database, "audit");
        assert_eq!(c.topic, AuditSinkConfig::default().topic);
        c.apply_env(|k| (k == "VIGIL_AUDIT_GROUP").then(|| "g2".to_owned()));
        assert_eq!(c.group, "g2");
        assert_eq!(c.database, "audit");
        let none = AuditSinkConfig::from_toml("[verifier]\n", "d.toml").expect("parses");
        assert_eq!(none, AuditSinkConfig::default());
        let err = AuditSinkConfig::from_toml("[audit_sink]\nbogus = 1\n", "d.toml")
            .expect_err("unknown key");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = AuditSinkConfig {
            group: String::new(),
            ..Default::default()
        }
        .validate()
        .expect_err("empty group");
        assert_eq!(err.to_string(), "audit_sink.group: must not be empty");
        let err = AuditSinkConfig::load(Some(Path::new("/nonexistent/vigil.toml")))
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/vigil.toml"), "{err}");
    }
}
