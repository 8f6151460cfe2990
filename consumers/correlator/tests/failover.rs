//! Failover in the middle of a correlation window: two correlators in one consumer group on a
//! 1-partition verified topic, one active and one idle standby; the active one stops after 3 of 5 bad signatures, the standby takes the
//! partition over, rebuilds its windows from the verified topic up to the committed offset, and
//! the 2 remaining events fire the burst exactly once.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "k-failover";

fn rebuilds(running: &Running, result: &str) -> u64 {
    metric(
        &running.telemetry,
        &format!("vigil_correlator_rebuilds_total{{result=\"{result}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_taking_over_mid_window_still_fires_once() {
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let config = topics.config();
    let first = Running::start(config.clone());
    first.ready().await;
    // The second joins the same group: of one partition, one instance gets it and the other
    // idles as the standby. Which one is the assignor's choice, so it is read off the events.
    let second = Running::start(config.clone());
    second.ready().await;
    let mut ids = bad(&feeder, KEY, 3).await;
    eventually("3 events evaluated", Duration::from_secs(60), || {
        first.events() + second.events() >= 3
    })
    .await;
    let (active, standby) = if first.events() >= 3 {
        (first, second)
    } else {
        (second, first)
    };
    eventually("3 offsets committed", Duration::from_secs(30), || {
        vigil_e2e::committed_total(&config.group_id, &topics.verified, 1) == 3
    })
    .await;
    assert_eq!(standby.events(), 0, "the standby holds no partition");
    assert_eq!(
        metric(&standby.telemetry, "vigil_correlator_rebuild_events_total"),
        0,
        "the standby started before the half window existed"
    );
    active.stop().await;
    // Leaving the group on a clean stop hands the partition over at once; the standby's
    // engine must learn the 3 committed events from the topic, not from its start (hours ago
    // in production), before it evaluates the next record.
    ids.extend(bad(&feeder, KEY, 2).await);
    standby.evaluated(2).await;
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
        metric(&standby.telemetry, "vigil_correlator_rebuild_events_total"),
        3,
        "the 3 committed events were replayed on takeover"
    );
    assert_eq!(rebuilds(&standby, "ok"), 2, "at start and on takeover");
    assert_eq!(rebuilds(&standby, "failed"), 0);
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_assignment_after_start_is_not_rebuilt_twice() {
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let config = topics.config();
    let first = Running::start(config.clone());
    first.ready().await;
    bad(&feeder, KEY, 2).await;
    first.evaluated(2).await;
    eventually("2 offsets committed", Duration::from_secs(30), || {
        vigil_e2e::committed_total(&config.group_id, &topics.verified, 1) == 2
    })
    .await;
    first.stop().await;
    let second = Running::start(config);
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
        metric(&second.telemetry, "vigil_correlator_rebuild_events_total"),
        2
    );
    second.stop().await;
}
