#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)] // test support: fail loudly

//! Shared helpers: fresh topics and databases, signed VerifiedEvents, an in-process sink.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_audit_sink::metrics::SinkMetrics;
use vigil_audit_sink::sink::SinkSummary;
use vigil_audit_sink::{AuditError, AuditSink, AuditSinkConfig, AuditStore, VerifyOptions};
use vigil_schemas::codec::Codec;
use vigil_schemas::model::*;
use vigil_schemas::signing::{EventSigner, PublicKey};
use vigil_schemas::wire::SchemaId;
use vigil_test_support::RunningService;
use vigil_topology::KafkaClientConfig;

/// The producers' signing key of the tests.
pub fn producer_key() -> EventSigner {
    EventSigner::from_seed(&[11; 32])
}

/// The sink's digest-signing key of the tests.
pub fn sink_key() -> EventSigner {
    EventSigner::from_seed(&[22; 32])
}

/// Returns a fresh database name.
pub fn fresh_db(prefix: &str) -> String {
    vigil_test_support::unique_name(prefix).replace('-', "_")
}

/// Returns a sink config for a fresh topic and database with small batches.
pub fn config(topic: &str, db: &str) -> AuditSinkConfig {
    AuditSinkConfig {
        topic: topic.to_owned(),
        group: vigil_test_support::unique_name("audit-sink"),
        database: db.to_owned(),
        batch_max_rows: 200,
        flush_interval_ms: 100,
        digest_every_events: 250,
        digest_interval_ms: 500,
        dlq_topic: format!("{topic}-dlq"),
        ..AuditSinkConfig::default()
    }
}

/// Builds the i-th test event: every 7th is rejected (bad signature), traces and platforms vary.
pub fn verified_event(i: u64, signer: &EventSigner) -> VerifiedEvent {
    let platform = [Platform::Rust, Platform::Python, Platform::Js][(i % 3) as usize];
    let mut event = VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        if i.is_multiple_of(7) {
            Status::Failure
        } else {
            Status::Success
        },
        Producer::new(platform, "1.0", format!("svc-{}", i % 4))
            .with_host(format!("host-{}", i % 2)),
    )
    .with_subject(
        Subject::principal(format!("user-{}", i % 5))
            .with_key_id("k-test")
            .with_client_ip(format!("10.0.0.{}", i % 3)),
    )
    .with_trace(Trace::new(
        format!("{:032x}", i / 10 + 1),
        format!("{:016x}", i + 1),
    ))
    .with_attribute("i", i.to_string());
    event.occurred_at = now_micros() - 1_000_000;
    let raw = Codec::<VerificationEvent>::new()
        .unwrap()
        .encode_framed(SchemaId(1), &event)
        .unwrap();
    let (state, signature, reason) = if i.is_multiple_of(7) {
        (
            SignatureState::Bad,
            vec![0u8; 64],
            Some("signature invalid".to_owned()),
        )
    } else {
        (
            SignatureState::Valid,
            signer.sign(&raw).to_bytes().to_vec(),
            None,
        )
    };
    VerifiedEvent {
        event,
        state,
        reason,
        verified_at: now_micros(),
        verifier: "test".into(),
        key_id: Some("k-test".into()),
        signed_value: raw,
        signature,
        origin_topic: "raw".into(),
        origin_partition: 0,
        origin_offset: i as i64,
        key_emergency: false,
    }
}

/// Produces `n` verified events (plus `garbage` undecodable records) and returns the event ids.
pub async fn produce(topic: &str, n: u64, garbage: u64) -> Vec<uuid::Uuid> {
    let producer: FutureProducer = KafkaClientConfig::from_env().producer().create().unwrap();
    let codec = Codec::<VerifiedEvent>::new().unwrap();
    let signer = producer_key();
    let mut ids = Vec::new();
    let mut futures = Vec::new();
    for i in 0..n {
        let v = verified_event(i, &signer);
        ids.push(v.event.event_id);
        let value = codec.encode_framed(SchemaId(1), &v).unwrap();
        let key = format!("k{}", i % 13);
        futures.push(
            producer
                .send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(&value))
                .unwrap(),
        );
        if futures.len() >= 1000 {
            for f in futures.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for g in 0..garbage {
        let value = format!("not avro {g}");
        futures.push(
            producer
                .send_result(FutureRecord::<[u8], [u8]>::to(topic).payload(value.as_bytes()))
                .unwrap(),
        );
    }
    for f in futures {
        f.await.unwrap().unwrap();
    }
    ids
}

/// Starts the sink with `config` in-process (its metrics and health in the handle's telemetry).
pub fn start_sink(config: AuditSinkConfig) -> RunningService<Result<SinkSummary, AuditError>> {
    let store = AuditStore::from_env(&config.database).unwrap();
    RunningService::spawn(move |telemetry, shutdown| {
        let metrics = SinkMetrics::register(&telemetry.registry).unwrap();
        let sink = AuditSink::new(
            config,
            KafkaClientConfig::from_env(),
            store,
            sink_key(),
            metrics,
            telemetry.health.clone(),
        )
        .unwrap();
        sink.run(shutdown)
    })
}

/// Runs the sink in-process until `rows` rows are stored (or 60 s), then stops it gracefully.
pub async fn run_until(config: AuditSinkConfig, rows: u64) -> SinkSummary {
    let store = AuditStore::from_env(&config.database).unwrap();
    let sink = start_sink(config);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if count(&store, "audit_events").await >= rows || std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(!sink.is_finished(), "the sink runs until stopped");
    sink.stop().await.unwrap()
}

/// Returns `SELECT count() FROM table` (0 if the table does not exist yet).
pub async fn count(store: &AuditStore, table: &str) -> u64 {
    store
        .client()
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

/// Verification options with the test keys and no digest lag allowance.
pub fn verify_options() -> VerifyOptions {
    let mut keys: BTreeMap<String, PublicKey> = BTreeMap::new();
    keys.insert("k-test".into(), *producer_key().public_key());
    VerifyOptions {
        sink_key: *sink_key().public_key(),
        producer_keys: keys,
        history: None,
        anchored: false,
        max_digest_lag_micros: 0,
        now_micros: now_micros(),
    }
}
