//! `kill -9` of a verifier process mid-stream: after a restart every raw event has a verdict,
//! none is lost, and duplicates stay within what at-least-once allows (records handled after
//! the last committed offset). The verifier process is this test binary re-executed with
//! `VIGIL_VERIFIER_CHILD_CONFIG` set.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use vigil_test_support::ChildProcess;
use vigil_topology::Telemetry;

const CHILD_ENV: &str = "VIGIL_VERIFIER_CHILD_CONFIG";
const TEST_NAME: &str = "kill_9_mid_stream_loses_nothing";

fn spawn_child(config_path: &std::path::Path) -> ChildProcess {
    ChildProcess::this_test(TEST_NAME, CHILD_ENV, config_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // Child role: run the verifier until killed.
        let text = std::fs::read_to_string(&path).unwrap();
        let config = vigil_verifier::VerifierConfig::from_toml(&text, &path).unwrap();
        let telemetry = Telemetry::new();
        vigil_verifier::run(&config, &telemetry, std::future::pending())
            .await
            .unwrap();
        return;
    }
    let partitions = 3;
    let topics = Topics::create(partitions).await;
    let schema = topics.raw_schema().await;
    let good = topics.keys.register("k-crash", schema).await;
    let config = topics.config();
    let dir = std::env::temp_dir().join(vigil_test_support::unique_name("vt-crash"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("verifier.toml");
    std::fs::write(
        &path,
        format!(
            "schema_registry_url = {:?}\ngroup_id = {:?}\nraw_topic = {:?}\nverified_topic = {:?}\nkeys_topic = {:?}\ntrust_anchors = {:?}\ndlq_topic = {:?}\nretry_topics = []\ncommit_interval_ms = 200\nverify_batch_max = 16\n[kafka]\nbootstrap_servers = {:?}\nlinger_ms = 1\n",
            config.consumer.schema_registry_url,
            config.consumer.group_id,
            config.raw_topic,
            config.verified_topic,
            config.keys_topic,
            topics.keys.anchors_path(),
            config.consumer.dlq_topic,
            config.consumer.kafka.bootstrap_servers
        ),
    )
    .unwrap();

    let total = 3_000;
    let p = producer();
    let records: Vec<_> = (0..total)
        .map(|_| good.sign(&event("k-crash")).unwrap())
        .collect();
    for chunk in records.chunks(500) {
        futures::future::join_all(chunk.iter().map(|r| send_signed(&p, &topics.raw, r))).await;
    }

    let reader = Reader::new(&topics.verified);
    let mut child = spawn_child(&path);
    let mut seen = reader.read(total / 3, Duration::from_secs(90)).await;
    assert!(
        seen.len() >= total / 3,
        "first verifier made progress: {}",
        seen.len()
    );
    child.kill(); // SIGKILL
    // Everything the killed process wrote is visible by now (its writes were acknowledged).
    seen.extend(reader.read(total, Duration::from_secs(2)).await);
    let written_before_kill = seen.len() as i64;
    let committed_at_kill =
        vigil_test_support::committed_total(&config.consumer.group_id, &topics.raw, partitions);
    assert!(committed_at_kill <= written_before_kill);

    let mut child = spawn_child(&path);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut counts: HashMap<String, usize> = HashMap::new();
    let tally = |reads: &[Read], counts: &mut HashMap<String, usize>| {
        for r in reads {
            *counts
                .entry(decode_verified(r).event.event_id.to_string())
                .or_default() += 1;
        }
    };
    tally(&seen, &mut counts);
    while counts.len() < total && tokio::time::Instant::now() < deadline {
        let more = reader.read(total, Duration::from_secs(2)).await;
        tally(&more, &mut counts);
    }
    child.kill();
    let _ = std::fs::remove_dir_all(&dir);

    let expected: std::collections::HashSet<String> =
        records.iter().map(|r| event_id_of(&r.value)).collect();
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    // At-least-once allows redoing what was written after the last commit, nothing more.
    let allowed = (written_before_kill - committed_at_kill) as usize;
    eprintln!(
        "crash: {total} events, {written_before_kill} verdicts before kill, committed {committed_at_kill}, duplicates {duplicates} (allowed {allowed}), missing {missing}"
    );
    assert_eq!(missing, 0, "no event lost");
    assert!(
        duplicates <= allowed,
        "{duplicates} duplicates > {allowed} in flight at the kill"
    );
}

fn event_id_of(value: &[u8]) -> String {
    let (_, body) = vigil_schemas::wire::split_frame(value).unwrap();
    vigil_schemas::Codec::<vigil_schemas::VerificationEvent>::new()
        .unwrap()
        .decode(body)
        .unwrap()
        .event_id
        .to_string()
}
