#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! `vigil audit migrate|verify|export` exit codes: a clean chain exits 0, a tampered one exits 1
//! naming the broken link, and an export verifies offline.

use std::process::Command;

use uuid::Uuid;
use vigil_audit_sink::AuditStore;
use vigil_audit_sink::chain::ChainHead;
use vigil_audit_sink::digest::{self, PartitionHead};
use vigil_audit_sink::row::AuditRow;
use vigil_schemas::signing::EventSigner;

fn row(i: i64) -> AuditRow {
    AuditRow {
        event_id: Uuid::new_v4(),
        occurred_at: vigil_schemas::model::now_micros(),
        verified_at: vigil_schemas::model::now_micros(),
        ingested_at: vigil_schemas::model::now_micros() - 600_000_000,
        class: "authentication".into(),
        activity: "logon".into(),
        activity_id: 1,
        status: "success".into(),
        severity: "low".into(),
        state: "untrusted".into(),
        reason: String::new(),
        platform: "cli".into(),
        service: "svc".into(),
        host: "h".into(),
        principal: format!("user-{i}"),
        key_id: "k".into(),
        client_ip: "10.1.1.1".into(),
        tenant: "t".into(),
        trace_id: String::new(),
        span_id: String::new(),
        attributes: vec![],
        signed_value: vec![0, 0, 0, 0, 1, i as u8],
        signature: vec![1; 64],
        kafka_topic: "cli-topic".into(),
        kafka_partition: 0,
        kafka_offset: i,
        seq: 0,
        prev_hash: [0; 32],
        chain_hash: [0; 32],
    }
}

fn vigil(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("audit")
        .args(args)
        .env("VIGIL_AUDIT_DATABASE", db)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_zero_when_clean_and_one_naming_the_tampered_row() {
    vigil_test_support::clickhouse_url();
    let db = vigil_test_support::unique_name("audit_cli").replace('-', "_");
    let out = vigil(&db, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = AuditStore::from_env(&db).unwrap();
    let mut head = ChainHead::default();
    let rows: Vec<AuditRow> = (0..20)
        .map(|i| {
            let mut r = row(i);
            head.append(&mut r);
            r
        })
        .collect();
    store.insert_events(&rows, "cli-test").await.unwrap();
    let signer = EventSigner::from_seed(&[5; 32]);
    let d = digest::make(
        &signer,
        "cli-topic",
        0,
        vigil_schemas::model::now_micros(),
        [0; 32],
        &[PartitionHead {
            partition: 0,
            last_offset: 19,
            next_seq: 20,
            head: head.hash,
        }],
    );
    store.insert_digest(&d).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pk = dir.path().join("sink.pub.pem");
    std::fs::write(&pk, signer.public_key().to_spki_pem().unwrap()).unwrap();
    let pk = pk.to_str().unwrap();

    let out = vigil(&db, &["verify", "--sink-public-key", pk]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let export = dir.path().join("export.jsonl");
    let out = vigil(
        &db,
        &[
            "export",
            "--topic",
            "cli-topic",
            "--format",
            "jsonl",
            "--output",
            export.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vigil(
        &db,
        &[
            "verify",
            "--sink-public-key",
            pk,
            "--input",
            export.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "offline: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    store
        .client()
        .query_raw("ALTER TABLE audit_events UPDATE principal = 'mallory' WHERE seq = 4")
        .with_setting("mutations_sync", "2")
        .execute()
        .await
        .unwrap();
    let out = vigil(&db, &["verify", "--sink-public-key", pk]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("altered_row partition=0 seq=4"), "{text}");
}
