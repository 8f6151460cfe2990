//! Correlator and alerter together against the real stack: detection alerts are fingerprinted
//! per key, so the alerter's dedup holds per key and never hides a second key's alert.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use common::*;
use vigil_schemas::SignatureState;
use vigil_test_support::RunningService;
use vigil_topology::{KafkaClientConfig, Telemetry};

/// Webhook bodies received, as JSON.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

async fn hook(State(seen): State<Received>, body: Bytes) -> &'static str {
    seen.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or_default());
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_revoked_keys_give_two_deliveries_and_a_repeat_within_the_dedup_window_none() {
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let correlator = start_correlator(topics.config());

    let seen: Received = Arc::default();
    let app = Router::new().fallback(hook).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    let state = vigil_test_support::unique_name("ct-alerter-state");
    vigil_test_support::create_compacted_topic(&state).await;
    let yaml = format!(
        "group_id: {group:?}\nalerts_topic: {alerts:?}\ndlq_topic: {dlq:?}\nstate_topic: {state:?}\ncommit_interval_ms: 200\n\
         api: {{listen: \"127.0.0.1:0\", bearer_token_file: {token:?}}}\n\
         receivers:\n  - {{name: hook, kind: webhook, url: {url:?}}}\n\
         route: {{receivers: [hook], dedup_window_ms: 300000}}\n",
        group = vigil_test_support::unique_name("ct-alerter"),
        alerts = topics.alerts,
        dlq = topics.dlq,
        token = token.display().to_string(),
    );
    let mut ac = vigil_alerter::AlerterConfig::from_yaml(&yaml, "test").unwrap();
    ac.kafka = KafkaClientConfig::new(vigil_test_support::kafka_bootstrap());
    ac.schema_registry_url = vigil_test_support::schema_registry_url();
    ac.validate("test").unwrap();
    let at = Telemetry::new();
    let alerter = vigil_alerter::build(&ac, &at).await.unwrap();
    let handler = alerter.handler.clone();
    let alerter = RunningService::spawn_with(at, move |telemetry, shutdown| async move {
        alerter.run(&ac, &telemetry, shutdown).await
    });
    correlator.ready().await;
    alerter.ready().await;

    // Key A used after revocation, then key B, then key A again (inside the 5-minute window).
    for key in ["k-revoked-a", "k-revoked-b", "k-revoked-a"] {
        let v = feeder.verdict(
            event(key),
            SignatureState::Revoked,
            Some("key revoked: lost laptop"),
            key,
        );
        feeder.send(&v).await;
    }
    let mut alerts = AlertReader::new(&topics.alerts);
    alerts.until(3, Duration::from_secs(60)).await;
    let fingerprints: Vec<&str> = alerts
        .seen
        .iter()
        .map(|a| a.alert.fingerprint.as_str())
        .collect();
    assert_eq!(fingerprints.len(), 3, "{:#?}", alerts.seen);
    assert_ne!(
        fingerprints[0], fingerprints[1],
        "two keys, two fingerprints"
    );
    assert_eq!(fingerprints[0], fingerprints[2], "one key, one fingerprint");

    // All three alerts handled by the alerter: two delivered, the repeat suppressed.
    eventually("alerter handled 3 alerts", Duration::from_secs(60), || {
        handler
            .metrics()
            .alerts_with(vigil_alerter::AlertOutcome::Delivered)
            + handler
                .metrics()
                .alerts_with(vigil_alerter::AlertOutcome::Suppressed)
            >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies = seen.lock().unwrap().clone();
    let keys: BTreeSet<String> = bodies
        .iter()
        .map(|b| {
            b["alert"]["group_key"]["key_id"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(
        keys,
        BTreeSet::from(["k-revoked-a".to_owned(), "k-revoked-b".to_owned()])
    );
    assert_eq!(
        handler
            .metrics()
            .alerts_with(vigil_alerter::AlertOutcome::Suppressed),
        1
    );

    alerter.stop().await.unwrap();
    correlator.stop().await.unwrap();
}
