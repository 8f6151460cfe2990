//! Versioned, idempotent SQL migrations, recorded in `vigil_migrations`.
//!
//! Each file in `migrations/` holds one statement; `{retention_years}` is substituted. A
//! version is applied once; the checksum of its template is recorded so an edited migration
//! that was already applied is refused instead of silently diverging.

use clickhouse::{Client, Row};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::AuditError;

/// One migration: version, name and SQL template.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order.
    pub version: u32,
    /// File name without extension.
    pub name: &'static str,
    /// The SQL template.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_audit_events",
        sql: include_str!("../migrations/0001_audit_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_audit_digests",
        sql: include_str!("../migrations/0002_audit_digests.sql"),
    },
    Migration {
        version: 3,
        name: "0003_sink_offsets",
        sql: include_str!("../migrations/0003_sink_offsets.sql"),
    },
];

impl Migration {
    /// Returns the hex SHA-256 of the template.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// Returns the statement for a retention in years, comment lines removed.
    pub fn render(&self, retention_years: u32) -> String {
        strip_comments(self.sql).replace("{retention_years}", &retention_years.to_string())
    }
}

/// Removes whole-line `--` comments (they may hold `?`, which the client treats as a bind).
pub fn strip_comments(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Row, Deserialize)]
struct Applied {
    version: u32,
    checksum: String,
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this run.
    pub applied: Vec<u32>,
    /// Versions that were already applied.
    pub already: Vec<u32>,
}

/// Creates the database and applies every missing migration. `client` must not carry a
/// database (the database may not exist yet); `database` must be a plain identifier.
pub async fn migrate(
    client: &Client,
    database: &str,
    retention_years: u32,
) -> Result<MigrationReport, AuditError> {
    if !crate::config::is_identifier(database) {
        return Err(AuditError::Config {
            key: "database",
            reason: "must be an identifier".into(),
        });
    }
    let ch = |what: &str| {
        let what = what.to_owned();
        move |e| AuditError::clickhouse(what, e)
    };
    client
        .query_raw(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .map_err(ch("create database"))?;
    let db = client.clone().with_database(database);
    db.query_raw(
        "CREATE TABLE IF NOT EXISTS vigil_migrations (version UInt32, name String, checksum String, \
         applied_at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = ReplacingMergeTree ORDER BY version",
    )
    .execute()
    .await
    .map_err(ch("create vigil_migrations"))?;
    let applied: Vec<Applied> = db
        .query("SELECT version, any(checksum) AS checksum FROM vigil_migrations GROUP BY version")
        .fetch_all()
        .await
        .map_err(ch("read vigil_migrations"))?;
    let mut report = MigrationReport::default();
    for m in MIGRATIONS {
        if let Some(a) = applied.iter().find(|a| a.version == m.version) {
            if a.checksum != m.checksum() {
                return Err(AuditError::Inconsistent(format!(
                    "migration {} was applied with a different text (checksum {}), refusing to continue",
                    m.name, a.checksum
                )));
            }
            report.already.push(m.version);
            continue;
        }
        db.query_raw(&m.render(retention_years))
            .execute()
            .await
            .map_err(ch(&format!("apply migration {}", m.name)))?;
        db.query("INSERT INTO vigil_migrations (version, name, checksum) VALUES (?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(m.checksum())
            .execute()
            .await
            .map_err(ch("record migration"))?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        report.applied.push(m.version);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_render_retention() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].version < w[1].version);
        }
        let sql = MIGRATIONS[0].render(3);
        assert!(sql.contains("INTERVAL 3 YEAR"), "{sql}");
        assert!(!sql.contains("--"));
        assert!(sql.contains("PARTITION BY toYYYYMM(occurred_at)"));
    }
}
