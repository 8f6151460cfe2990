#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! The ClickHouse backup and restore procedure of docs/operations.md, against the local stack.
//!
//! The real audit sink stores signed verified events in a fresh database (chains, signed
//! digests, offsets); every table is exported with `INSERT INTO FUNCTION file(…, 'Native')`, the
//! database is dropped, `vigil audit migrate` recreates the schema, the exports are re-inserted,
//! and then row counts must match and `vigil audit verify` (the built `vigil` binary) must pass.
//! `BACKUP … TO Disk/File` is not testable here: chdb has no server configuration, so
//! `backups.allowed_disk` / `backups.allowed_path` cannot be set (error 318). The restore time is
//! printed (`cargo test -- --nocapture`) for the RTO statement in docs/operations.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_audit_sink::metrics::SinkMetrics;
use vigil_audit_sink::{AuditSink, AuditSinkConfig, AuditStore};
use vigil_schemas::codec::Codec;
use vigil_schemas::model::*;
use vigil_schemas::signing::EventSigner;
use vigil_schemas::wire::SchemaId;
use vigil_test_support::RunningService;
use vigil_topology::KafkaClientConfig;

/// Events the sink stores before the backup.
const EVENTS: u64 = 5_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `vigil` binary of this checkout (`cargo build -p vigil`; .ci/run builds the workspace).
fn vigil_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("debug/vigil");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p vigil` first",
        bin.display()
    );
    bin
}

fn vigil(args: &[&str], database: &str) -> std::process::Output {
    Command::new(vigil_bin())
        .args(args)
        .env("VIGIL_AUDIT_DATABASE", database)
        .env("VIGIL_CLICKHOUSE_URL", vigil_test_support::clickhouse_url())
        .output()
        .expect("vigil runs")
}

fn verified_event(i: u64, signer: &EventSigner) -> VerifiedEvent {
    let mut event = VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        Status::Success,
        Producer::new(Platform::Rust, "1.0", format!("svc-{}", i % 4)),
    )
    .with_subject(Subject::principal(format!("user-{}", i % 5)).with_key_id("k-backup"));
    event.occurred_at = now_micros() - 1_000_000;
    let raw = Codec::<VerificationEvent>::new()
        .unwrap()
        .encode_framed(SchemaId(1), &event)
        .unwrap();
    VerifiedEvent {
        event,
        state: SignatureState::Valid,
        reason: None,
        verified_at: now_micros(),
        verifier: "backup-test".into(),
        key_id: Some("k-backup".into()),
        signature: signer.sign(&raw).to_bytes().to_vec(),
        signed_value: raw,
        origin_topic: "raw".into(),
        origin_partition: 0,
        origin_offset: i as i64,
        key_emergency: false,
    }
}

async fn count(store: &AuditStore, table: &str) -> u64 {
    store
        .client()
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_drop_restore_keeps_rows_and_a_verifiable_trail() {
    let topic = vigil_test_support::unique_name("backup-verified");
    let database = vigil_test_support::unique_name("backup").replace('-', "_");
    vigil_test_support::create_topic(&topic, 3).await;
    let sink_key = EventSigner::from_seed(&[33; 32]);
    let producer_key = EventSigner::from_seed(&[44; 32]);

    // Seed: the real sink stores EVENTS verified events, with chains and signed digests.
    let producer: FutureProducer = KafkaClientConfig::from_env().producer().create().unwrap();
    let codec = Codec::<VerifiedEvent>::new().unwrap();
    let mut pending = Vec::new();
    for i in 0..EVENTS {
        let value = codec
            .encode_framed(SchemaId(1), &verified_event(i, &producer_key))
            .unwrap();
        let key = format!("k{}", i % 13);
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic).key(key.as_bytes()).payload(&value))
                .unwrap(),
        );
        if pending.len() >= 1000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    let config = AuditSinkConfig {
        topic: topic.clone(),
        group: vigil_test_support::unique_name("backup-sink"),
        database: database.clone(),
        dlq_topic: format!("{topic}-dlq"),
        flush_interval_ms: 100,
        digest_interval_ms: 500,
        ..AuditSinkConfig::default()
    };
    let store = AuditStore::from_env(&database).unwrap();
    let sink_store = store.clone();
    let sink = RunningService::spawn(move |telemetry, shutdown| {
        let metrics = SinkMetrics::register(&telemetry.registry).unwrap();
        let sink = AuditSink::new(
            config,
            KafkaClientConfig::from_env(),
            sink_store,
            sink_key,
            metrics,
            telemetry.health.clone(),
        )
        .unwrap();
        sink.run(shutdown)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&store, "audit_events").await < EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the sink sign the digest covering the last batch, then stop it: the documented backup
    // is taken with the sink stopped so events, digests and offsets agree.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!sink.is_finished(), "the sink runs until stopped");
    sink.stop().await.unwrap();
    assert_eq!(
        count(&store, "audit_events").await,
        EVENTS,
        "sink stored every event"
    );

    let dir = std::env::temp_dir().join(format!("vigil-{database}"));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("sink.pub.pem");
    std::fs::write(&key_file, sink_key_pem()).unwrap();
    let key_arg = key_file.to_str().unwrap().to_owned();
    // The seeded rows come from no key registration the trail holds: their key is given as an
    // external key set.
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    std::fs::write(
        keys_dir.join("k-backup.pem"),
        producer_key.public_key().to_spki_pem().unwrap(),
    )
    .unwrap();
    let keys_arg = keys_dir.to_str().unwrap().to_owned();
    let verify = || {
        let out = vigil(
            &[
                "audit",
                "verify",
                "--sink-public-key",
                &key_arg,
                "--keys-dir",
                &keys_arg,
            ],
            &database,
        );
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, report) = verify();
    assert!(ok, "the trail verifies before the backup:\n{report}");

    // Backup: every table but the migrations bookkeeping, which `vigil audit migrate` rewrites.
    let tables: Vec<String> = store
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? AND name != 'vigil_migrations' ORDER BY name")
        .bind(&database)
        .fetch_all::<String>()
        .await
        .unwrap();
    assert!(
        tables.iter().any(|t| t == "audit_events"),
        "tables: {tables:?}"
    );
    let mut counts = Vec::new();
    let started = Instant::now();
    for t in &tables {
        counts.push(count(&store, t).await);
        let file = dir.join(format!("{t}.native"));
        store
            .client()
            .query(&format!(
                "INSERT INTO FUNCTION file('{}', 'Native') SELECT * FROM {database}.{t}",
                file.display()
            ))
            .execute()
            .await
            .unwrap();
    }
    let backup_time = started.elapsed();

    // Disaster: the database is gone.
    store
        .client()
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await
        .unwrap();

    // Restore: schema by migrations, then the rows.
    let started = Instant::now();
    let out = vigil(&["audit", "migrate"], &database);
    assert!(
        out.status.success(),
        "vigil audit migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in &tables {
        let file = dir.join(format!("{t}.native"));
        store
            .client()
            .query(&format!(
                "INSERT INTO {database}.{t} SELECT * FROM file('{}', 'Native')",
                file.display()
            ))
            .execute()
            .await
            .unwrap();
    }
    let restore_time = started.elapsed();
    let started = Instant::now();
    let (ok, report) = verify();
    let verify_time = started.elapsed();

    for (t, before) in tables.iter().zip(&counts) {
        assert_eq!(count(&store, t).await, *before, "rows of {t} after restore");
    }
    assert!(
        ok,
        "vigil audit verify passes on the restored data:\n{report}"
    );
    let bytes: u64 = tables
        .iter()
        .filter_map(|t| std::fs::metadata(dir.join(format!("{t}.native"))).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "backup/restore: {EVENTS} audit rows, tables {tables:?} with rows {counts:?}, {bytes} bytes \
         exported; backup {backup_time:?}, restore (migrate + re-insert) {restore_time:?}, \
         verify {verify_time:?}"
    );
    let _ = store
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn sink_key_pem() -> String {
    EventSigner::from_seed(&[33; 32])
        .public_key()
        .to_spki_pem()
        .unwrap()
}
