//! ClickHouse access of the audit sink and its tools.

use std::collections::BTreeMap;

use clickhouse::insert_formatted::CompressedData;
use clickhouse::{Client, Compression, Row};
use serde::Deserialize;

use crate::chain::ChainHead;
use crate::error::AuditError;
use crate::row::{AuditRow, DigestRow, OffsetRow};

/// Compression of every request body (LZ4 native blocks, as ClickHouse's own clients send).
const COMPRESSION: Compression = Compression::Lz4;

/// The audit tables of one database.
#[derive(Clone)]
pub struct AuditStore {
    root: Client,
    client: Client,
    database: String,
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Where a partition resumes: the last stored offset and the chain head after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Last offset stored (the sink resumes at `last_offset + 1`).
    pub last_offset: i64,
    /// Chain head after that offset.
    pub head: ChainHead,
}

#[derive(Debug, Row, Deserialize)]
struct ResumeRow {
    kafka_partition: i32,
    last_offset: i64,
    next_seq: u64,
    last_chain_hash: [u8; 32],
}

impl AuditStore {
    /// Connects to `url` (user and password from `VIGIL_CLICKHOUSE_USER` / `_PASSWORD` if set).
    pub fn connect(url: &str, database: &str) -> Result<Self, AuditError> {
        if !crate::config::is_identifier(database) {
            return Err(AuditError::Config {
                key: "database",
                reason: "must be an identifier".into(),
            });
        }
        let mut root = Client::default()
            .with_url(url)
            .with_compression(COMPRESSION)
            .with_validation(true);
        if let Ok(user) = std::env::var("VIGIL_CLICKHOUSE_USER") {
            root = root.with_user(user);
        }
        if let Ok(password) = std::env::var("VIGIL_CLICKHOUSE_PASSWORD") {
            root = root.with_password(password);
        }
        let client = root.clone().with_database(database);
        Ok(AuditStore {
            root,
            client,
            database: database.to_owned(),
        })
    }

    /// Connects to `VIGIL_CLICKHOUSE_URL`.
    pub fn from_env(database: &str) -> Result<Self, AuditError> {
        let url = std::env::var("VIGIL_CLICKHOUSE_URL").map_err(|_| AuditError::Config {
            key: "VIGIL_CLICKHOUSE_URL",
            reason: "is not set".into(),
        })?;
        Self::connect(&url, database)
    }

    /// Returns the client bound to the audit database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Returns the database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Applies the migrations (idempotent) and brings the tables' TTL to `retention_years`,
    /// refusing to shorten it (see [`Self::migrate_with`]).
    pub async fn migrate(
        &self,
        retention_years: u32,
    ) -> Result<crate::migrations::MigrationReport, AuditError> {
        self.migrate_with(retention_years, crate::migrations::Shorten::Refuse)
            .await
    }

    /// Applies the migrations (idempotent) and brings the tables' TTL to `retention_years`;
    /// `shorten` says whether a retention below the current one may be applied.
    pub async fn migrate_with(
        &self,
        retention_years: u32,
        shorten: crate::migrations::Shorten,
    ) -> Result<crate::migrations::MigrationReport, AuditError> {
        crate::migrations::migrate(&self.root, &self.database, retention_years, shorten).await
    }

    /// Inserts rows with an insert deduplication token (a retry with the same token is a no-op).
    pub async fn insert_events(&self, rows: &[AuditRow], token: &str) -> Result<(), AuditError> {
        self.insert("audit_events", rows, token).await
    }

    /// Inserts rows already encoded by [`crate::row::encode_row_binary`] with an insert
    /// deduplication token. `chunk_ends` are row boundaries where the body may be cut into
    /// compressed blocks. The caller keeps (and reuses) the buffer: it is compressed chunk by
    /// chunk, never copied whole, and a retry sends the same bytes again.
    pub async fn insert_events_encoded(
        &self,
        rows: &[u8],
        chunk_ends: &[usize],
        token: &str,
    ) -> Result<(), AuditError> {
        let ch = |e| AuditError::clickhouse("insert into audit_events", e);
        let sql = format!(
            "INSERT INTO audit_events ({}) FORMAT RowBinaryWithNamesAndTypes",
            crate::row::column_list()
        );
        let mut insert = self
            .client
            .insert_formatted_with(sql)
            .with_setting("insert_deduplication_token", token)
            .with_setting("insert_deduplicate", "1");
        let mut header = Vec::with_capacity(1024);
        crate::row::encode_header(&mut header);
        insert
            .send_compressed(CompressedData::new(&header, COMPRESSION).map_err(ch)?)
            .await
            .map_err(ch)?;
        let mut start = 0;
        for &end in chunk_ends.iter().chain(std::iter::once(&rows.len())) {
            let Some(chunk) = rows.get(start..end).filter(|c| !c.is_empty()) else {
                continue;
            };
            insert
                .send_compressed(CompressedData::new(chunk, COMPRESSION).map_err(ch)?)
                .await
                .map_err(ch)?;
            start = end;
        }
        insert.end().await.map_err(ch)
    }

    /// Inserts a batch's offset intent rows.
    pub async fn insert_offsets(&self, rows: &[OffsetRow], token: &str) -> Result<(), AuditError> {
        self.insert("sink_offsets", rows, token).await
    }

    /// Inserts a digest row.
    pub async fn insert_digest(&self, row: &DigestRow) -> Result<(), AuditError> {
        let token = format!("digest-{}-{}", row.kafka_topic, row.digest_seq);
        self.insert("audit_digests", std::slice::from_ref(row), &token)
            .await
    }

