//! The correlator against the real stack with the built-in rule pack: scripted verdict
//! sequences fed straight into the verified topic give exactly the expected alerts, near
//! misses none, and alert records carry what they should; a backlog drains. Every test uses
//! fresh topics and groups. The same through the verifier is `tests/tests/whole_pipeline.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use vigil_schemas::model::{Severity, Trace, now_micros};
use vigil_schemas::{
    EventClass, Producer, SignatureState, Status, Subject, VerificationEvent, VerifiedEvent,
};

const MINUTE_US: i64 = 60_000_000;

fn trace(i: usize) -> Trace {
    Trace::new(
        format!("{:032x}", 0xabc0_0000 + i),
        format!("{:016x}", i + 1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_scenarios_give_exactly_the_expected_alerts_and_near_misses_none() {
    // One partition: the absence scenario relies on event-time order of delivery.
    let topics = Topics::create(1).await;
    let feeder = Feeder::new(&topics.verified).await;
    let mut config = topics.config();
    config.max_evidence = 3;
    let correlator = start_correlator(config);
    correlator.ready().await;
    let mut alerts = AlertReader::new(&topics.alerts);
    let mut sent = 0_u64;
    let now = now_micros();
    let at = |e: VerificationEvent, t: i64| VerificationEvent {
        occurred_at: t,
        ..e
    };

    // Poison first: dead-lettered, the partition moves on.
    feeder
        .send_raw(b"poison", b"\x00\x00\x00\x00\x01garbage")
        .await;

    // Rotation (absence, 15m): k-rot1 started and never completed; k-rot2 completed.
    let lifecycle = |name: &str, key: &str| {
        VerificationEvent::new(
            EventClass::KeyLifecycle,
            name,
            Status::Success,
            Producer::rust("keys"),
        )
        .with_subject(Subject::default().with_key_id(key))
    };
    let rot1 = at(
        lifecycle("rotation_started", "k-rot1"),
        now - 20 * MINUTE_US,
    );
    let rot2 = at(
        lifecycle("rotation_started", "k-rot2"),
        now - 20 * MINUTE_US + 1,
    );
    let rot2_done = at(
        lifecycle("rotation_completed", "k-rot2"),
        now - 19 * MINUTE_US,
    );
    for e in [&rot1, &rot2, &rot2_done] {
        feeder
            .send(&feeder.verdict(e.clone(), SignatureState::Valid, None, "k-admin"))
            .await;
        sent += 1;
    }

    // Cross-platform auth failures: trace T1 fails on rust and python (alert); T2 fails three
    // times on rust only, T3 succeeds on two platforms (near misses).
    let auth = |status: Status, producer: Producer, t: &Trace| {
        VerificationEvent::new(EventClass::Authentication, "logon", status, producer)
            .with_subject(Subject::principal("bob").with_key_id("k-app"))
            .with_trace(t.clone())
    };
    let python = Producer::new(vigil_schemas::Platform::Python, "1.0", "web");
    let (t1, t2, t3) = (trace(1), trace(2), trace(3));
    let cross = [
        auth(Status::Failure, Producer::rust("api"), &t1),
        auth(Status::Failure, python.clone(), &t1),
    ];
    let mut near = vec![
        auth(Status::Success, Producer::rust("api"), &t3),
        auth(Status::Success, python.clone(), &t3),
    ];
    near.extend((0..3).map(|_| auth(Status::Failure, Producer::rust("api"), &t2)));
    for e in near.iter().chain(&cross) {
        feeder
            .send(&feeder.verdict(e.clone(), SignatureState::Valid, None, "k-app"))
            .await;
        sent += 1;
    }

    // Bad signatures: one each on five keys with no client IP (near miss: no per-key burst, and
    // "no IP" is no group), then five on five keys from one client IP (per-IP alert).
    for i in 0..5 {
        let v = feeder.verdict(
            event(&format!("k-spread{i}")),
            SignatureState::Bad,
            Some("signature does not verify"),
            &format!("k-spread{i}"),
        );
        feeder.send(&v).await;
        sent += 1;
    }
    let mut ip_ids = Vec::new();
    for i in 0..5 {
        let e = VerificationEvent::new(
            EventClass::SignatureVerification,
            "verify",
            Status::Success,
            Producer::rust("api"),
        )
        .with_subject(
            Subject::principal("mallory")
                .with_key_id(format!("k-ip{i}"))
                .with_client_ip("10.0.0.9"),
        );
        ip_ids.push(e.event_id.to_string());
        feeder
            .send(&feeder.verdict(
                e,
                SignatureState::Bad,
                Some("signature does not verify"),
                &format!("k-ip{i}"),
            ))
            .await;
        sent += 1;
    }

    // Unknown keys: 19 is no burst, the 20th is.
    let mut unknown_ids = Vec::new();
    for i in 0..20 {
        let e = event(&format!("k-stranger{i}"));
        unknown_ids.push(e.event_id.to_string());
        feeder
            .send(&feeder.verdict(
                e,
                SignatureState::Untrusted,
                Some("unknown key"),
                &format!("k-stranger{i}"),
            ))
            .await;
        sent += 1;
    }

    // Use after an emergency revocation: both revocation rules, whatever the reason says.
    let emergency = event("k-leaked");
    feeder
        .send(&VerifiedEvent {
            key_emergency: true,
            ..feeder.verdict(
                emergency.clone(),
                SignatureState::Revoked,
                Some("key revoked: key found in a public build log"),
                "k-leaked",
            )
        })
        .await;
    sent += 1;

    alerts.until(6, Duration::from_secs(60)).await;
    evaluated(&correlator, sent).await;
    alerts.settle(Duration::from_secs(3)).await;
    assert_eq!(
        alerts.rule_ids(),
        vec![
            "vigil-auth-failure-cross-platform",
            "vigil-bad-signature-per-ip",
            "vigil-key-used-after-revocation",
            "vigil-rotation-not-completed",
            "vigil-unknown-key-burst",
            "vigil-use-after-emergency-revocation",
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
            .alert
            .clone()
    };

    let x = find("vigil-auth-failure-cross-platform");
    assert_eq!(x.group_key.get("trace_id"), Some(&t1.trace_id));
    assert_eq!((x.count, x.severity_id), (2, Severity::High));
    assert_eq!(x.trace_ids, vec![t1.trace_id.clone()]);
    assert_eq!(
        x.evidence_event_ids.iter().collect::<BTreeSet<_>>(),
        cross
            .iter()
            .map(|e| e.event_id.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<BTreeSet<_>>()
    );

    let ip = find("vigil-bad-signature-per-ip");
    assert_eq!(
        ip.group_key.get("client_ip").map(String::as_str),
        Some("10.0.0.9")
    );
    assert_eq!(ip.count, 5);
    assert_eq!(
        ip.evidence_event_ids.len(),
        3,
        "evidence bounded by max_evidence"
    );
    assert!(ip.evidence_event_ids.iter().all(|id| ip_ids.contains(id)));

    let burst = find("vigil-unknown-key-burst");
    assert_eq!((burst.count, burst.severity_id), (20, Severity::Medium));
    assert!(burst.group_key.is_empty());
    assert_eq!(
        burst.evidence_event_ids.len(),
        3,
        "evidence bounded by max_evidence"
    );
    assert!(
        burst
            .evidence_event_ids
            .iter()
            .all(|id| unknown_ids.contains(id))
    );

    let rot = find("vigil-rotation-not-completed");
    assert_eq!(
        rot.group_key.get("subject.key_id").map(String::as_str),
        Some("k-rot1")
    );
    assert_eq!(
        (rot.window_start, rot.window_end),
        (rot1.occurred_at, rot1.occurred_at + 15 * MINUTE_US)
    );
    assert_eq!(
        (rot.first_seen, rot.last_seen, rot.count),
        (rot1.occurred_at, rot1.occurred_at, 1)
    );
    assert_eq!(rot.evidence_event_ids, vec![rot1.event_id.to_string()]);
    assert_eq!(rot.severity_id, Severity::Medium);

    let crit = find("vigil-use-after-emergency-revocation");
    assert_eq!(crit.severity_id, Severity::Critical);
    assert_eq!(
        crit.evidence_event_ids,
        vec![emergency.event_id.to_string()]
    );
    for a in &alerts.seen {
        assert_eq!(a.key.as_deref(), Some(a.alert.fingerprint.as_bytes()));
        assert!(
            a.alert.first_seen <= a.alert.last_seen && a.alert.window_start <= a.alert.window_end,
            "{a:?}"
        );
    }
    correlator.stop().await.unwrap();
}

/// Events through Kafka per second: a backlog of verdicts (90% valid, 5% bad signatures over
/// 5 000 keys, 3% unknown key, 2% revoked) drained by one correlator with the built-in pack.
/// `VIGIL_BENCH_CORRELATOR_EVENTS` sets the backlog (scripts/bench-correlator runs it large,
/// in release); the default keeps the test suite fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_drains_through_kafka_with_every_revoked_use_alerted() {
    let n: usize = std::env::var("VIGIL_BENCH_CORRELATOR_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let topics = Topics::create(3).await;
    let feeder = Feeder::new(&topics.verified).await;
    let verdicts: Vec<_> = (0..n)
        .map(|i| {
            let key = format!("k{}", i % 5_000);
            let (state, reason) = match i % 100 {
                0..90 => (SignatureState::Valid, None),
                90..95 => (SignatureState::Bad, Some("signature does not verify")),
                95..98 => (SignatureState::Untrusted, Some("unknown key")),
                _ => (SignatureState::Revoked, Some("key revoked: leak")),
            };
            let e = VerificationEvent::new(
                EventClass::Authentication,
                "logon",
                Status::Success,
                Producer::rust("api"),
            )
            .with_subject(Subject::principal(format!("user{}", i % 1_000)).with_key_id(key.clone()))
            .with_trace(trace(i / 3));
            feeder.verdict(e, state, reason, &key)
        })
        .collect();
    let produce = std::time::Instant::now();
    feeder.send_many(&verdicts).await;
    let produced = produce.elapsed();
    let correlator = start_correlator(topics.config());
    correlator.ready().await;
    let t = std::time::Instant::now();
    eventually("backlog drained", Duration::from_secs(600), || {
        events(&correlator) >= n as u64
    })
    .await;
    let took = t.elapsed();
    let raised = count(&correlator, "vigil_correlator_alerts_total", &[]);
    eprintln!(
        "correlator end-to-end (Kafka in and out, 3 partitions, built-in pack): {n} events in {took:.2?} = {:.0} events/s, {raised} alerts (produce {:.0} events/s)",
        n as f64 / took.as_secs_f64(),
        n as f64 / produced.as_secs_f64()
    );
    // Every revoked use is its own detection alert; bursts add a few correlation alerts.
    assert!(raised >= (n / 50) as u64, "{raised} alerts for {n} events");
    correlator.stop().await.unwrap();
}
