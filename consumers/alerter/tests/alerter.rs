//! Alerter against the real stack: alerts on a fresh topic, deliveries recorded by a local HTTP
//! receiver (`common::TestReceiver`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use vigil_alerter::AlertOutcome;
use vigil_alerter::payload::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use vigil_schemas::Severity;

async fn setup(route: &str) -> (Topics, TestReceiver, Secrets, InProcessAlerter) {
    let t = Topics::create(1).await;
    let r = TestReceiver::start().await;
    let s = Secrets::new();
    let running = InProcessAlerter::start(config(&t, &r, &s, route)).await;
    (t, r, s, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_holds_within_the_window_and_the_webhook_is_signed() {
    let (t, r, s, running) = setup("receivers: [hook]\ndedup_window_ms: 60000\n").await;
    let p = producer();
    let first = alert("fp-dup", "r1", Severity::High);
    send(&p, &t, &first).await;
    for _ in 0..3 {
        send(&p, &t, &alert("fp-dup", "r1", Severity::High)).await;
    }
    // A different fingerprint behind the duplicates on the one partition: once it is delivered,
    // the duplicates have been handled.
    send(&p, &t, &alert("fp-other", "r1", Severity::High)).await;
    let got = r.wait_delivered("/hook", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = r.delivered("/hook");
    assert_eq!(got_after.len(), 2, "one per fingerprint: {got_after:?}");
    let body = got[0].json();
    assert_eq!(body["alert"]["alert_id"], first.alert_id.to_string());
    assert_eq!(body["alert"]["fingerprint"], "fp-dup");
    assert_eq!(got[1].json()["alert"]["fingerprint"], "fp-other");
    let m = running.handler.metrics();
    assert_eq!(m.alerts_with(AlertOutcome::Suppressed), 3);
    assert_eq!(m.alerts_with(AlertOutcome::Delivered), 2);

    // HMAC-SHA256 over "<timestamp>.<body>" with the configured secret.
    let d = &got[0];
    let ts: i64 = d.headers[TIMESTAMP_HEADER].parse().unwrap();
    assert!((ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    assert!(verify(
        s.webhook_secret.as_bytes(),
        ts,
        &d.body,
        &d.headers[SIGNATURE_HEADER]
    ));
    assert!(!verify(b"wrong", ts, &d.body, &d.headers[SIGNATURE_HEADER]));
    assert_eq!(d.headers["content-type"], "application/json");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_fires_after_the_delay_and_acknowledgement_stops_it() {
    let route = "receivers: [hook]\nescalation:\n  tiers:\n    - {receivers: [lead], after_ms: 800}\n    - {receivers: [lead2], after_ms: 2000}\n";
    let (t, r, s, running) = setup(route).await;
    let p = producer();
    let http = reqwest::Client::new();
    let unacked = alert("fp-esc", "r1", Severity::Critical);
    let acked = alert("fp-acked", "r1", Severity::Critical);
    send(&p, &t, &unacked).await;
    send(&p, &t, &acked).await;
    let first = r.wait_delivered("/hook", 2, WAIT).await;
    // Acknowledge the second at once, by alert id.
    let ack_url = running.api_url(&format!("/alerts/{}/ack", acked.alert_id));
    ack(&ack_url, &s.api_token, "alice", "looking").await;
    let tier1 = r.wait_delivered("/lead", 1, WAIT).await;
    let waited = tier1[0].at.duration_since(first[0].at);
    assert!(
        waited >= Duration::from_millis(750),
        "tier 1 fired after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1_800),
        "tier 1 fired after {waited:?}"
    );
    assert_eq!(tier1[0].json()["alert"]["fingerprint"], "fp-esc");
    assert_eq!(tier1[0].json()["escalation_tier"], 1);
    // Acknowledge the first by fingerprint before tier 2 is due.
    let resp = http
        .post(running.api_url("/alerts/fp-esc/ack"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        first[0].at + Duration::from_millis(2_600),
    ))
    .await;
    assert_eq!(
        r.delivered("/lead").len(),
        1,
        "the acknowledged alert never reached tier 1"
    );
    assert!(
        r.requests("/lead2").is_empty(),
        "acknowledgement stopped tier 2"
    );
    let listed: serde_json::Value = http
        .get(running.api_url("/alerts"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alerts = listed["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a["acknowledged"].is_object()));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_is_retried_and_delivered_exactly_once() {
    let (t, r, _s, running) = setup("receivers: [hook]\n").await;
    r.fail_next(3);
    let p = producer();
    let a = alert("fp-outage", "r1", Severity::High);
    send(&p, &t, &a).await;
    r.wait_delivered("/hook", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = r.requests("/hook");
    assert_eq!(
        all.len(),
        4,
        "3 failures then one success: {:?}",
        all.iter().map(|d| d.status).collect::<Vec<_>>()
    );
    assert_eq!(r.delivered("/hook").len(), 1);
    assert!(
        all.iter()
            .all(|d| d.json()["alert"]["alert_id"] == a.alert_id.to_string())
    );
    assert_eq!(
        running
            .handler
            .metrics()
            .alerts_with(AlertOutcome::Delivered),
        1
    );
    assert_eq!(
        read(&t.dlq, 1, Duration::from_secs(2)).await.len(),
        0,
        "nothing dead-lettered"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_alert_goes_to_the_dlq_with_headers_and_the_partition_moves_on() {
    let (t, r, _s, running) = setup("receivers: [hook]\n").await;
    r.set_down(true);
    let p = producer();
    let a = alert("fp-down", "r1", Severity::High);
    let value = vigil_schemas::Codec::<vigil_schemas::Alert>::new()
        .unwrap()
        .encode_framed(t.schema, &a)
        .unwrap();
    send_raw(&p, &t.alerts, a.fingerprint.as_bytes(), &value).await;
    let dl = read(&t.dlq, 1, WAIT).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(r.requests("/hook").len(), 4, "max_attempts = 4");
    let h = &dl[0].headers;
    assert_eq!(h["vigil-error-class"], "transient");
    assert!(
        h["vigil-error"].contains("receiver hook: HTTP 503"),
        "{}",
        h["vigil-error"]
    );
    assert_eq!(h["vigil-origin-topic"], t.alerts);
    assert_eq!(h["vigil-origin-partition"], "0");
    assert_eq!(h["vigil-origin-offset"], "0");
    assert_eq!(h["vigil-attempts"], "4");
    assert!(h.contains_key("vigil-consumer-group") && h.contains_key("vigil-first-failed-at"));
    assert_eq!(dl[0].key.as_deref(), Some(a.fingerprint.as_bytes()));
    assert_eq!(
        dl[0].value.as_deref(),
        Some(value.as_slice()),
        "original bytes kept"
    );
    // The partition moved on: the receiver is back and the next alert is delivered.
    r.set_down(false);
    send(&p, &t, &alert("fp-next", "r1", Severity::High)).await;
    r.wait_delivered("/hook", 1, WAIT).await;
    assert_eq!(
        running
            .handler
            .metrics()
            .alerts_with(AlertOutcome::DeadLettered),
        1
    );
    // Undecodable bytes are bad data, dead-lettered by the runtime.
    send_raw(&p, &t.alerts, b"k", b"\x00\x00\x00").await;
    let dl = read(&t.dlq, 2, WAIT).await;
    assert_eq!(dl.len(), 2);
    assert_eq!(dl[1].headers["vigil-error-class"], "bad_data");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_suppress_until_deleted() {
    let (t, r, s, running) = setup("receivers: [hook]\ndedup_window_ms: 1\n").await;
    let http = reqwest::Client::new();
    let silence = create_silence(&running.api_url("/silences"), &s.api_token, "noisy", "bob").await;
    let id = silence["id"].as_str().unwrap().to_owned();
    let p = producer();
    send(&p, &t, &alert("fp-noisy", "noisy", Severity::High)).await;
    send(&p, &t, &alert("fp-barrier", "other", Severity::High)).await;
    let got = r.wait_delivered("/hook", 1, WAIT).await;
    assert_eq!(got[0].json()["alert"]["rule_id"], "other");
    assert_eq!(
        running
            .handler
            .metrics()
            .alerts_with(AlertOutcome::Silenced),
        1
    );
    let listed: serde_json::Value = http
        .get(running.api_url("/silences"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["silences"][0]["id"], id.as_str());
    delete_silence(&running.api_url(&format!("/silences/{id}")), &s.api_token).await;
    send(&p, &t, &alert("fp-noisy", "noisy", Severity::High)).await;
    let got = r.wait_delivered("/hook", 2, WAIT).await;
    assert_eq!(got[1].json()["alert"]["rule_id"], "noisy");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_pagerduty_payloads_have_their_shapes_and_routing_fans_out() {
    let route = "receivers: [hook]\nroutes:\n  - match: {severity: [critical]}\n    receivers: [pd]\n    continue: true\n  - match: {labels: {tenant: acme}}\n    receivers: [slack]\n";
    let (t, r, _s, running) = setup(route).await;
    let p = producer();
    let crit = alert("fp-crit", "key_revoked_in_use", Severity::Critical);
    send(&p, &t, &crit).await;
    let pd = r.wait_delivered("/pd", 1, WAIT).await[0].json();
    assert_eq!(pd["routing_key"], "PDKEY");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["dedup_key"], "fp-crit");
    assert_eq!(pd["payload"]["severity"], "critical");
    assert_eq!(pd["payload"]["source"], "vigil");
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("rule key_revoked_in_use")
    );
    assert_eq!(pd["payload"]["custom_details"]["count"], 7);
    let slack = r.wait_delivered("/slack", 1, WAIT).await[0].json();
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] rule key_revoked_in_use")
    );
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert!(
        r.requests("/hook").is_empty(),
        "the root only takes what no child matched"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_folds_alerts_of_one_group_into_one_notification() {
    let (t, r, s, running) =
        setup("receivers: [hook]\ngroup_by: [rule_id, tenant]\ngroup_interval_ms: 60000\n").await;
    let p = producer();
    let lead = alert("fp-g1", "burst", Severity::High);
    send(&p, &t, &lead).await;
    send(&p, &t, &alert("fp-g2", "burst", Severity::High)).await;
    send(&p, &t, &alert("fp-g3", "burst", Severity::High)).await;
    send(&p, &t, &alert("fp-x", "other", Severity::High)).await;
    r.wait_delivered("/hook", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.delivered("/hook").len(), 2);
    assert_eq!(
        running.handler.metrics().alerts_with(AlertOutcome::Grouped),
        2
    );
    let listed: serde_json::Value = reqwest::Client::new()
        .get(running.api_url("/alerts"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let g = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"]["alert_id"] == lead.alert_id.to_string())
        .cloned()
        .unwrap();
    assert_eq!(g["grouped_alerts"], 2);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_the_token_and_refuses_bad_or_oversized_bodies() {
    let (_t, _r, s, running) = setup("receivers: [hook]\n").await;
    let http = reqwest::Client::new();
    let url = running.api_url("/silences");
    let started = Instant::now();
    let none = http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .get(&url)
        .bearer_auth("test-token-12")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let unauth_post = http.post(&url).body("{").send().await.unwrap();
    assert_eq!(unauth_post.status(), 401, "auth is checked before the body");
    let bad = http
        .post(&url)
        .bearer_auth(&s.api_token)
        .body("{\"matchers\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let reason: serde_json::Value = bad.json().await.unwrap();
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{reason}"
    );
    let unknown = http
        .post(&url)
        .bearer_auth(&s.api_token)
        .body("{\"matchers\": {\"rule\": [\"x\"]}, \"duration_ms\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("unknown field `rule`")
    );
    let empty = http
        .post(&url)
        .bearer_auth(&s.api_token)
        .json(&serde_json::json!({"matchers": {}, "duration_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let big = format!(
        "{{\"matchers\": {{\"rule_id\": [\"{}\"]}}, \"duration_ms\": 1000}}",
        "x".repeat(2_000)
    );
    let over = http
        .post(&url)
        .bearer_auth(&s.api_token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    let missing = http
        .post(running.api_url("/alerts/nope/ack"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(10));
    running.stop().await;
}