    async fn insert<T>(&self, table: &str, rows: &[T], token: &str) -> Result<(), AuditError>
    where
        T: clickhouse::RowWrite + for<'a> Row<Value<'a> = T>,
    {
        let ch = |e| AuditError::clickhouse(format!("insert into {table}"), e);
        let mut insert = self
            .client
            .insert::<T>(table)
            .await
            .map_err(ch)?
            .with_setting("insert_deduplication_token", token)
            .with_setting("insert_deduplicate", "1");
        for r in rows {
            insert.write(r).await.map_err(ch)?;
        }
        insert.end().await.map_err(ch)
    }

    /// Returns, per partition of `topic`, the last stored offset and chain head.
    pub async fn resume_points(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<i32, ResumePoint>, AuditError> {
        let rows: Vec<ResumeRow> = self
            .client
            .query(
                "SELECT kafka_partition, argMax(last_offset, batch_seq) AS last_offset, \
                 argMax(next_seq, batch_seq) AS next_seq, argMax(last_chain_hash, batch_seq) AS last_chain_hash \
                 FROM sink_offsets WHERE kafka_topic = ? GROUP BY kafka_partition",
            )
            .bind(topic)
            .fetch_all()
            .await
            .map_err(|e| AuditError::clickhouse("read sink_offsets", e))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.kafka_partition,
                    ResumePoint {
                        last_offset: r.last_offset,
                        head: ChainHead {
                            next_seq: r.next_seq,
                            hash: r.last_chain_hash,
                        },
                    },
                )
            })
            .collect())
    }

    /// Returns the intent rows of the last batch of `topic` (empty if none).
    pub async fn last_batch(&self, topic: &str) -> Result<Vec<OffsetRow>, AuditError> {
        self.client
            .query(
                "SELECT ?fields FROM sink_offsets FINAL WHERE kafka_topic = ? AND batch_seq = \
                 (SELECT max(batch_seq) FROM sink_offsets WHERE kafka_topic = ?) ORDER BY kafka_partition",
            )
            .bind(topic)
            .bind(topic)
            .fetch_all()
            .await
            .map_err(|e| AuditError::clickhouse("read last batch", e))
    }

    /// Returns the latest digest of `topic`.
    pub async fn last_digest(&self, topic: &str) -> Result<Option<DigestRow>, AuditError> {
        self.client
            .query("SELECT ?fields FROM audit_digests WHERE kafka_topic = ? ORDER BY digest_seq DESC LIMIT 1")
            .bind(topic)
            .fetch_optional()
            .await
            .map_err(|e| AuditError::clickhouse("read last digest", e))
    }

    /// Returns every digest of `topic` in order.
    pub async fn digests(&self, topic: &str) -> Result<Vec<DigestRow>, AuditError> {
        self.client
            .query("SELECT ?fields FROM audit_digests WHERE kafka_topic = ? ORDER BY digest_seq")
            .bind(topic)
            .fetch_all()
            .await
            .map_err(|e| AuditError::clickhouse("read digests", e))
    }

    /// Returns the topics with rows in `audit_events`.
    pub async fn topics(&self) -> Result<Vec<String>, AuditError> {
        self.client
            .query("SELECT DISTINCT kafka_topic FROM audit_events ORDER BY kafka_topic")
            .fetch_all()
            .await
            .map_err(|e| AuditError::clickhouse("list topics", e))
    }

    /// The verifier-valid key operation events of `topic`, oldest first (for the key history
    /// `vigil audit verify` checks event signatures against).
    pub fn key_events(
        &self,
        topic: &str,
    ) -> Result<clickhouse::query::RowCursor<AuditRow>, AuditError> {
        self.client
            .query(
                "SELECT ?fields FROM audit_events WHERE kafka_topic = ? \
                 AND class = 'key_lifecycle' AND state = 'valid' \
                 ORDER BY occurred_at, kafka_partition, seq",
            )
            .bind(topic)
            .fetch::<AuditRow>()
            .map_err(|e| AuditError::clickhouse("read key events", e))
    }

    /// Streams the rows of `topic` in chain order, optionally one partition and an
    /// `ingested_at` window in microseconds.
    pub fn rows(
        &self,
        topic: &str,
        partition: Option<i32>,
        from_micros: Option<i64>,
        to_micros: Option<i64>,
    ) -> Result<clickhouse::query::RowCursor<AuditRow>, AuditError> {
        let mut sql = String::from("SELECT ?fields FROM audit_events WHERE kafka_topic = ?");
        if partition.is_some() {
            sql.push_str(" AND kafka_partition = ?");
        }
        if from_micros.is_some() {
            sql.push_str(" AND ingested_at >= fromUnixTimestamp64Micro(?, 'UTC')");
        }
        if to_micros.is_some() {
            sql.push_str(" AND ingested_at < fromUnixTimestamp64Micro(?, 'UTC')");
        }
        sql.push_str(" ORDER BY kafka_partition, seq, kafka_offset");
        let mut q = self.client.query(&sql).bind(topic);
        if let Some(p) = partition {
            q = q.bind(p);
        }
        if let Some(f) = from_micros {
            q = q.bind(f);
        }
        if let Some(t) = to_micros {
            q = q.bind(t);
        }
        q.fetch::<AuditRow>()
            .map_err(|e| AuditError::clickhouse("read audit_events", e))
    }
}
