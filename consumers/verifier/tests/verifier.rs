//! The verifier against the real stack: verdicts, poison records, and the key registry.
//! Every test uses fresh topics and groups.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use vigil_consumer::key_registry::{KeyRegistry, KeyRegistryConfig};
use vigil_schemas::model::now_micros;
use vigil_schemas::wire::frame;
use vigil_schemas::{EventSigner, KeyState, KeyStatus, SignatureState, VerifiedEvent};
use vigil_topology::KafkaClientConfig;

/// Record headers as the poison cases carry them: (name, value).
type Headers = Vec<(String, Vec<u8>)>;

fn by_event_id(reads: &[Read]) -> HashMap<String, VerifiedEvent> {
    reads
        .iter()
        .map(|r| {
            let v = decode_verified(r);
            (v.event.event_id.to_string(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_case_gets_its_verdict_on_the_verified_topic() {
    let topics = Topics::create(3).await;
    let schema = topics.raw_schema().await;
    let keys = &topics.keys;
    let good = keys.register("k-good", schema).await;
    let old = signer("k-old", schema);
    let revoked = signer("k-revoked", schema);
    let stranger = signer("k-stranger", schema);
    let grace_until = now_micros() + 4_000_000;
    let mut rotated = active("k-old", old.signer());
    rotated.state = KeyState::Rotated;
    rotated.grace_until = Some(grace_until);
    keys.write(&rotated).await;
    keys.revoke(
        "k-revoked",
        revoked.signer(),
        now_micros() - 1_000_000,
        Some("lost laptop"),
        false,
    )
    .await;

    let mut config = topics.config();
    config.verify_batch_max = 16;
    let running = start_verifier(config);
    running.ready().await;
    let p = producer();

    let valid = good.sign(&event("k-good")).unwrap();
    let in_grace = old.sign(&event("k-old")).unwrap();
    let revoked_ev = revoked.sign(&event("k-revoked")).unwrap();
    let unknown = stranger.sign(&event("k-stranger")).unwrap();
    let mut skewed_event = event("k-good");
    skewed_event.occurred_at -= 10 * 60 * 1_000_000;
    let skewed = good.sign(&skewed_event).unwrap();
    let mut forged = good.sign(&event("k-good")).unwrap();
    for (k, v) in &mut forged.headers {
        if k == "vigil-sig" {
            v[0] ^= 1;
        }
    }
    let original = good.sign(&event("k-good")).unwrap();
    for r in [
        &valid,
        &in_grace,
        &revoked_ev,
        &unknown,
        &skewed,
        &forged,
        &original,
        &original,
    ] {
        send_signed(&p, &topics.raw, r).await;
    }
    let reader = Reader::new(&topics.verified);
    let first = reader.read(8, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 8, "every event gets a verdict");

    // The rotated key after its grace ended.
    let wait = Duration::from_micros((grace_until - now_micros()).max(0) as u64 + 200_000);
    tokio::time::sleep(wait).await;
    let expired = old.sign(&event("k-old")).unwrap();
    send_signed(&p, &topics.raw, &expired).await;
    let second = reader.read(1, Duration::from_secs(30)).await;
    let all: Vec<Read> = first.into_iter().chain(second).collect();
    let id = |r: &vigil_schemas::SignedRecord| decode_verified_value(&r.value).event_id.to_string();
    let verdicts = by_event_id(&all[..all.len()]);
    let state = |r| verdicts[&id(r)].state;
    let reason = |r| verdicts[&id(r)].reason.clone().unwrap_or_default();
    assert_eq!(state(&valid), SignatureState::Valid);
    assert_eq!(
        state(&in_grace),
        SignatureState::Valid,
        "inside the grace period"
    );
    assert_eq!(state(&revoked_ev), SignatureState::Revoked);
    assert!(reason(&revoked_ev).contains("lost laptop"));
    assert_eq!(state(&unknown), SignatureState::Untrusted);
    assert_eq!(state(&skewed), SignatureState::Bad);
    assert!(
        reason(&skewed).starts_with("clock skew"),
        "{}",
        reason(&skewed)
    );
    assert_eq!(state(&forged), SignatureState::Bad);
    assert_eq!(state(&expired), SignatureState::Untrusted);
    assert!(
        reason(&expired).contains("grace ended"),
        "{}",
        reason(&expired)
    );
    // The replayed record: same event id twice, one Valid and one Bad "nonce replayed".
    let replays: Vec<VerifiedEvent> = all
        .iter()
        .map(decode_verified)
        .filter(|v| v.event.event_id.to_string() == id(&original))
        .collect();
    let mut states: Vec<_> = replays
        .iter()
        .map(|v| (v.state, v.reason.clone()))
        .collect();
    states.sort_by_key(|s| s.0.as_str());
    assert_eq!(
        states,
        vec![
            (SignatureState::Bad, Some("nonce replayed".into())),
            (SignatureState::Valid, None)
        ]
    );
    // Verdicts keep the signed bytes, the key and the trace headers.
    let v = &verdicts[&id(&valid)];
    assert_eq!(v.signed_value, valid.value);
    assert_eq!(v.key_id.as_deref(), Some("k-good"));
    let read = all
        .iter()
        .find(|r| decode_verified(r).event.event_id.to_string() == id(&valid))
        .unwrap();
    assert_eq!(read.key.as_deref(), Some(&b"k-good"[..]));
    assert!(read.headers.contains_key("ce_id"));
    assert_eq!(
        read.headers
            .get(vigil_verifier::STATE_HEADER)
            .map(Vec::as_slice),
        Some(&b"valid"[..])
    );
    let metrics = running.telemetry().render();
    assert!(
        metrics.contains("vigil_verifier_events_total{state=\"bad\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_key_registry_keys 3"), "{metrics}");
    running.stop().await.unwrap();
}

fn decode_verified_value(value: &[u8]) -> vigil_schemas::VerificationEvent {
    let (_, body) = vigil_schemas::wire::split_frame(value).unwrap();
    vigil_schemas::Codec::<vigil_schemas::VerificationEvent>::new()
        .unwrap()
        .decode(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dlq_with_headers_and_the_partition_moves_on() {
    let topics = Topics::create(1).await;
    let schema = topics.raw_schema().await;
    let good = topics.keys.register("k-good", schema).await;
    let running = start_verifier(topics.config());
    running.ready().await;
    let p = producer();

    let sig_headers = |value: &[u8]| -> Vec<(String, Vec<u8>)> {
        vec![
            (
                "vigil-sig".into(),
                good.signer().sign(value).to_bytes().to_vec(),
            ),
            ("vigil-key-id".into(), b"k-good".to_vec()),
            (
                "traceparent".into(),
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
            ),
        ]
    };
    let random: Vec<u8> = (0..300).map(|_| rand::random::<u8>()).collect();
    let truncated = vec![0u8, 0, 0];
    let huge = vec![0u8; 10 * 1024 * 1024];
    let unknown_schema = frame(vigil_schemas::SchemaId(987_654_321), b"\x02\x04abc");
    let valid_event = good.sign(&event("k-good")).unwrap();
    let poison: Vec<(&str, Vec<u8>, Headers)> = vec![
        ("random", random.clone(), sig_headers(&random)),
        ("truncated", truncated.clone(), sig_headers(&truncated)),
        ("huge", huge.clone(), sig_headers(&huge)),
        (
            "unknown_schema",
            unknown_schema.clone(),
            sig_headers(&unknown_schema),
        ),
        (
            "missing_sig",
            valid_event.value.clone(),
            vec![("vigil-key-id".into(), b"k-good".to_vec())],
        ),
    ];
    for (name, value, headers) in &poison {
        let h: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        send(&p, &topics.raw, name.as_bytes(), value, &h).await;
    }
    let after = good.sign(&event("k-good")).unwrap();
    send_signed(&p, &topics.raw, &after).await;

    let verified = Reader::new(&topics.verified)
        .read(1, Duration::from_secs(60))
        .await;
    assert_eq!(
        verified.len(),
        1,
        "the valid event after the poison arrives"
    );
    assert_eq!(decode_verified(&verified[0]).state, SignatureState::Valid);
    let dlq = Reader::new(&topics.dlq)
        .read(poison.len(), Duration::from_secs(60))
        .await;
    assert_eq!(dlq.len(), poison.len());
    for ((name, value, headers), r) in poison.iter().zip(&dlq) {
        assert_eq!(r.key.as_deref(), Some(name.as_bytes()), "in order");
        assert_eq!(
            r.value.as_deref(),
            Some(value.as_slice()),
            "{name}: bytes kept"
        );
        assert_eq!(
            r.headers.get("vigil-error-class").map(Vec::as_slice),
            Some(&b"bad_data"[..]),
            "{name}"
        );
        assert_eq!(
            r.headers.get("vigil-origin-topic").map(Vec::as_slice),
            Some(topics.raw.as_bytes())
        );
        assert!(r.headers.contains_key("vigil-origin-offset"), "{name}");
        assert!(r.headers.contains_key("vigil-error"), "{name}");
        for (k, v) in headers {
            assert_eq!(
                r.headers.get(k),
                Some(v),
                "{name}: original header {k} kept"
            );
        }
    }
    let error = |i: usize| String::from_utf8_lossy(&dlq[i].headers["vigil-error"]).into_owned();
    assert!(error(2).contains("oversized"), "{}", error(2));
    assert!(error(3).contains("unknown_schema_id"), "{}", error(3));
    assert!(error(4).contains("missing_signature"), "{}", error(4));
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_registry_loads_ten_thousand_keys_before_ready_and_follows_live() {
    let topics = Topics::create(1).await;
    let writer = topics.keys.writer();
    let n = 10_000;
    let signers: Vec<EventSigner> = (0..64).map(|_| EventSigner::generate()).collect();
    let statuses: Vec<_> = (0..n)
        .map(|i| active(&format!("key-{i:05}"), &signers[i % signers.len()]))
        .collect();
    for chunk in statuses.chunks(1_000) {
        futures::future::try_join_all(chunk.iter().map(|s| writer.write(s)))
            .await
            .unwrap();
    }
    let rss_before = rss_bytes();
    let started = Instant::now();
    let (registry, task) = KeyRegistry::start(
        &KeyRegistryConfig {
            topic: topics.keys.topic().to_owned(),
            schema_registry_url: vigil_test_support::schema_registry_url(),
            anchors: topics.keys.anchors(),
            accept_unsigned: false,
        },
        &KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()),
        None,
    )
    .await
    .unwrap();
    registry.wait_loaded(Duration::from_secs(60)).await.unwrap();
    let load = started.elapsed();
    assert!(registry.is_loaded());
    assert_eq!(registry.len(), n, "every key present once loaded");
    let rss_after = rss_bytes();

    let lookups = 1_000_000;
    let t = Instant::now();
    let mut found = 0usize;
    for i in 0..lookups {
        let id = format!("key-{:05}", (i * 7919) % n);
        found += usize::from(registry.get(&id).is_some());
    }
    let with_format = t.elapsed();
    let ids: Vec<String> = (0..n).map(|i| format!("key-{i:05}")).collect();
    let t = Instant::now();
    for i in 0..lookups {
        found += usize::from(registry.get(&ids[(i * 7919) % n]).is_some());
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / lookups as f64;
    assert_eq!(found, 2 * lookups);
    eprintln!(
        "key registry: {n} keys loaded in {load:?}; lookup {lookup_ns:.0} ns (with id formatting {:.0} ns); rss +{} bytes/key",
        with_format.as_nanos() as f64 / lookups as f64,
        rss_after.saturating_sub(rss_before) / n as u64
    );
    assert!(
        lookup_ns < 5_000.0,
        "lookup should be far below a signature check: {lookup_ns} ns"
    );

    let mut revoked = statuses[42].clone();
    revoked.state = KeyState::Revoked;
    revoked.revoked_at = Some(now_micros());
    revoked.emergency = true;
    revoked.version = 2;
    let t = Instant::now();
    writer.write(&revoked).await.unwrap();
    eventually("live revocation applied", Duration::from_secs(1), || {
        registry.get("key-00042").map(|v| v.status.state) == Some(KeyState::Revoked)
    })
    .await;
    eprintln!(
        "key registry: live update seen {:?} after the write started",
        t.elapsed()
    );
    // Keys are revoked, never deleted: a tombstone is refused and the key stays.
    let producer = vigil_test_support::producer();
    producer
        .send(
            rdkafka::producer::FutureRecord::<str, [u8]>::to(topics.keys.topic()).key("key-00043"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let applied = registry.applied();
    writer
        .write(&KeyStatus {
            version: 3,
            ..revoked
        })
        .await
        .unwrap();
    eventually(
        "the next record after the tombstone applied",
        Duration::from_secs(5),
        || registry.applied() > applied,
    )
    .await;
    assert!(
        registry.get("key-00043").is_some(),
        "a tombstone does not delete a key"
    );
    task.abort();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The attacks of issue #13, written straight to the keys topic by a plain Kafka client while a
/// verifier runs: each refused record leaves the key as it was, and is counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_key_records_written_by_any_kafka_client_are_refused_and_counted() {
    let topics = Topics::create(1).await;
    let schema = topics.raw_schema().await;
    let keys = &topics.keys;
    let payments = keys.register("payments-api", schema).await;
    let stolen = signer("k-stolen", schema);
    keys.activate("k-stolen", stolen.signer()).await;
    let running = start_verifier(topics.config());
    running.ready().await;

    let kafka = vigil_test_support::producer();
    let status_schema =
        vigil_test_support::register_schema::<vigil_schemas::KeyStatus>(keys.topic()).await;
    let codec = vigil_schemas::Codec::<vigil_schemas::KeyStatus>::new().unwrap();
    let framed = |s: &vigil_schemas::KeyStatus| codec.encode_framed(status_schema, s).unwrap();
    let send_record = |key: &'static str, value: Vec<u8>, headers: Vec<(&'static str, Vec<u8>)>| {
        let kafka = kafka.clone();
        let topic = keys.topic().to_owned();
        async move {
            let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            send(&kafka, &topic, key.as_bytes(), &value, &h).await;
        }
    };

    // 1. An unsigned record for a new key, copied from a real one with another key put in.
    let attacker = signer("k-attacker", schema);
    let unsigned_new = KeyStatus {
        version: 99,
        ..active("k-attacker", attacker.signer())
    };
    send_record("k-attacker", framed(&unsigned_new), vec![]).await;
    // 2. The same for an existing key: the attacker's public key under `payments-api`.
    let impostor = signer("payments-api", schema);
    let replaced = KeyStatus {
        version: 99,
        ..active("payments-api", impostor.signer())
    };
    send_record("payments-api", framed(&replaced), vec![]).await;
    // 3. A record signed by a producer key (not an administrator).
    let by_producer = framed(&KeyStatus {
        version: 100,
        ..active("payments-api", impostor.signer())
    });
    let headers =
        vigil_schemas::admin::sign_record(payments.signer(), b"payments-api", &by_producer);
    send_record("payments-api", by_producer, headers.to_vec()).await;
    // 4. After a revocation, the older signed `active` record replayed.
    let (old_active, old_headers) = {
        let s = KeyStatus {
            version: 1,
            ..active("k-stolen", stolen.signer())
        };
        keys.writer().sign(&s).unwrap()
    };
    keys.revoke(
        "k-stolen",
        stolen.signer(),
        now_micros() - 1_000_000,
        Some("stolen"),
        true,
    )
    .await;
    // payments-api, k-stolen, then its revocation.
    eventually("revocation applied", Duration::from_secs(5), || {
        signed_updates(&running) == 3
    })
    .await;
    send_record("k-stolen", old_active, old_headers.to_vec()).await;

    let metric = |reason: &str| {
        running
            .telemetry()
            .render()
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "vigil_key_registry_records_refused_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually(
        "every forged record refused",
        Duration::from_secs(10),
        || metric("unsigned") == 2 && metric("unknown_admin") == 1 && metric("stale_version") == 1,
    )
    .await;

    // Events signed by the attacker's keys: untrusted (new id) and bad (the real key stays).
    let p = producer();
    // The genuine event with forged CloudEvents headers (the signature covers the value only).
    let mut genuine = payments.sign(&event("payments-api")).unwrap();
    let real_type = genuine.header("ce_type").unwrap().to_vec();
    for (k, v) in &mut genuine.headers {
        match k.as_str() {
            "ce_type" => *v = b"io.vigil.authentication.login_success".to_vec(),
            "ce_source" => *v = b"/vigil/rust/payments-core".to_vec(),
            _ => {}
        }
    }
    // The administrator signs key operation events, and nothing else.
    let admin = keys.writer().admin().clone();
    let admin = vigil_schemas::RecordSigner::new(
        admin
            .clone()
            .with_key_id(vigil_schemas::admin::admin_id(&admin)),
        schema,
    )
    .unwrap();
    let key_op = vigil_schemas::VerificationEvent::new(
        vigil_schemas::EventClass::KeyLifecycle,
        "key_revoked",
        vigil_schemas::Status::Success,
        vigil_schemas::Producer::rust("vigil-keys"),
    );
    let sent = [
        attacker.sign(&event("k-attacker")).unwrap(),
        impostor.sign(&event("payments-api")).unwrap(),
        stolen.sign(&event("k-stolen")).unwrap(),
        genuine,
        admin.sign(&key_op).unwrap(),
        admin.sign(&event("payments-api")).unwrap(),
    ];
    for r in &sent {
        send_signed(&p, &topics.raw, r).await;
    }
    // Every verdict, and the verifier's report of each refused record.
    let reads = Reader::new(&topics.verified)
        .read(sent.len() + 4, Duration::from_secs(30))
        .await;
    let verdicts = by_event_id(&reads);
    let mut refusals: Vec<String> = verdicts
        .values()
        .filter(|v| v.event.activity_name == vigil_verifier::KEY_RECORD_REFUSED)
        .map(|v| {
            assert_eq!(v.event.class_uid, vigil_schemas::EventClass::KeyLifecycle);
            assert_eq!(v.state, SignatureState::Untrusted);
            assert_eq!(v.origin_topic, keys.topic());
            format!(
                "{}:{}",
                v.event.subject.key_id.as_deref().unwrap_or_default(),
                v.event.attributes["reason"]
            )
        })
        .collect();
    refusals.sort();
    assert_eq!(
        refusals,
        [
            "k-attacker:unsigned",
            "k-stolen:stale_version",
            "payments-api:unknown_admin",
            "payments-api:unsigned"
        ]
    );
    let state = |r: &vigil_schemas::SignedRecord| {
        verdicts[&decode_verified_value(&r.value).event_id.to_string()].state
    };
    assert_eq!(
        state(&sent[0]),
        SignatureState::Untrusted,
        "unsigned new key"
    );
    assert_eq!(
        state(&sent[1]),
        SignatureState::Bad,
        "payments-api kept its real key"
    );
    assert_eq!(
        state(&sent[2]),
        SignatureState::Revoked,
        "the replayed active record"
    );
    assert_eq!(
        state(&sent[3]),
        SignatureState::Valid,
        "the genuine key still works"
    );
    assert_eq!(
        state(&sent[4]),
        SignatureState::Valid,
        "a key operation by an administrator"
    );
    assert_eq!(
        state(&sent[5]),
        SignatureState::Untrusted,
        "an administrator key signing anything else"
    );
    let emergency = &verdicts[&decode_verified_value(&sent[2].value).event_id.to_string()];
    assert!(
        emergency.key_emergency,
        "the emergency flag is a field of the verdict"
    );
    assert!(!verdicts[&decode_verified_value(&sent[3].value).event_id.to_string()].key_emergency);
    let id = decode_verified_value(&sent[3].value).event_id.to_string();
    let read = reads
        .iter()
        .find(|r| decode_verified(r).event.event_id.to_string() == id)
        .unwrap();
    assert_eq!(
        read.headers.get("ce_type"),
        Some(&real_type),
        "CloudEvents headers come from the verified body"
    );
    assert_eq!(
        read.headers.get("ce_source").map(Vec::as_slice),
        Some(&b"/vigil/rust/verifier-test"[..])
    );
    running.stop().await.unwrap();
}

/// Signed key statuses the running verifier's registry applied.
fn signed_updates(running: &Running) -> u64 {
    running
        .telemetry()
        .render()
        .lines()
        .find(|l| l.starts_with("vigil_key_registry_updates_total{kind=\"signed\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}
