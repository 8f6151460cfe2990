#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `vigil dlq` through the built binary, against the real broker and registry. Each test seeds
//! its own DLQ (records shaped like the consumer runtime writes them) and passes unique topic
//! names, so tests run in parallel on the shared stack.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_dead_letter::scan::{Selection, scan_topic};
use vigil_dead_letter::{DeadLetterHeaders, DlqConfig, ErrorClass, Filter};
use vigil_schemas::EventSigner;
use vigil_topology::KafkaClientConfig;

const HOUR_MS: i64 = 3_600_000;

struct Env {
    dlq: String,
    ledger: String,
    events: String,
    origins: [String; 2],
    base_ms: i64,
    dir: tempfile::TempDir,
}

impl Env {
    fn common(&self) -> Vec<String> {
        vec![
            "--dlq-topic".into(),
            self.dlq.clone(),
            "--ledger-topic".into(),
            self.ledger.clone(),
            "--events-topic".into(),
            self.events.clone(),
            "--timeout-secs".into(),
            "30".into(),
        ]
    }

    fn vigil(&self, sub: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["dlq".into(), sub.into()];
        args.extend(self.common());
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .env(
                "VIGIL_KAFKA_BOOTSTRAP",
                vigil_test_support::kafka_bootstrap(),
            )
            .env(
                "VIGIL_SCHEMA_REGISTRY_URL",
                vigil_test_support::schema_registry_url(),
            )
            .output()
            .expect("running vigil")
    }

    fn key(&self, name: &str, seed: u8) -> String {
        let path = self.dir.path().join(format!("{name}.pem"));
        let pem = EventSigner::from_seed(&[seed; 32]).to_pkcs8_pem().unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        path.display().to_string()
    }

    fn cfg(&self) -> DlqConfig {
        let mut c = DlqConfig::new(KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()));
        c.timeout = Duration::from_secs(30);
        c
    }

    /// Keys of the records in `topic` (sorted), each with its `vigil-replayed-from` header.
    fn keys_in(&self, topic: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        scan_topic(
            &self.cfg(),
            topic,
            &Selection::Filter(Filter::default()),
            |r| {
                let from = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == vigil_dead_letter::REPLAYED_FROM)
                    .and_then(|(_, v)| v.clone())
                    .map(|v| String::from_utf8(v).unwrap());
                out.push((String::from_utf8(r.key.unwrap_or_default()).unwrap(), from));
                Ok(())
            },
        )
        .unwrap();
        out.sort();
        out
    }

    fn replayed_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .origins
            .iter()
            .flat_map(|o| self.keys_in(o))
            .map(|(k, from)| {
                assert!(from.is_some(), "{k} lacks vigil-replayed-from");
                k
            })
            .collect();
        keys.sort();
        keys
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "vigil failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
}

