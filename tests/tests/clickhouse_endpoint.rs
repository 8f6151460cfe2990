#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! The ClickHouse endpoint serves what the `clickhouse` crate needs: DDL with TTL, DateTime64,
//! LowCardinality and UUID, LZ4-compressed RowBinary inserts with row validation, typed reads,
//! query parameters, and ClickHouse error codes.

use clickhouse::{Client, Compression, Row};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vigil_test_support::{clickhouse_url, unique_name};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Probe {
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: uuid::Uuid,
    #[serde(with = "clickhouse::serde::time::datetime64::micros")]
    occurred_at: OffsetDateTime,
    platform: String,
    count: u32,
    #[serde(with = "serde_bytes")]
    raw: Vec<u8>,
}

#[tokio::test]
async fn mergetree_with_ttl_round_trips_through_the_clickhouse_crate() {
    let client = Client::default()
        .with_url(clickhouse_url())
        .with_compression(Compression::Lz4)
        .with_validation(true);
    let table = unique_name("e2e_probe").replace('-', "_");
    client
        .query(&format!(
            "CREATE TABLE {table} (
                event_id UUID,
                occurred_at DateTime64(6, 'UTC'),
                platform LowCardinality(String),
                count UInt32,
                raw String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(occurred_at)
            ORDER BY (platform, occurred_at)
            TTL toDateTime(occurred_at) + INTERVAL 7 YEAR"
        ))
        .execute()
        .await
        .expect("create table");

    let now = OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .expect("micros");
    let rows: Vec<Probe> = (0..1000u32)
        .map(|i| Probe {
            event_id: uuid::Uuid::new_v4(),
            occurred_at: now - time::Duration::seconds(i64::from(i)),
            platform: ["rust", "python", "js"][i as usize % 3].to_owned(),
            count: i,
            raw: vec![0, 0xFF, i as u8, 0x0A, 0x09],
        })
        .collect();
    let mut insert = client.insert::<Probe>(&table).await.expect("insert");
    for r in &rows {
        insert.write(r).await.expect("write row");
    }
    insert.end().await.expect("end insert");

    let mut back: Vec<Probe> = client
        .query(&format!("SELECT ?fields FROM {table} ORDER BY count"))
        .fetch_all()
        .await
        .expect("fetch");
    back.sort_by_key(|p| p.count);
    assert_eq!(back, rows, "rows read back equal what was written");

    let n: u64 = client
        .query(&format!(
            "SELECT count() FROM {table} WHERE platform = {{p:String}}"
        ))
        .param("p", "python")
        .fetch_one()
        .await
        .expect("param query");
    assert_eq!(n, 333);

    let ddl: String = client
        .query(&format!(
            "SELECT create_table_query FROM system.tables WHERE name = '{table}'"
        ))
        .fetch_one()
        .await
        .expect("show create");
    assert!(ddl.contains("TTL"), "{ddl}");
    assert!(ddl.contains("DateTime64(6"), "{ddl}");
    assert!(ddl.contains("LowCardinality(String)"), "{ddl}");

    let err = client
        .query("SELEC 1")
        .execute()
        .await
        .expect_err("malformed query");
    assert!(
        err.to_string().contains("Code: 62"),
        "syntax error carries code 62: {err}"
    );
}
