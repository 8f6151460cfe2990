#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! The whole pipeline against the real stack, started by `vigil-pipeline` in one namespace:
//! signed events through the verifier and the correlator give exactly the expected alerts (and
//! benign traffic none); correlator alerts through the alerter reach a webhook, deduplicated
//! per key. Each test runs in its own namespace and tears it down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use vigil_correlator::fingerprint;
use vigil_pipeline::{
    Endpoints, Namespace, Pipeline, PipelineConfig, ServiceKind, apply_topology, teardown,
};
use vigil_schemas::model::{Severity, Trace, now_micros};
use vigil_schemas::{
    EventClass, Producer, SignatureState, SignedRecord, Status, Subject, VerificationEvent,
};
use vigil_test_support::feed::event;
use vigil_test_support::keys::record_signer;
use vigil_test_support::{
    AlertReader, Feeder, KeyRegistryFixture, eventually, metric, producer, send_signed,
};
use vigil_topology::ReplicationOverride;

const MINUTE_US: i64 = 60_000_000;

/// The repository's built-in rule pack.
fn rules_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules"))
}

/// A fresh namespace with the built-in topology applied (at most `partitions` per topic);
/// returns it with its topic names, for [`teardown`].
async fn namespace(partitions: i32) -> (Namespace, Endpoints, Vec<String>) {
    let ns = Namespace::random("vigil-e2e").unwrap();
    let mut endpoints = Endpoints::from_env();
    endpoints.kafka.linger_ms = 1;
    let topology = ns
        .topology(ReplicationOverride::from_env().unwrap(), Some(partitions))
        .unwrap();
    apply_topology(&endpoints.kafka, &topology).await.unwrap();
    let topics = topology.topics.iter().map(|t| t.name.clone()).collect();
    (ns, endpoints, topics)
}

/// Stops `pipeline`, failing on any service that did not stop cleanly, and tears the namespace
/// down.
async fn finish(pipeline: Pipeline, ns: &Namespace, endpoints: &Endpoints, topics: &[String]) {
    for stop in pipeline.stop(Duration::from_secs(30)).await {
        assert!(stop.outcome.is_ok(), "{}: {:?}", stop.service, stop.outcome);
    }
    let report = teardown(ns, endpoints, topics).await;
    report.topics.unwrap().unwrap();
}

/// Waits until the pipeline's correlator evaluated `n` events.
async fn evaluated(pipeline: &Pipeline, n: u64) {
    let telemetry = pipeline.telemetry(ServiceKind::Correlator).unwrap();
    eventually(
        &format!("{n} events evaluated"),
        Duration::from_secs(60),
        || metric(telemetry, "vigil_correlator_events_total", &[]) as u64 >= n,
    )
    .await;
}

fn trace(i: usize) -> Trace {
    Trace::new(
        format!("{:032x}", 0xabc0_0000 + i),
        format!("{:016x}", i + 1),
    )
}

