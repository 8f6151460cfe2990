#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `vigil run verifier` as operators run it: the built binary with a config file, its
//! `/readyz` and `/metrics`, real signed records and a poison record through it, and a clean
//! exit on SIGTERM. (The verifier's own tests run it in-process; this covers the binary's
//! wiring: runtime, allocator, telemetry server, signal handling.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use vigil_schemas::{EventClass, Producer, Status, Subject, VerificationEvent};
use vigil_test_support::{ChildProcess, KeyRegistryFixture, free_port};

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// Reads `topic` from the beginning until `n` records arrived or `timeout` passed.
async fn read(topic: &str, n: usize, timeout: Duration) -> Vec<(Option<String>, Vec<u8>)> {
    let mut c = vigil_test_support::client_config();
    c.set(
        "group.id",
        vigil_test_support::unique_name("run-cli-reader"),
    )
    .set("auto.offset.reset", "earliest")
    .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            let state = m.headers().and_then(|h| {
                use rdkafka::message::Headers;
                h.iter()
                    .find(|h| h.key == "vigil-signature-state")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            out.push((state, m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_verifier_binary_verifies_dead_letters_and_stops_on_sigterm() {
    let (raw, verified, dlq) = (
        vigil_test_support::unique_name("run-raw"),
        vigil_test_support::unique_name("run-verified"),
        vigil_test_support::unique_name("run-dlq"),
    );
    vigil_test_support::create_topic(&raw, 3).await;
    vigil_test_support::create_topic(&verified, 3).await;
    vigil_test_support::create_topic(&dlq, 1).await;
    let keys = KeyRegistryFixture::create("run-keys").await;
    let registry_url = vigil_test_support::schema_registry_url();
    let schema = vigil_test_support::register_schema::<VerificationEvent>(&raw).await;
    let records = keys.register("k-run-cli", schema).await;
    let anchors = keys.anchors_path().to_owned();
    let keys = keys.topic();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        format!(
            "group_id = {:?}\nraw_topic = {raw:?}\nverified_topic = {verified:?}\nkeys_topic = {keys:?}\ntrust_anchors = {anchors:?}\ndlq_topic = {dlq:?}\nretry_topics = []\n",
            vigil_test_support::unique_name("run-cli-group"),
        ),
    )
    .unwrap();
    let port = free_port();
    let mut service = ChildProcess::spawn(
        "vigil run verifier",
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["run", "verifier", "--config"])
            .arg(&config)
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .env(
                "VIGIL_KAFKA_BOOTSTRAP",
                vigil_test_support::kafka_bootstrap(),
            )
            .env("VIGIL_SCHEMA_REGISTRY_URL", &registry_url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = get(&format!("{base}/readyz")).await {
            break;
        }
        assert!(Instant::now() < deadline, "verifier not ready within 60 s");
        assert!(service.try_wait().is_none(), "verifier exited before ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let p = vigil_test_support::producer();
    let n = 40;
    for i in 0..n {
        let event = VerificationEvent::new(
            EventClass::Authentication,
            "login",
            Status::Success,
            Producer::rust("run-cli"),
        )
        .with_subject(Subject::principal(format!("user-{i}")).with_key_id("k-run-cli"));
        vigil_test_support::send_signed(&p, &raw, &records.sign(&event).unwrap()).await;
    }
    // Poison: bytes that are not a frame, without signature headers.
    vigil_test_support::send(&p, &raw, b"k", b"\x00\x01not-avro", &[]).await;

    let verdicts = read(&verified, n, Duration::from_secs(60)).await;
    assert_eq!(verdicts.len(), n, "one verdict per signed event");
    assert!(
        verdicts
            .iter()
            .all(|(state, _)| state.as_deref() == Some("valid")),
        "{:?}",
        verdicts.iter().map(|v| v.0.clone()).collect::<Vec<_>>()
    );
    let dead = read(&dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "the poison record is dead-lettered");
    assert_eq!(
        dead[0].1, b"\x00\x01not-avro",
        "the DLQ keeps the original bytes"
    );

    let (status, metrics) = get(&format!("{base}/metrics"))
        .await
        .expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vigil_verifier_events_total{") && l.contains("valid")),
        "verdicts are counted:\n{metrics}"
    );

    let status = service.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}
