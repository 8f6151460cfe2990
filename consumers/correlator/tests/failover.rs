//! Failover in the middle of a correlation window: two correlators in one consumer group on a
//! 1-partition verified topic, one active and one idle standby; the active one stops after 3 of 5 bad signatures, the standby takes the
//! partition over, rebuilds its windows from the verified topic up to the committed offset, and
//! the 2 remaining events fire the burst exactly once. The same holds when the active one is
//! a process killed with SIGKILL: the standby gets the partition after the session timeout.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};

const KEY: &str = "k-failover";

fn rebuilds(running: &Correlator, result: &str) -> u64 {
    count(
        running,
        "vigil_correlator_rebuilds_total",
        &[("result", result)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_taking_over_mid_window_still_fires_once() {
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let config = topics.config();
    let first = start_correlator(config.clone());
    first.ready().await;
    // The second joins the same group: of one partition, one instance gets it and the other
    // idles as the standby. Which one is the assignor's choice, so it is read off the events.
    let second = start_correlator(config.clone());
    second.ready().await;
    let mut ids = bad(&feeder, KEY, 3).await;
    eventually("3 events evaluated", Duration::from_secs(60), || {
        events(&first) + events(&second) >= 3
    })
    .await;
    let (active, standby) = if events(&first) >= 3 {
        (first, second)
    } else {
        (second, first)
    };
    eventually("3 offsets committed", Duration::from_secs(30), || {
        vigil_test_support::committed_total(&config.consumer.group_id, &topics.verified, 1) == 3
    })
    .await;
    assert_eq!(events(&standby), 0, "the standby holds no partition");
    assert_eq!(
        count(&standby, "vigil_correlator_rebuild_events_total", &[]),
        0,
        "the standby started before the half window existed"
    );
    active.stop().await.unwrap();
    // Leaving the group on a clean stop hands the partition over at once; the standby's
    // engine must learn the 3 committed events from the topic, not from its start (hours ago
    // in production), before it evaluates the next record.
    ids.extend(bad(&feeder, KEY, 2).await);
    evaluated(&standby, 2).await;
    let mut alerts = AlertReader::new(&topics.alerts);
    alerts.until(1, Duration::from_secs(30)).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_eq!(alerts.seen.len(), 1, "{:#?}", alerts.seen);
    let a = &alerts.seen[0].alert;
    assert_eq!(a.rule_id, "vigil-bad-signature-per-key");
    assert_eq!(a.group_key.get("key_id").map(String::as_str), Some(KEY));
    assert_eq!(a.count, 5);
    let mut got = a.evidence_event_ids.clone();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "evidence names the events from both instances");
    assert_eq!(
        count(&standby, "vigil_correlator_rebuild_events_total", &[]),
        3,
        "the 3 committed events were replayed on takeover"
    );
    assert_eq!(rebuilds(&standby, "ok"), 2, "at start and on takeover");
    assert_eq!(rebuilds(&standby, "failed"), 0);
    standby.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_assignment_after_start_is_not_rebuilt_twice() {
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let config = topics.config();
    let first = start_correlator(config.clone());
    first.ready().await;
    bad(&feeder, KEY, 2).await;
    evaluated(&first, 2).await;
    eventually("2 offsets committed", Duration::from_secs(30), || {
        vigil_test_support::committed_total(&config.consumer.group_id, &topics.verified, 1) == 2
    })
    .await;
    first.stop().await.unwrap();
    let second = start_correlator(config);
    second.ready().await;
    // The assignment's committed offset is the one the start-up rebuild replayed up to.
    eventually(
        "the first assignment was checked",
        Duration::from_secs(30),
        || rebuilds(&second, "skipped") == 1,
    )
    .await;
    assert_eq!(rebuilds(&second, "ok"), 1, "only the start-up rebuild ran");
    assert_eq!(
        count(&second, "vigil_correlator_rebuild_events_total", &[]),
        2
    );
    second.stop().await.unwrap();
}

const CHILD_TEST: &str = "sigkilled_active_is_replaced_by_the_standby_mid_window";

/// Session settings of both members: a dead member leaves the group after 6 s (the broker's
/// minimum), and static ids make the range assignor's choice certain: "a-…" sorts first, so
/// the child owns the one partition while both are members.
fn member_options(instance: &str) -> [(&'static str, String); 3] {
    [
        ("session.timeout.ms", "6000".to_owned()),
        ("heartbeat.interval.ms", "500".to_owned()),
        ("group.instance.id", instance.to_owned()),
    ]
}

/// Waits until `group` is stable with `members` members.
async fn group_stable_with(group: &str, members: usize) {
    let consumer: BaseConsumer = vigil_test_support::client_config()
        .create()
        .expect("group reader");
    eventually(
        &format!("group {group} stable with {members} members"),
        Duration::from_secs(60),
        || {
            consumer
                .fetch_group_list(Some(group), Duration::from_secs(5))
                .ok()
                .and_then(|l| {
                    l.groups()
                        .iter()
                        .find(|g| g.name() == group)
                        .map(|g| g.state() == "Stable" && g.members().len() == members)
                })
                .unwrap_or(false)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_active_is_replaced_by_the_standby_mid_window() {
    if run_as_child().await {
        return;
    }
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let group = vigil_test_support::unique_name("ct-group");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("correlator.toml");
    let options: Vec<String> = member_options("a-active")
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}"))
        .collect();
    let toml = format!(
        "{}librdkafka = {{ {} }}\n",
        topics.config_toml(&group),
        options.join(", ")
    );
    std::fs::write(&path, toml).unwrap();
    let mut child = spawn_child(CHILD_TEST, &path);
    group_stable_with(&group, 1).await;

    let mut config = topics.config();
    config.consumer.group_id = group.clone();
    for (k, v) in member_options("b-standby") {
        config.consumer.kafka.librdkafka.insert(k.to_owned(), v);
    }
    let standby = start_correlator(config);
    standby.ready().await;
    group_stable_with(&group, 2).await;

    let mut ids = bad(&feeder, KEY, 3).await;
    eventually(
        "the active child committed 3 offsets",
        Duration::from_secs(60),
        || vigil_test_support::committed_total(&group, &topics.verified, 1) == 3,
    )
    .await;
    assert_eq!(events(&standby), 0, "the standby holds no partition");
    // SIGKILL: no final commit, no leaving the group; the partition stays with the dead
    // member until its session times out.
    child.kill();
    ids.extend(bad(&feeder, KEY, 2).await);
    evaluated(&standby, 2).await;
    let mut alerts = AlertReader::new(&topics.alerts);
    alerts.until(1, Duration::from_secs(30)).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_eq!(alerts.seen.len(), 1, "{:#?}", alerts.seen);
    let a = &alerts.seen[0].alert;
    assert_eq!(a.count, 5);
    let mut got = a.evidence_event_ids.clone();
    got.sort();
    ids.sort();
    assert_eq!(
        got, ids,
        "evidence names the events of the killed and the surviving one"
    );
    assert_eq!(
        count(&standby, "vigil_correlator_rebuild_events_total", &[]),
        3,
        "the 3 events the killed one committed were replayed on takeover"
    );
    assert_eq!(rebuilds(&standby, "ok"), 2, "at start and on takeover");
    standby.stop().await.unwrap();
}
