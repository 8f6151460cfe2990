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

/// With the trust anchors in the environment (as every Vigil command reads them), `verify`
/// re-verifies each `valid` row against the key the trail's own key operations registered: a
/// verdict written straight to the verified topic, signed by someone else, exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_flags_a_forged_verdict_with_no_extra_flags() {
    let db = vigil_test_support::unique_name("audit_cli_keys").replace('-', "_");
    assert!(vigil(&db, &["migrate"]).status.success());
    let store = AuditStore::from_env(&db).unwrap();
    let admin = EventSigner::from_seed(&[7; 32]);
    let admin_id = vigil_schemas::admin::admin_id(&admin).to_string();
    let key = EventSigner::from_seed(&[8; 32]);
    let attacker = EventSigner::from_seed(&[9; 32]);
    let signed = |mut r: AuditRow, key_id: &str, by: &EventSigner| {
        r.state = "valid".into();
        r.key_id = key_id.into();
        r.signature = by.sign(&r.signed_value).to_bytes().to_vec();
        r
    };
    let mut registration = row(0);
    registration.class = "key_lifecycle".into();
    registration.activity = "key_registered".into();
    registration.occurred_at -= 60_000_000;
    registration.attributes = vec![
        ("key_id".into(), "payments-api".into()),
        (
            "public_key".into(),
            key.public_key()
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        ),
        ("state".into(), "active".into()),
    ];
    let mut head = ChainHead::default();
    let mut rows = vec![
        signed(registration, &admin_id, &admin),
        signed(row(1), "payments-api", &key),
        signed(row(2), "payments-api", &attacker),
    ];
    for r in &mut rows {
        head.append(r);
    }
    store.insert_events(&rows, "cli-keys").await.unwrap();
    let sink = EventSigner::from_seed(&[5; 32]);
    let d = digest::make(
        &sink,
        "cli-topic",
        0,
        vigil_schemas::model::now_micros(),
        [0; 32],
        &[PartitionHead {
            partition: 0,
            last_offset: 2,
            next_seq: 3,
            head: head.hash,
        }],
    );
    store.insert_digest(&d).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pk = dir.path().join("sink.pub.pem");
    std::fs::write(&pk, sink.public_key().to_spki_pem().unwrap()).unwrap();
    let anchors = dir.path().join("admins.pem");
    std::fs::write(&anchors, admin.public_key().to_spki_pem().unwrap()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["audit", "verify", "--sink-public-key", pk.to_str().unwrap()])
        .env("VIGIL_AUDIT_DATABASE", &db)
        .env("VIGIL_TRUST_ANCHORS", &anchors)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bad_event_signature partition=0 seq=2"),
        "{text}"
    );
    assert!(
        text.contains("2 valid"),
        "the registration and the genuine event: {text}"
    );
}
