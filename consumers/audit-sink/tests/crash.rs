#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! `kill -9` of the sink process at random points while it writes, several rounds, then a clean
//! run: the row count equals the events produced, no event_id twice, chains verify clean.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rand::Rng;
use vigil_audit_sink::AuditStore;
use vigil_audit_sink::verify::verify_store;

fn sink_binary() -> std::path::PathBuf {
    // Cargo builds examples for `cargo test`: target/<profile>/examples/run_sink.
    // `cargo test --test crash` alone does not build them, so build it here (a no-op if fresh).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let bin = dir.join("examples").join("run_sink");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "-p", "vigil-audit-sink", "--example", "run_sink"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the run_sink example");
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_insert_and_offset_commit_writes_nothing_twice_and_loses_nothing() {
    let topic = vigil_test_support::unique_name("audit-crash");
    vigil_test_support::create_topic(&topic, 3).await;
    vigil_test_support::create_topic(&format!("{topic}-dlq"), 1).await;
    let db = fresh_db("audit_crash");
    let total = 3000u64;
    let ids = produce(&topic, total, 0).await;
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("sink.pem");
    std::fs::write(&key_file, sink_key().to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let mut cfg = config(&topic, &db);
    cfg.batch_max_rows = 100;
    cfg.flush_interval_ms = 20;
    cfg.signing_key_file = Some(key_file.clone());
    let cfg_text = toml::to_string(&cfg).unwrap();
    let store = AuditStore::from_env(&db).unwrap();

    let bin = sink_binary();
    let mut rng = rand::thread_rng();
    let mut rounds = 0;
    while rounds < 6 {
        rounds += 1;
        let mut child = Command::new(&bin)
            .env("AUDIT_SINK_CONFIG", &cfg_text)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(400..1600))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if count(&store, "audit_events").await >= total {
            break;
        }
    }
    // A clean run finishes the backlog and writes the final digest.
    let mut child = Command::new(&bin)
        .env("AUDIT_SINK_CONFIG", &cfg_text)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while count(&store, "audit_events").await < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let it settle, then stop gracefully (SIGTERM) so it writes the final digest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();

    let n = count(&store, "audit_events").await;
    let distinct: u64 = store
        .client()
        .query("SELECT uniqExact(event_id) FROM audit_events")
        .fetch_one()
        .await
        .unwrap();
    let batches: u64 = store
        .client()
        .query("SELECT count() FROM sink_offsets")
        .fetch_one()
        .await
        .unwrap();
    eprintln!("{rounds} kill -9 rounds, {n} rows, {distinct} distinct, {batches} batch intents");
    assert_eq!(n, ids.len() as u64, "row count equals events produced");
    assert_eq!(distinct, n, "no event_id twice");
    let report = verify_store(&store, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
}
