//! The alerter's state survives a crash: an alerter in a child process is killed with SIGKILL
//! (no graceful shutdown), and a new instance on the same group and state topic keeps dedup
//! windows, acknowledgements, silences and escalation timers, and still delivers an alert the
//! crashed instance marked but never delivered.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use vigil_alerter::state::dedup_key;
use vigil_alerter::{AlertOutcome, AlerterConfig};
use vigil_schemas::Severity;
use vigil_test_support::unique_name;

async fn setup() -> (Topics, TestReceiver, Secrets, String) {
    let t = Topics::create(1).await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    (t, r, s, unique_name("at-restart-group"))
}

async fn successor(yaml: &str) -> InProcessAlerter {
    let config = AlerterConfig::from_yaml(yaml, "test").unwrap();
    config.validate("test").unwrap();
    InProcessAlerter::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_window_survives_a_crash() {
    let (t, r, s, group) = setup().await;
    let yaml = config_yaml(
        &t,
        &r,
        &s,
        &group,
        "receivers: [hook]\ndedup_window_ms: 600000\n",
        4,
    );
    let p = producer();
    let first = alert("fp-restart-dup", "r1", Severity::High);

    let child = ChildAlerter::start(&yaml).await;
    send(&p, &t, &first).await;
    r.wait_delivered("/hook", 1, WAIT).await;
    // The record is done (offset committed), so the successor starts after it.
    wait_committed(&group, &t.alerts, 1, WAIT).await;
    child.kill();

    let running = successor(&yaml).await;
    let m = running.handler.metrics();
    assert_eq!(m.restored("mark"), 1, "the dedup mark came back");
    assert_eq!(m.restored("alert"), 1);
    assert!(m.restore_seconds() > 0.0);
    let again = alert("fp-restart-dup", "r1", Severity::High);
    let barrier = alert("fp-restart-barrier", "r1", Severity::High);
    send_and_expect_hook(
        &p,
        &t,
        &r,
        &[&again, &barrier],
        &[&first, &barrier],
        "the same fingerprint inside the window was not notified again after the restart",
    )
    .await;
    assert_eq!(m.alerts_with(AlertOutcome::Suppressed), 1);
    assert_eq!(m.alerts_with(AlertOutcome::Delivered), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_silences_survive_a_crash() {
    let (t, r, s, group) = setup().await;
    let yaml = config_yaml(
        &t,
        &r,
        &s,
        &group,
        "receivers: [hook]\ndedup_window_ms: 1000\n",
        4,
    );
    let p = producer();
    let a = alert("fp-restart-ack", "r1", Severity::Critical);

    let child = ChildAlerter::start(&yaml).await;
    send(&p, &t, &a).await;
    r.wait_delivered("/hook", 1, WAIT).await;
    // The receiver may answer before the alert is recorded as active: ack once it is listed.
    let deadline = std::time::Instant::now() + WAIT;
    while get_json(&child.api_url("/alerts"), &s.api_token).await["alerts"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(std::time::Instant::now() < deadline, "alert never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ack_url = child.api_url(&format!("/alerts/{}/ack", a.alert_id));
    ack(&ack_url, &s.api_token, "alice", "on it").await;
    let silence = create_silence(&child.api_url("/silences"), &s.api_token, "noisy", "bob").await;
    wait_committed(&group, &t.alerts, 1, WAIT).await;
    child.kill();

    let running = successor(&yaml).await;
    let listed = get_json(&running.api_url("/alerts"), &s.api_token).await;
    let alerts = listed["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{listed}");
    assert_eq!(alerts[0]["alert"]["alert_id"], a.alert_id.to_string());
    assert_eq!(alerts[0]["acknowledged"]["by"], "alice");
    assert_eq!(alerts[0]["acknowledged"]["comment"], "on it");
    let silences = get_json(&running.api_url("/silences"), &s.api_token).await;
    assert_eq!(silences["silences"][0]["id"], silence["id"]);
    assert_eq!(silences["silences"][0]["created_by"], "bob");

    let noisy = alert("fp-restart-noisy", "noisy", Severity::High);
    let barrier = alert("fp-restart-barrier", "other", Severity::High);
    send_and_expect_hook(
        &p,
        &t,
        &r,
        &[&noisy, &barrier],
        &[&a, &barrier],
        "the silence created before the crash still silences",
    )
    .await;
    let m = running.handler.metrics();
    assert_eq!(m.alerts_with(AlertOutcome::Silenced), 1);
    assert_eq!(m.restored("silence"), 1);

    // Deleting it after the restart is written too: a third instance no longer has it.
    let id = silence["id"].as_str().unwrap();
    delete_silence(&running.api_url(&format!("/silences/{id}")), &s.api_token).await;
    running.stop().await;
    let third = successor(&yaml).await;
    assert_eq!(third.handler.metrics().restored("silence"), 0);
    assert!(third.handler.book().silences().is_empty());
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_timer_survives_a_crash_and_fires_once() {
    let (t, r, s, group) = setup().await;
    let route =
        "receivers: [hook]\nescalation:\n  tiers:\n    - {receivers: [lead], after_ms: 5000}\n";
    let yaml = config_yaml(&t, &r, &s, &group, route, 4);
    let p = producer();
    let a = alert("fp-restart-esc", "r1", Severity::Critical);

    let child = ChildAlerter::start(&yaml).await;
    send(&p, &t, &a).await;
    let first = r.wait_delivered("/hook", 1, WAIT).await;
    wait_committed(&group, &t.alerts, 1, WAIT).await;
    child.kill();
    assert!(
        first[0].at.elapsed() < Duration::from_secs(4),
        "killed before the tier was due"
    );
    assert!(r.requests("/lead").is_empty());

    let running = successor(&yaml).await;
    let tier = r.wait_delivered("/lead", 1, WAIT).await;
    let waited = tier[0].at.duration_since(first[0].at);
    assert!(
        waited >= Duration::from_millis(4_900),
        "the re-armed timer kept the remaining delay, fired after {waited:?}"
    );
    assert!(waited < Duration::from_secs(9), "fired after {waited:?}");
    assert_eq!(tier[0].json()["alert"]["alert_id"], a.alert_id.to_string());
    assert_eq!(tier[0].json()["escalation_tier"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.requests("/lead").len(), 1, "exactly once");
    assert_eq!(r.delivered("/hook").len(), 1, "the alert itself once");
    let listed = get_json(&running.api_url("/alerts"), &s.api_token).await;
    assert_eq!(listed["alerts"][0]["escalation_tier"], 1);
    running.stop().await;

    // The fired tier is in the changelog: a further restart does not notify it again.
    let third = successor(&yaml).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(r.requests("/lead").len(), 1);
    assert_eq!(third.handler.metrics().restored("alert"), 1);
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_marked_but_never_delivered_before_a_crash_is_delivered_after_it() {
    let (t, r, s, group) = setup().await;
    // Many slow attempts: the crashed instance is still retrying when it is killed.
    let yaml = config_yaml(
        &t,
        &r,
        &s,
        &group,
        "receivers: [hook]\ndedup_window_ms: 600000\n",
        50,
    );
    let p = producer();
    let a = alert("fp-restart-redeliver", "r1", Severity::High);
    r.set_down(true);

    let child = ChildAlerter::start(&yaml).await;
    send(&p, &t, &a).await;
    // The mark is in the changelog (written before the delivery), the receiver refuses.
    let key = format!("mark/{}", dedup_key("route", &a.fingerprint));
    let marks = read(&t.state, 1, WAIT).await;
    assert_eq!(marks.len(), 1, "the mark reached the state topic");
    assert_eq!(marks[0].key.as_deref(), Some(key.as_bytes()));
    let mark: serde_json::Value =
        serde_json::from_slice(marks[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(mark["v"], 1);
    assert_eq!(mark["alert_id"], a.alert_id.to_string());
    eventually("a refused attempt", WAIT, || {
        !r.requests("/hook").is_empty()
    })
    .await;
    child.kill();
    assert!(r.delivered("/hook").is_empty());
    r.set_down(false);

    // The successor restores the mark, consumes the same record again (its offset was never
    // stored) and delivers it: the mark names this very alert.
    let running = successor(&yaml).await;
    let m = running.handler.metrics();
    assert_eq!(m.restored("mark"), 1);
    r.wait_delivered("/hook", 1, WAIT).await;
    // A different alert with the same fingerprint is still a duplicate.
    let dup = alert("fp-restart-redeliver", "r1", Severity::High);
    let barrier = alert("fp-restart-barrier", "r1", Severity::High);
    send_and_expect_hook(
        &p,
        &t,
        &r,
        &[&dup, &barrier],
        &[&a, &barrier],
        "a different alert with the same fingerprint is suppressed",
    )
    .await;
    assert_eq!(m.alerts_with(AlertOutcome::Delivered), 2);
    assert_eq!(m.alerts_with(AlertOutcome::Suppressed), 1);
    running.stop().await;
}
