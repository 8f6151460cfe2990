//! Time the alerter spends restoring its state changelog at start, against the real stack.
//!
//! Writes `BENCH_MARKS` marks (default 100 000), `BENCH_ALERTS` active alerts (default 10 000)
//! and 100 silences to a fresh compacted topic, then builds an alerter on it and prints the
//! restore duration and counts (`vigil_alerter_state_restore_duration_seconds`).
//! `cargo run --release -p vigil-alerter --example bench_restore`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::field_reassign_with_default
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;
use vigil_alerter::changelog::{AlertDoc, MarkDoc, SilenceDoc, StateKey, VERSION, encode};
use vigil_alerter::{AlerterConfig, MatchConfig};
use vigil_schemas::model::now_micros;
use vigil_schemas::{Alert, Severity};
use vigil_test_support::{kafka_bootstrap, schema_registry_url, unique_name};
use vigil_topology::{KafkaClientConfig, Telemetry};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn alert(i: usize) -> Alert {
    let now = now_micros();
    Alert {
        alert_id: Uuid::new_v4(),
        fingerprint: format!("fp-{i}"),
        severity_id: Severity::High,
        rule_id: "bench".into(),
        rule_title: "bench rule".into(),
        group_key: BTreeMap::new(),
        window_start: now - 60_000_000,
        window_end: now,
        count: 3,
        evidence_event_ids: (0..5).map(|_| Uuid::new_v4().to_string()).collect(),
        trace_ids: vec![],
        first_seen: now - 1_000_000,
        last_seen: now,
        labels: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
        description: "bench alert".into(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (marks, alerts) = (env("BENCH_MARKS", 100_000), env("BENCH_ALERTS", 10_000));
    let topic = unique_name("bench-alerter-state");
    vigil_test_support::create_topic(&topic, 1).await;
    let mut pc = vigil_test_support::client_config();
    pc.set("linger.ms", "20").set("enable.idempotence", "true");
    let p: FutureProducer = pc.create().unwrap();
    let now_ms = now_micros() / 1_000;
    let mut records: Vec<(String, Vec<u8>)> = Vec::with_capacity(marks + alerts + 100);
    for i in 0..marks {
        let doc = MarkDoc {
            v: VERSION,
            alert_id: Uuid::new_v4(),
            expires_at_ms: now_ms + 3_600_000,
        };
        records.push((
            StateKey::Mark(format!("d\u{1f}route\u{1f}fp-{i}")).encode(),
            encode(&doc),
        ));
    }
    for i in 0..alerts {
        let a = alert(i);
        let doc = AlertDoc {
            v: VERSION,
            notified_at_ms: now_ms - 1_000,
            expires_at_ms: now_ms + 3_600_000,
            routes: vec!["route".into()],
            grouped: 0,
            escalation_tier: 0,
            ack: None,
            escalations: vec![],
            origin: None,
            alert: a.clone(),
        };
        records.push((StateKey::Alert(a.alert_id).encode(), encode(&doc)));
    }
    for i in 0..100 {
        let doc = SilenceDoc {
            v: VERSION,
            id: Uuid::new_v4(),
            matchers: MatchConfig {
                rule_id: vec![format!("r{i}")],
                ..MatchConfig::default()
            },
            ends_at_ms: now_ms + 3_600_000,
            created_by: "bench".into(),
            comment: String::new(),
            created_at_ms: now_ms,
        };
        records.push((StateKey::Silence(doc.id).encode(), encode(&doc)));
    }
    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
    for chunk in records.chunks(5_000) {
        let sends = chunk.iter().map(|(k, v)| {
            p.send(
                FutureRecord::to(&topic)
                    .key(k.as_str())
                    .payload(v.as_slice()),
                Duration::from_secs(30),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "bench-token").unwrap();
    let mut c = AlerterConfig::default();
    c.consumer.kafka = KafkaClientConfig::new(kafka_bootstrap());
    c.consumer.schema_registry_url = schema_registry_url();
    c.consumer.group_id = unique_name("bench-restore");
    c.state_topic = topic;
    c.api.listen = "127.0.0.1:0".parse().unwrap();
    c.api.bearer_token_file = Some(dir.path().join("token"));
    c.state.max_dedup_entries = marks.max(1);
    c.state.max_active_alerts = alerts.max(1);
    let telemetry = Telemetry::new();
    let started = Instant::now();
    let service = vigil_alerter::build(&c, &telemetry).await.unwrap();
    let build = started.elapsed();
    let m = service.handler.metrics();
    println!(
        "restored marks={} alerts={} silences={} from {} records ({:.1} MiB) in {:.3} s (build {:.3} s)",
        m.restored("mark"),
        m.restored("alert"),
        m.restored("silence"),
        records.len(),
        bytes as f64 / 1_048_576.0,
        m.restore_seconds(),
        build.as_secs_f64(),
    );
}
