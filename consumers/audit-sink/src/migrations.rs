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
    /// Tables whose TTL this run changed: (table, years before, years after).
    pub retention_changed: Vec<(&'static str, u32, u32)>,
}

/// Whether a migration run may shorten the tables' retention.
///
/// Shortening the TTL of an audit table deletes every row older than the new retention at the
/// next merge, so it happens only when an operator asks for it by name
/// (`vigil audit migrate --shorten-retention`); the sink refuses to start instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorten {
    /// Refuse a retention below the tables' current one.
    Refuse,
    /// Apply it (rows past the new retention are deleted).
    Allow,
}

/// The tables that carry a `{retention_years}` TTL, with their TTL column.
const TTL_TABLES: &[(&str, &str)] = &[
    ("audit_events", "occurred_at"),
    ("audit_digests", "created_at"),
];

/// Reads the years of a `TTL toDateTime(col) + toIntervalYear(N)` clause from a table's
/// `CREATE TABLE` text (ClickHouse normalises `INTERVAL N YEAR` to that form).
pub fn ttl_years(create_table_query: &str) -> Option<u32> {
    let ttl = &create_table_query[create_table_query.find(" TTL ")?..];
    let years = &ttl[ttl.find("toIntervalYear(")? + "toIntervalYear(".len()..];
    years[..years.find(')')?].trim().parse().ok()
}

/// Creates the database and applies every missing migration. `client` must not carry a
/// database (the database may not exist yet); `database` must be a plain identifier.
pub async fn migrate(
    client: &Client,
    database: &str,
    retention_years: u32,
    shorten: Shorten,
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
    report.retention_changed = reconcile_retention(&db, retention_years, shorten).await?;
    Ok(report)
}

#[derive(Debug, Row, Deserialize)]
struct CreateQuery {
    create_table_query: String,
}

/// Brings each table's TTL to `retention_years`: the migrations only set it when they create
/// a table, so without this a changed `retention_years` would be silently ignored.
async fn reconcile_retention(
    db: &Client,
    retention_years: u32,
    shorten: Shorten,
) -> Result<Vec<(&'static str, u32, u32)>, AuditError> {
    let mut changed = Vec::new();
    for &(table, column) in TTL_TABLES {
        let ddl: CreateQuery = db
            .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?")
            .bind(table)
            .fetch_one()
            .await
            .map_err(|e| AuditError::clickhouse(format!("read the definition of {table}"), e))?;
        let Some(current) = ttl_years(&ddl.create_table_query) else {
            return Err(AuditError::Inconsistent(format!(
                "{table} has no `TTL toDateTime({column}) + INTERVAL N YEAR` clause (altered by hand?); \
                 refusing to guess its retention"
            )));
        };
        if current == retention_years {
            continue;
        }
        if retention_years < current && shorten == Shorten::Refuse {
            return Err(AuditError::Config {
                key: "retention_years",
                reason: format!(
                    "{retention_years} is below {table}'s current {current} years; shortening deletes \
                     every row older than {retention_years} years. Run `vigil audit migrate \
                     --retention-years {retention_years} --shorten-retention` to do it on purpose"
                ),
            });
        }
        // ClickHouse materialises the new TTL into existing parts (materialize_ttl_after_modify),
        // so parts written under the old retention follow the new one too.
        db.query_raw(&format!(
            "ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {retention_years} YEAR"
        ))
        .execute()
        .await
        .map_err(|e| AuditError::clickhouse(format!("change the TTL of {table}"), e))?;
        tracing::warn!(
            table,
            from_years = current,
            to_years = retention_years,
            "audit retention changed"
        );
        changed.push((table, current, retention_years));
    }
    Ok(changed)
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

    #[test]
    fn ttl_years_reads_clickhouse_normalised_ttl() {
        let ddl = "CREATE TABLE db.audit_events (`occurred_at` DateTime64(6, 'UTC')) ENGINE = MergeTree \
                   PARTITION BY toYYYYMM(occurred_at) ORDER BY occurred_at \
                   TTL toDateTime(occurred_at) + toIntervalYear(7) SETTINGS index_granularity = 8192";
        assert_eq!(ttl_years(ddl), Some(7));
        assert_eq!(
            ttl_years(&ddl.replace("toIntervalYear(7)", "toIntervalYear( 12 )")),
            Some(12)
        );
        // No TTL clause, another unit, or garbage: unknown, never a guess.
        assert_eq!(
            ttl_years("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x"),
            None
        );
        assert_eq!(
            ttl_years(&ddl.replace("toIntervalYear(7)", "toIntervalMonth(7)")),
            None
        );
        assert_eq!(
            ttl_years(&ddl.replace("toIntervalYear(7)", "toIntervalYear(x)")),
            None
        );
        // A column named like the function does not fool it: only the TTL clause counts.
        assert_eq!(
            ttl_years("CREATE TABLE t (`toIntervalYear(3)` UInt8) ENGINE = MergeTree ORDER BY x"),
            None
        );
    }
}