fn forge(mut r: SignedRecord) -> SignedRecord {
    for (k, v) in &mut r.headers {
        if k == "vigil-sig" {
            v[0] ^= 1;
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sequences_through_the_verifier_give_exactly_the_expected_alerts() {
    let (ns, endpoints, topics) = namespace(3).await;
    let raw = ns.raw_topic();
    let keys = KeyRegistryFixture::create("e2e-keys").await;
    let raw_schema = vigil_test_support::register_schema::<VerificationEvent>(&raw).await;
    let good = keys.register("k-good", raw_schema).await;
    let brute = keys.register("k-brute", raw_schema).await;
    let revoked = record_signer("k-revoked", raw_schema);
    keys.revoke(
        "k-revoked",
        revoked.signer(),
        now_micros() - 1_000_000,
        Some("lost laptop"),
        false,
    )
    .await;

    let mut config = PipelineConfig::new(ns.clone(), endpoints.clone())
        .with_verifier(keys.anchors_path())
        .with_correlator(rules_dir());
    let verifier = config.verifier.as_mut().unwrap();
    verifier.keys_topic = keys.topic().to_owned();
    verifier.max_clock_skew_ms = 60_000;
    let pipeline = Pipeline::start(&config).await.unwrap();
    pipeline.ready(Duration::from_secs(60)).await.unwrap();
    let mut alerts = AlertReader::new(&ns.alerts_topic());
    let p = producer();

    // Benign: valid signatures, several principals, classes, platforms, traces.
    let classes = [
        EventClass::SignatureVerification,
        EventClass::Authentication,
        EventClass::Authorization,
    ];
    let platforms = [
        Producer::rust("api"),
        Producer::new(vigil_schemas::Platform::Python, "1.0", "web"),
        Producer::new(vigil_schemas::Platform::Js, "1.0", "spa"),
    ];
    let benign = 40;
    for i in 0..benign {
        let e = VerificationEvent::new(
            classes[i % 3],
            "login",
            Status::Success,
            platforms[i % 3].clone(),
        )
        .with_subject(Subject::principal(format!("user{i}")).with_key_id("k-good"))
        .with_trace(trace(1_000 + i / 3));
        send_signed(&p, &raw, &good.sign(&e).unwrap()).await;
    }
    evaluated(&pipeline, benign as u64).await;
    assert!(
        alerts.settle(Duration::from_secs(3)).await.is_empty(),
        "benign traffic raised {:?}",
        alerts.rule_ids()
    );

    // Attacks: a brute-force burst of bad signatures on one key, a revoked key still signing,
    // and one record sent twice (its nonce replayed).
    let mut forged_ids = BTreeSet::new();
    let mut forged_traces = BTreeSet::new();
    let mut forged_times = Vec::new();
    for i in 0..5 {
        let e = event("k-brute").with_trace(trace(i));
        forged_ids.insert(e.event_id.to_string());
        forged_traces.insert(trace(i).trace_id);
        forged_times.push(e.occurred_at);
        send_signed(&p, &raw, &forge(brute.sign(&e).unwrap())).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let revoked_event = event("k-revoked");
    send_signed(&p, &raw, &revoked.sign(&revoked_event).unwrap()).await;
    let replayed_event = event("k-good");
    let replayed = good.sign(&replayed_event).unwrap();
    send_signed(&p, &raw, &replayed).await;
    send_signed(&p, &raw, &replayed).await;
    let total = benign as u64 + 5 + 1 + 2;

    alerts.until(3, Duration::from_secs(60)).await;
    evaluated(&pipeline, total).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_eq!(
        alerts.rule_ids(),
        vec![
            "vigil-bad-signature-per-key",
            "vigil-key-used-after-revocation",
            "vigil-replayed-nonce"
        ],
        "{:#?}",
        alerts.seen
    );
    let find = |id: &str| {
        alerts
            .seen
            .iter()
            .find(|a| a.alert.rule_id == id)
            .unwrap()
            .clone()
    };

    // The burst alert, field by field.
    let burst = find("vigil-bad-signature-per-key");
    let a = &burst.alert;
    let group = vec![("key_id".to_owned(), "k-brute".to_owned())];
    assert_eq!(
        a.fingerprint,
        fingerprint("vigil-bad-signature-per-key", &group)
    );
    assert_eq!(
        burst.key.as_deref(),
        Some(a.fingerprint.as_bytes()),
        "record key is the fingerprint"
    );
    let alert_schema =
        vigil_test_support::register_schema::<vigil_schemas::model::Alert>(&ns.alerts_topic())
            .await;
    assert_eq!(
        burst.schema, alert_schema.0,
        "framed with the alerts subject's schema id"
    );
    assert_eq!(a.severity_id, Severity::High);
    assert_eq!(a.rule_title, "Repeated failed signature checks for one key");
    assert_eq!(a.group_key, group.into_iter().collect::<BTreeMap<_, _>>());
    assert_eq!(a.count, 5);
    assert_eq!(
        a.evidence_event_ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        forged_ids
    );
    assert_eq!(
        a.trace_ids.iter().cloned().collect::<BTreeSet<_>>(),
        forged_traces
    );
    let (first, last) = (
        *forged_times.iter().min().unwrap(),
        *forged_times.iter().max().unwrap(),
    );
    assert_eq!(a.last_seen, last);
    assert_eq!(a.first_seen, first);
    assert_eq!(
        (a.window_end, a.window_end - a.window_start),
        (last, 5 * MINUTE_US)
    );
    assert!(a.description.contains("k-brute"), "{}", a.description);

    let rev = find("vigil-key-used-after-revocation").alert;
    assert_eq!(
        rev.evidence_event_ids,
        vec![revoked_event.event_id.to_string()]
    );
    assert_eq!((rev.severity_id, rev.count), (Severity::High, 1));
    assert_eq!(
        (rev.first_seen, rev.last_seen),
        (revoked_event.occurred_at, revoked_event.occurred_at)
    );
    let rep = find("vigil-replayed-nonce").alert;
    assert_eq!(
        rep.evidence_event_ids,
        vec![replayed_event.event_id.to_string()]
    );
    assert_eq!(rep.severity_id, Severity::High);
    finish(pipeline, &ns, &endpoints, &topics).await;
}

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
    let (ns, endpoints, topics) = namespace(1).await;
    let feeder = Feeder::new(&ns.verified_topic()).await;

    let seen: Received = Arc::default();
    let app = Router::new().fallback(hook).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    let routing = format!(
        "receivers:\n  - {{name: hook, kind: webhook, url: {url:?}}}\n\
         route: {{receivers: [hook], dedup_window_ms: 300000}}\n"
    );
    let config = PipelineConfig::new(ns.clone(), endpoints.clone())
        .with_correlator(rules_dir())
        .with_alerter(&routing, &token)
        .unwrap();
    let pipeline = Pipeline::start(&config).await.unwrap();
    pipeline.ready(Duration::from_secs(60)).await.unwrap();
    let handler = Arc::clone(pipeline.alerter().unwrap());

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
    let mut alerts = AlertReader::new(&ns.alerts_topic());
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

    finish(pipeline, &ns, &endpoints, &topics).await;
}
