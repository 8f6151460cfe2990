//! Several alerter instances share one state topic: each follows the others' writes after its
//! start-up restore. Instance A and instance B consume different alert topics (so which
//! instance handles an alert is certain) but write to and follow the same state topic, as two
//! instances of one group do for their own partitions.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vigil_alerter::AlertOutcome;
use vigil_schemas::Severity;

/// Longest time another instance's write may take to show here.
const FOLLOW: Duration = Duration::from_secs(10);

/// Topics of A and B: their own alert and DLQ topics, one shared state topic.
async fn shared_state_topics() -> (Topics, Topics) {
    let a = Topics::create(1).await;
    let mut b = Topics::create(1).await;
    b.state = a.state.clone();
    (a, b)
}

/// Polls `url` until `f` accepts the JSON answer; returns it.
async fn wait_json(
    what: &str,
    url: &str,
    token: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + FOLLOW;
    loop {
        let v = get_json(url, token).await;
        if f(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_created_on_one_instance_silences_on_another() {
    let (ta, tb) = shared_state_topics().await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let route = "receivers: [hook]\n";
    let a = InProcessAlerter::start(config(&ta, &r, &s, route)).await;
    let b = InProcessAlerter::start(config(&tb, &r, &s, route)).await;

    let silence = create_silence(&a.api_url("/silences"), &s.api_token, "noisy", "bob").await;
    let listed = wait_json(
        "the silence on B",
        &b.api_url("/silences"),
        &s.api_token,
        |v| v["silences"].as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    assert_eq!(listed["silences"][0]["id"], silence["id"]);
    assert_eq!(listed["silences"][0]["created_by"], "bob");

    let p = producer();
    let noisy = alert("fp-multi-noisy", "noisy", Severity::High);
    let barrier = alert("fp-multi-barrier", "other", Severity::High);
    send_and_expect_hook(
        &p,
        &tb,
        &r,
        &[&noisy, &barrier],
        &[&barrier],
        "B silenced the alert with A's silence",
    )
    .await;
    let (ma, mb) = (a.handler.metrics(), b.handler.metrics());
    assert_eq!(mb.alerts_with(AlertOutcome::Silenced), 1);
    assert_eq!(mb.follow_applied("silence"), 1);
    eventually("A skipping its own silence", FOLLOW, || {
        ma.follow_skipped("own") == 1
    })
    .await;
    assert_eq!(ma.follow_applied("silence"), 0);

    // Deleting it on B reaches A too.
    let id = silence["id"].as_str().unwrap();
    delete_silence(&b.api_url(&format!("/silences/{id}")), &s.api_token).await;
    wait_json(
        "the deletion on A",
        &a.api_url("/silences"),
        &s.api_token,
        |v| v["silences"].as_array().is_some_and(Vec::is_empty),
    )
    .await;
    assert_eq!(ma.follow_applied("tombstone"), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_on_one_instance_shows_on_another_and_stops_its_escalation() {
    let (ta, tb) = shared_state_topics().await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let route =
        "receivers: [hook]\nescalation:\n  tiers:\n    - {receivers: [lead], after_ms: 4000}\n";
    let a = InProcessAlerter::start(config(&ta, &r, &s, route)).await;
    let b = InProcessAlerter::start(config(&tb, &r, &s, route)).await;
    let x = alert("fp-multi-ack", "r1", Severity::Critical);
    let p = producer();
    // B handles the alert and runs its escalation timer.
    send(&p, &tb, &x).await;
    let first = r.wait_delivered("/hook", 1, WAIT).await;
    let id = x.alert_id.to_string();
    wait_json("the alert on A", &a.api_url("/alerts"), &s.api_token, |v| {
        v["alerts"][0]["alert"]["alert_id"] == id.as_str()
    })
    .await;

    ack(
        &a.api_url(&format!("/alerts/{id}/ack")),
        &s.api_token,
        "alice",
        "on it",
    )
    .await;
    let listed = wait_json("the ack on B", &b.api_url("/alerts"), &s.api_token, |v| {
        v["alerts"][0]["acknowledged"]["by"] == "alice"
    })
    .await;
    assert_eq!(listed["alerts"][0]["alert"]["alert_id"], id.as_str());
    assert_eq!(listed["alerts"][0]["acknowledged"]["comment"], "on it");
    assert!(
        first[0].at.elapsed() < Duration::from_millis(3_500),
        "the ack reached B before the tier was due"
    );

    // Past the tier's due time: B's timer saw the remote ack and notified nobody.
    tokio::time::sleep(Duration::from_millis(4_500).saturating_sub(first[0].at.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        r.requests("/lead").is_empty(),
        "no escalation after the ack"
    );
    let mb = b.handler.metrics();
    assert_eq!(mb.follow_applied("alert"), 1, "A's ack");
    assert_eq!(
        a.handler.metrics().follow_applied("alert"),
        1,
        "B's activation"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_delivered_by_one_instance_is_a_duplicate_on_another() {
    let (ta, tb) = shared_state_topics().await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let route = "receivers: [hook]\ndedup_window_ms: 600000\n";
    let a = InProcessAlerter::start(config(&ta, &r, &s, route)).await;
    let b = InProcessAlerter::start(config(&tb, &r, &s, route)).await;
    let p = producer();
    let x = alert("fp-multi-dup", "r1", Severity::High);
    send(&p, &ta, &x).await;
    r.wait_delivered("/hook", 1, WAIT).await;
    let mb = b.handler.metrics();
    eventually("A's dedup mark on B", FOLLOW, || {
        mb.follow_applied("mark") >= 1
    })
    .await;

    // The same fingerprint with a new alert id reaches B inside the window.
    let again = alert("fp-multi-dup", "r1", Severity::High);
    let barrier = alert("fp-multi-barrier", "r1", Severity::High);
    send_and_expect_hook(
        &p,
        &tb,
        &r,
        &[&again, &barrier],
        &[&x, &barrier],
        "exactly one delivery of the fingerprint across both instances",
    )
    .await;
    assert_eq!(mb.alerts_with(AlertOutcome::Suppressed), 1);
    assert_eq!(mb.alerts_with(AlertOutcome::Delivered), 1);
    a.stop().await;
    b.stop().await;
}
