//! Restarts in the middle of a correlation window: after a clean shutdown, an aborted task and
//! a `kill -9` of a correlator process, the start-up rebuild (replay of the verified topic up
//! to the committed offsets) keeps the half-filled window, so the burst still alerts exactly
//! once; and a restart after the alert does not fire it again. The killed correlator is this
//! test binary re-executed with `VIGIL_CORRELATOR_CHILD_CONFIG` set.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const CHILD_TEST: &str = "kill_9_mid_window_still_fires_once";
const PARTITIONS: i32 = 3;

enum Stop {
    Clean,
    Abort,
}

/// 3 of 5 bad signatures, a restart, 2 more: one alert naming all 5 (or none without rebuild).
async fn restart_mid_window(stop: Stop, rebuild: bool) -> (Vec<ReadAlert>, Vec<String>, u64) {
    let topics = Topics::create(PARTITIONS).await;
    let feeder = Feeder::new(&topics.verified).await;
    let mut config = topics.config();
    config.rebuild_on_start = rebuild;
    let first = start_correlator(config.clone());
    first.ready().await;
    let mut ids = bad(&feeder, "k-restart", 3).await;
    evaluated(&first, 3).await;
    eventually("3 offsets committed", Duration::from_secs(30), || {
        vigil_test_support::committed_total(&config.consumer.group_id, &topics.verified, PARTITIONS)
            == 3
    })
    .await;
    match stop {
        Stop::Clean => {
            first.stop().await.unwrap();
        }
        Stop::Abort => first.abort().await,
    }
    let second = start_correlator(config);
    second.ready().await;
    let replayed = count(&second, "vigil_correlator_rebuild_events_total", &[]);
    ids.extend(bad(&feeder, "k-restart", 2).await);
    evaluated(&second, 2).await;
    let mut alerts = AlertReader::new(&topics.alerts);
    alerts
        .until(1, Duration::from_secs(if rebuild { 30 } else { 3 }))
        .await;
    alerts.settle(Duration::from_secs(3)).await;
    second.stop().await.unwrap();
    (alerts.seen, ids, replayed)
}

fn assert_one_burst_alert(alerts: &[ReadAlert], ids: &[String]) {
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0].alert;
    assert_eq!(a.rule_id, "vigil-bad-signature-per-key");
    assert_eq!(
        a.group_key.get("key_id").map(String::as_str),
        Some("k-restart")
    );
    assert_eq!(a.count, 5);
    let mut got = a.evidence_event_ids.clone();
    got.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(
        got, want,
        "evidence names the events from before and after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_mid_window_still_fires_once() {
    let (alerts, ids, replayed) = restart_mid_window(Stop::Clean, true).await;
    assert_eq!(
        replayed, 3,
        "the 3 committed events were replayed into the window"
    );
    assert_one_burst_alert(&alerts, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_task_mid_window_still_fires_once() {
    let (alerts, ids, _) = restart_mid_window(Stop::Abort, true).await;
    assert_one_burst_alert(&alerts, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_rebuild_the_half_window_is_lost() {
    // Control: proves the rebuild, not re-delivery, is what keeps the window.
    let (alerts, _, replayed) = restart_mid_window(Stop::Clean, false).await;
    assert_eq!(replayed, 0);
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_the_alert_does_not_fire_it_again() {
    let topics = Topics::create(PARTITIONS).await;
    let feeder = Feeder::new(&topics.verified).await;
    let config = topics.config();
    let first = start_correlator(config.clone());
    first.ready().await;
    bad(&feeder, "k-restart", 5).await;
    let mut alerts = AlertReader::new(&topics.alerts);
    assert_eq!(alerts.until(1, Duration::from_secs(30)).await.len(), 1);
    first.stop().await.unwrap();
    let second = start_correlator(config);
    second.ready().await;
    assert_eq!(
        count(&second, "vigil_correlator_rebuild_events_total", &[]),
        5
    );
    // 4 more in the same 5-minute window: the replayed burst already fired and reset, so
    // 4 < 5 and nothing fires (a replay that re-emitted, or kept the count, would).
    bad(&feeder, "k-restart", 4).await;
    evaluated(&second, 4).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_eq!(alerts.seen.len(), 1, "{:#?}", alerts.seen);
    // The 5th after the restart is a new burst: exactly one more alert, same fingerprint.
    bad(&feeder, "k-restart", 1).await;
    alerts.until(2, Duration::from_secs(30)).await;
    alerts.settle(Duration::from_secs(2)).await;
    assert_eq!(alerts.seen.len(), 2, "{:#?}", alerts.seen);
    assert_eq!(
        alerts.seen[0].alert.fingerprint,
        alerts.seen[1].alert.fingerprint
    );
    second.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_window_still_fires_once() {
    if run_as_child().await {
        return;
    }
    let topics = Topics::create(PARTITIONS).await;
    let feeder = Feeder::new(&topics.verified).await;
    let group = vigil_test_support::unique_name("ct-group");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("correlator.toml");
    std::fs::write(&path, topics.config_toml(&group)).unwrap();
    let mut child = spawn_child(CHILD_TEST, &path);
    let mut ids = bad(&feeder, "k-restart", 3).await;
    eventually(
        "the child committed 3 offsets",
        Duration::from_secs(60),
        || vigil_test_support::committed_total(&group, &topics.verified, PARTITIONS) == 3,
    )
    .await;
    child.kill();
    let mut config = topics.config();
    config.consumer.group_id = group;
    let second = start_correlator(config);
    // The dead member holds its partitions until its session times out.
    eventually("correlator ready", Duration::from_secs(90), || {
        second.telemetry().health.is_ready()
    })
    .await;
    assert_eq!(
        count(&second, "vigil_correlator_rebuild_events_total", &[]),
        3
    );
    ids.extend(bad(&feeder, "k-restart", 2).await);
    let mut alerts = AlertReader::new(&topics.alerts);
    alerts.until(1, Duration::from_secs(30)).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_one_burst_alert(&alerts.seen, &ids);
    second.stop().await.unwrap();
}