/// Four records: `k0`..`k3`, origin `i % 2`, bad_data for k0 and k1, failed at base + i h.
async fn seed() -> Env {
    let env = Env {
        dlq: vigil_test_support::unique_name("cli-dlq"),
        ledger: vigil_test_support::unique_name("cli-ledger"),
        events: vigil_test_support::unique_name("cli-events"),
        origins: [
            vigil_test_support::unique_name("cli-origin-a"),
            vigil_test_support::unique_name("cli-origin-b"),
        ],
        base_ms: vigil_schemas::model::now_micros() / 1000 - 6 * HOUR_MS,
        dir: tempfile::tempdir().unwrap(),
    };
    for t in [&env.dlq, &env.events, &env.origins[0], &env.origins[1]] {
        vigil_test_support::create_topic(t, 1).await;
    }
    let producer: FutureProducer = vigil_test_support::client_config().create().unwrap();
    for i in 0..4i64 {
        let failed = env.base_ms + i * HOUR_MS;
        let block = DeadLetterHeaders {
            error_class: if i < 2 {
                ErrorClass::BadData
            } else {
                ErrorClass::Transient
            },
            error: format!("failure {i}"),
            origin_topic: env.origins[(i % 2) as usize].clone(),
            origin_partition: 0,
            origin_offset: i,
            origin_timestamp_ms: None,
            consumer_group: "vigil-verifier".into(),
            attempts: 3,
            first_failed_at_ms: failed,
            last_failed_at_ms: failed,
            retry_not_before_ms: None,
        }
        .to_headers();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "vigil-sig",
            value: Some(&[0xab; 64][..]),
        });
        for (k, v) in &block {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        producer
            .send(
                FutureRecord::to(&env.dlq)
                    .key(&format!("k{i}"))
                    .payload(&[0u8, 0, 0, 0, 99, 1, 2, 0xff][..])
                    .headers(headers)
                    .timestamp(failed + 1000),
                Duration::from_secs(10),
            )
            .await
            .expect("seeding the dlq");
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_list_and_inspect() {
    let env = seed().await;
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.vigil("stats", &["--json"]))).unwrap();
    assert_eq!(stats["total"], 4);
    assert_eq!(stats["by_error_class"]["bad_data"], 2);
    assert_eq!(stats["by_origin_topic"][&env.origins[1]], 2);
    assert_eq!(stats["by_hour"].as_object().unwrap().len(), 4);
    let table = ok(&env.vigil("stats", &[]));
    assert!(table.contains("transient"), "{table}");

    let list = ok(&env.vigil("list", &["--error-class", "transient"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("0:2\ttransient\t"), "{list}");

    let shown = ok(&env.vigil("inspect", &["0:1"]));
    assert!(shown.contains("vigil-error-class: bad_data"), "{shown}");
    assert!(shown.contains("vigil-sig: hex:abab"), "{shown}");
    // Schema id 99 is unknown to the registry: shown as a hexdump.
    assert!(
        shown.contains("00000000  00 00 00 00 63 01 02 ff"),
        "{shown}"
    );
    refused(&env.vigil("inspect", &["0:99"]), "no record at 0:99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_needs_approval_dry_run_writes_nothing_filters_apply() {
    let env = seed().await;
    refused(&env.vigil("replay", &[]), "a replay needs approval");
    let dry = ok(&env.vigil("replay", &["--dry-run"]));
    assert!(dry.contains("would replay 4 of 4"), "{dry}");
    assert!(env.replayed_keys().is_empty());
    assert!(env.keys_in(&env.events).is_empty());

    let key = env.key("ops", 3);
    let from = vigil_schemas::model::format_rfc3339((env.base_ms + HOUR_MS) * 1000).unwrap();
    let to = vigil_schemas::model::format_rfc3339((env.base_ms + 3 * HOUR_MS) * 1000).unwrap();
    // k1 and k2 failed in [from, to); of those only k1 came from origin b.
    let out = ok(&env.vigil(
        "replay",
        &[
            "--no-approval",
            "--approver-key",
            &key,
            "--from",
            &from,
            "--to",
            &to,
            "--origin-topic",
            &env.origins[1],
        ],
    ));
    assert!(out.contains("replayed 1 of 1"), "{out}");
    assert_eq!(env.replayed_keys(), ["k1"]);
    let out = ok(&env.vigil(
        "replay",
        &[
            "--no-approval",
            "--approver-key",
            &key,
            "--error-class",
            "transient",
        ],
    ));
    assert!(out.contains("replayed 2 of 2"), "{out}");
    assert_eq!(env.replayed_keys(), ["k1", "k2", "k3"]);
    assert_eq!(env.keys_in(&env.events).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_approve_refusals_and_idempotence() {
    let env = seed().await;
    let planner = env.key("planner", 1);
    let approver = env.key("approver", 2);
    let plan = env.dir.path().join("plan.json");
    let plan_s = plan.display().to_string();
    let out = ok(&env.vigil(
        "replay",
        &[
            "--error-class",
            "bad_data",
            "--plan",
            &plan_s,
            "--planner-key",
            &planner,
        ],
    ));
    assert!(out.contains("2 records"), "{out}");
    assert!(env.replayed_keys().is_empty(), "planning writes nothing");

    refused(
        &env.vigil(
            "replay",
            &["--approve", &plan_s, "--approver-key", &planner],
        ),
        "approved by a different key",
    );
    let tampered = env.dir.path().join("tampered.json");
    tamper(&plan, &tampered);
    refused(
        &env.vigil(
            "replay",
            &[
                "--approve",
                &tampered.display().to_string(),
                "--approver-key",
                &approver,
            ],
        ),
        "signature does not match",
    );
    assert!(env.replayed_keys().is_empty());

    let out = ok(&env.vigil(
        "replay",
        &["--approve", &plan_s, "--approver-key", &approver],
    ));
    assert!(out.contains("replayed 2 of 2"), "{out}");
    assert!(out.contains("recorded as configuration event"), "{out}");
    let again = ok(&env.vigil(
        "replay",
        &["--approve", &plan_s, "--approver-key", &approver],
    ));
    assert!(
        again.contains("replayed 0 of 2") && again.contains("already replayed: 2"),
        "{again}"
    );
    assert_eq!(env.replayed_keys(), ["k0", "k1"]);
    let froms: Vec<Option<String>> = env
        .keys_in(&env.origins[0])
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(froms, [Some(format!("{}/0/0", env.dlq))]);
    assert_eq!(env.keys_in(&env.events).len(), 2);
}

/// Copies the plan with its first offset changed (signature left as it was).
fn tamper(from: &Path, to: &Path) {
    let mut plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from).unwrap()).unwrap();
    plan["plan"]["entries"][0]["offset"] = serde_json::json!(3);
    std::fs::write(to, serde_json::to_vec(&plan).unwrap()).unwrap();
}
