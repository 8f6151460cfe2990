#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! `topology apply` against the real broker: idempotent, and drift made by hand is detected.

use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use vigil_test_support::{client_config, kafka_bootstrap, unique_name};
use vigil_topology::{Change, KafkaClientConfig, ReplicationOverride, Topology, TopologyAdmin};

fn test_topology(a: &str, b: &str) -> Topology {
    let text = format!(
        "defaults:\n  replication_factor: 1\n  min_insync_replicas: 1\ntopics:\n\
         \x20 - name: {a}\n    partitions: 3\n    retention_ms: 3600000\n    cleanup_policy: delete\n    max_message_bytes: 2097152\n\
         \x20 - name: {b}\n    partitions: 1\n    retention_ms: -1\n    cleanup_policy: compact\n    min_compaction_lag_ms: 1000\n"
    );
    Topology::parse(
        Path::new("test-topics.yaml"),
        &text,
        ReplicationOverride::default(),
    )
    .expect("test topology parses")
}

#[tokio::test]
async fn apply_twice_changes_nothing_the_second_time_and_diff_sees_raised_partitions() {
    let (a, b) = (unique_name("e2e-topo-a"), unique_name("e2e-topo-b"));
    let topology = test_topology(&a, &b);
    let admin = TopologyAdmin::connect(&KafkaClientConfig::new(kafka_bootstrap())).expect("admin");

    let first = admin.plan(&topology).await.expect("plan");
    assert_eq!(first.changes.len(), 2, "two creations: {first:?}");
    assert!(first.changes.iter().all(|c| matches!(c, Change::Create(_))));
    admin.apply(&topology, &first).await.expect("first apply");

    let second = admin.plan(&topology).await.expect("plan after apply");
    assert!(
        second.is_empty(),
        "second apply would change: {:?}",
        second.lines()
    );

    // Raise a partition count by hand, as an operator might.
    let raw: AdminClient<DefaultClientContext> = client_config().create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in raw
        .create_partitions(&[NewPartitions::new(&a, 5)], &opts)
        .await
        .expect("raise")
    {
        r.expect("raise partitions by hand");
    }
    let drift = admin.plan(&topology).await.expect("plan after drift");
    assert_eq!(drift.conflicts.len(), 1, "{:?}", drift.lines());
    assert!(
        drift.conflicts[0]
            .reason
            .contains("declares 3 partitions but the topic has 5")
    );
    assert_eq!(drift.conflicts[0].line, 5, "points at the topic's line");
    let err = admin
        .apply(&topology, &drift)
        .await
        .expect_err("apply refuses to shrink");
    assert!(err.to_string().starts_with("test-topics.yaml:5:"), "{err}");

    // Raising the declaration resolves it through apply, and a config changed by hand is reset.
    let mut raised = topology.clone();
    raised.topics[0].partitions = 6;
    let plan = admin.plan(&raised).await.expect("plan raised");
    assert_eq!(
        plan.changes,
        vec![Change::RaisePartitions {
            topic: a.clone(),
            from: 5,
            to: 6
        }]
    );
    admin.apply(&raised, &plan).await.expect("apply raise");
    assert!(admin.plan(&raised).await.expect("plan").is_empty());

    raised.topics[1]
        .configs
        .insert("min.compaction.lag.ms".into(), "2000".into());
    let plan = admin.plan(&raised).await.expect("plan config change");
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.lines());
    admin.apply(&raised, &plan).await.expect("apply config");
    assert!(admin.plan(&raised).await.expect("plan").is_empty());
}
