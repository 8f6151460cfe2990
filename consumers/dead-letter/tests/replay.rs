#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! Dead-letter tooling against the real broker and registry: each test seeds its own DLQ with
//! records shaped exactly like the consumer runtime writes them (two origin topics, two error
//! classes, failure times an hour apart, plus one record with garbled headers).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_consumer::{DeadLetterHeaders, ErrorClass, RecordHeader};
use vigil_dead_letter::replay::{Approval, ReplayOptions};
use vigil_dead_letter::scan::{Selection, collect, scan_topic};
use vigil_dead_letter::{DeadLetter, DlqConfig, DlqError, Filter, ReplayPlan, Stats};
use vigil_schemas::{Codec, EventSigner, RecordSigner, SchemaRegistry, VerificationEvent};
use vigil_topology::KafkaClientConfig;

const HOUR_MS: i64 = 3_600_000;

struct Seeded {
    cfg: DlqConfig,
    origins: [String; 2],
    base_ms: i64,
    /// key -> (value, original headers) of every well-formed seeded record.
    originals: BTreeMap<Vec<u8>, (Vec<u8>, Vec<RecordHeader>, String)>,
}

/// Record `i` (0..8): origin `i % 2`, class bad_data for i in {0,1,4,5}, failed at base + i h.
async fn seed() -> Seeded {
    let dlq = vigil_test_support::unique_name("dlq");
    let origins = [
        vigil_test_support::unique_name("origin-a"),
        vigil_test_support::unique_name("origin-b"),
    ];
    let events = vigil_test_support::unique_name("events");
    vigil_test_support::create_topic(&dlq, 2).await;
    vigil_test_support::create_topic(&origins[0], 3).await;
    vigil_test_support::create_topic(&origins[1], 3).await;
    vigil_test_support::create_topic(&events, 1).await;
    let mut cfg = DlqConfig::new(KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()));
    cfg.dlq_topic = dlq.clone();
    cfg.ledger_topic = vigil_test_support::unique_name("ledger");
    cfg.events_topic = events;
    cfg.timeout = Duration::from_secs(30);

    let producer: FutureProducer = vigil_test_support::client_config().create().unwrap();
    let base_ms = vigil_schemas::model::now_micros() / 1000 - 10 * HOUR_MS;
    let mut originals = BTreeMap::new();
    for i in 0..8i64 {
        let origin = origins[(i % 2) as usize].clone();
        let class = if i % 4 < 2 {
            ErrorClass::BadData
        } else {
            ErrorClass::Transient
        };
        let failed = base_ms + i * HOUR_MS;
        let key = format!("key-{i}").into_bytes();
        let value = vec![0u8, 0, 0, 0, 7, 0xff, i as u8, 0x80];
        let headers: Vec<RecordHeader> = vec![
            ("vigil-sig".into(), Some(vec![i as u8; 64])),
            (
                "traceparent".into(),
                Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec()),
            ),
            ("null-header".into(), None),
            ("empty".into(), Some(vec![])),
        ];
        let block = DeadLetterHeaders {
            error_class: class,
            error: format!("failure {i}"),
            origin_topic: origin.clone(),
            origin_partition: (i % 3) as i32,
            origin_offset: 100 + i,
            origin_timestamp_ms: Some(failed - 5000),
            consumer_group: "vigil-verifier".into(),
            attempts: 1,
            first_failed_at_ms: failed - 1000,
            last_failed_at_ms: failed,
            retry_not_before_ms: None,
        }
        .to_headers();
        let mut all = OwnedHeaders::new();
        for (k, v) in &headers {
            all = all.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        for (k, v) in &block {
            all = all.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        // The runtime writes the DLQ record after the failure: its timestamp is later.
        producer
            .send(
                FutureRecord::to(&dlq)
                    .key(&key)
                    .payload(&value)
                    .headers(all)
                    .partition((i % 2) as i32)
                    .timestamp(failed + 1000),
                Duration::from_secs(10),
            )
            .await
            .expect("seeding the dlq");
        originals.insert(key, (value, headers, origin));
    }
    // A hostile record: garbled runtime headers.
    producer
        .send(
            FutureRecord::to(&dlq)
                .key("garbled".as_bytes())
                .payload(&[1u8, 2, 3][..])
                .headers(OwnedHeaders::new().insert(Header {
                    key: "vigil-error-class",
                    value: Some(&[0xffu8, 0xfe][..]),
                }))
                .partition(0)
                .timestamp(base_ms + 3 * HOUR_MS),
            Duration::from_secs(10),
        )
        .await
        .expect("seeding the dlq");
    vigil_dead_letter::ledger::ensure_topic(&cfg).await.unwrap();
    Seeded {
        cfg,
        origins,
        base_ms,
        originals,
    }
}

fn recorder(cfg: &DlqConfig, signer: EventSigner) -> RecordSigner {
    let id = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(vigil_dead_letter::event::schema_id(
            &vigil_test_support::schema_registry_url(),
            &cfg.events_topic,
        ))
    })
    .unwrap();
    RecordSigner::new(signer, id).unwrap()
}

fn all_of(cfg: &DlqConfig, topic: &str) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    scan_topic(cfg, topic, &Selection::Filter(Filter::default()), |r| {
        out.push(r);
        Ok(())
    })
    .unwrap();
    out
}

fn replay_with(s: &Seeded, filter: Filter, dry_run: bool) -> vigil_dead_letter::ReplaySummary {
    let records = collect(&s.cfg, &Selection::Filter(filter.clone())).unwrap();
    let signer = EventSigner::from_seed(&[7; 32]);
    let mut opts = ReplayOptions::new(Approval {
        mode: "none".into(),
        approver_key_id: signer.key_id().to_string(),
        filter,
        ..Approval::default()
    });
    opts.dry_run = dry_run;
    opts.rate_per_sec = 1000;
    let rec = recorder(&s.cfg, signer);
    vigil_dead_letter::replay::replay(&s.cfg, records, &opts, Some(&rec)).unwrap()
}

/// Asserts the origin topics hold exactly the seeded records numbered `expected`, each once,
/// byte-identical plus `vigil-replayed-from`.
fn assert_replayed(s: &Seeded, expected: &[i64]) {
    let mut got = Vec::new();
    for origin in &s.origins {
        for r in all_of(&s.cfg, origin) {
            let (value, headers, want_origin) = s
                .originals
                .get(r.key.as_ref().unwrap())
                .expect("a replayed key was seeded");
            assert_eq!(origin, want_origin);
            assert_eq!(r.value.as_ref(), Some(value));
            let (last, originals) = r.headers.split_last().unwrap();
            assert_eq!(originals, headers.as_slice());
            assert_eq!(last.0, vigil_dead_letter::REPLAYED_FROM);
            let from = String::from_utf8(last.1.clone().unwrap()).unwrap();
            assert!(from.starts_with(&format!("{}/", s.cfg.dlq_topic)), "{from}");
            got.push(String::from_utf8(r.key.unwrap()).unwrap());
        }
    }
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|i| format!("key-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

async fn events(cfg: &DlqConfig) -> Vec<VerificationEvent> {
    let registry = SchemaRegistry::new(&vigil_test_support::schema_registry_url()).unwrap();
    let codec = Codec::<VerificationEvent>::new().unwrap();
    let mut out = Vec::new();
    for r in all_of(cfg, &cfg.events_topic) {
        let (id, body) = vigil_schemas::wire::split_frame(r.value.as_ref().unwrap()).unwrap();
        let writer = registry.schema_by_id(id).await.unwrap();
        out.push(codec.decode_with(&writer, body).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_by_class_origin_and_hour_with_unknowns() {
    let s = seed().await;
    let mut stats = Stats::default();
    vigil_dead_letter::scan(&s.cfg, &Selection::Filter(Filter::default()), |r| {
        stats.add(&r);
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.total, 9);
    assert_eq!(stats.unreadable_headers, 1);
    assert_eq!(stats.by_error_class.get("bad_data"), Some(&4));
    assert_eq!(stats.by_error_class.get("transient"), Some(&4));
    assert_eq!(stats.by_error_class.get("unknown"), Some(&1));
    assert_eq!(stats.by_origin_topic.get(&s.origins[0]), Some(&4));
    assert_eq!(stats.by_origin_topic.get(&s.origins[1]), Some(&4));
    // Eight failures an hour apart, plus the garbled record counted at its own timestamp.
    assert_eq!(stats.by_hour.values().sum::<u64>(), 9);
    assert!(stats.by_hour.len() >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_error_class_is_exact_and_recorded() {
    let s = seed().await;
    let summary = replay_with(
        &s,
        Filter {
            error_class: Some("bad_data".into()),
            ..Filter::default()
        },
        false,
    );
    assert_eq!(summary.to_replay, 4);
    assert_replayed(&s, &[0, 1, 4, 5]);
    let evs = events(&s.cfg).await;
    assert_eq!(evs.len(), 1);
    let e = &evs[0];
    assert_eq!(e.class_uid, vigil_schemas::EventClass::Configuration);
    assert_eq!(e.activity_name, "dlq_replay");
    assert_eq!(e.attributes.get("count").map(String::as_str), Some("4"));
    assert_eq!(
        e.attributes.get("filter_error_class").map(String::as_str),
        Some("bad_data")
    );
    assert_eq!(Some(e.event_id.to_string()), summary.event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_origin_topic() {
    let s = seed().await;
    let summary = replay_with(
        &s,
        Filter {
            origin_topic: Some(s.origins[1].clone()),
            ..Filter::default()
        },
        false,
    );
    assert_eq!(summary.to_replay, 4);
    assert_replayed(&s, &[1, 3, 5, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_time_range_seeks_and_bounds() {
    let s = seed().await;
    let filter = Filter {
        from_ms: Some(s.base_ms + 2 * HOUR_MS),
        to_ms: Some(s.base_ms + 6 * HOUR_MS),
        ..Filter::default()
    };
    let summary = replay_with(&s, filter, false);
    assert_eq!(summary.to_replay, 4);
    assert_replayed(&s, &[2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let s = seed().await;
    let summary = replay_with(&s, Filter::default(), true);
    assert_eq!(summary.to_replay, 8);
    assert_eq!(summary.unreplayable, 1);
    assert_replayed(&s, &[]);
    assert!(all_of(&s.cfg, &s.cfg.ledger_topic).is_empty());
    assert!(events(&s.cfg).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_twice_creates_no_duplicates() {
    let s = seed().await;
    let first = replay_with(&s, Filter::default(), false);
    assert_eq!((first.to_replay, first.unreplayable), (8, 1));
    let second = replay_with(&s, Filter::default(), false);
    assert_eq!((second.to_replay, second.already_replayed), (0, 8));
    assert_replayed(&s, &[0, 1, 2, 3, 4, 5, 6, 7]);
    // Both replays are recorded, the second with a count of zero.
    let counts: Vec<String> = events(&s.cfg)
        .await
        .iter()
        .map(|e| e.attributes["count"].clone())
        .collect();
    assert_eq!(counts, ["8", "0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_then_approve_by_another_key_replays_exactly_the_plan() {
    let s = seed().await;
    let filter = Filter {
        error_class: Some("transient".into()),
        ..Filter::default()
    };
    let planner = EventSigner::from_seed(&[1; 32]);
    let approver = EventSigner::from_seed(&[2; 32]);
    let records = collect(&s.cfg, &Selection::Filter(filter.clone())).unwrap();
    let plan = ReplayPlan::create(&s.cfg.dlq_topic, &filter, &records, &planner, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    plan.write(&path).unwrap();

    let read = ReplayPlan::read(&path).unwrap();
    read.verify().unwrap();
    assert!(matches!(
        read.check_approver(&planner),
        Err(DlqError::Refused(_))
    ));
    read.check_approver(&approver).unwrap();

    // A tampered copy (an offset added) no longer verifies.
    let mut tampered = read.clone();
    tampered.plan.entries[0].offset += 1000;
    assert!(matches!(tampered.verify(), Err(DlqError::Refused(_))));

    let found = collect(&s.cfg, &Selection::Exact(read.coordinates())).unwrap();
    let planned = read.match_records(found).unwrap();
    let opts = ReplayOptions::new(Approval {
        mode: "plan".into(),
        planner_key_id: Some(planner.key_id().to_string()),
        approver_key_id: approver.key_id().to_string(),
        plan_id: Some(read.plan.plan_id.clone()),
        plan_sha256: Some(read.sha256().unwrap()),
        filter,
    });
    let rec = recorder(&s.cfg, approver.clone());
    let summary = vigil_dead_letter::replay::replay(&s.cfg, planned, &opts, Some(&rec)).unwrap();
    assert_eq!(summary.to_replay, 4);
    assert_replayed(&s, &[2, 3, 6, 7]);
    let evs = events(&s.cfg).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].attributes.get("planner_key_id"),
        Some(&planner.key_id().to_string())
    );
    assert_eq!(
        evs[0].subject.key_id.as_deref(),
        Some(approver.key_id().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_decodes_a_registered_frame_and_hexdumps_the_rest() {
    use vigil_schemas::model::{EventClass, Producer, Status};
    let s = seed().await;
    let registry = SchemaRegistry::new(&vigil_test_support::schema_registry_url()).unwrap();
    let id = registry
        .register_value::<VerificationEvent>()
        .await
        .unwrap();
    let event = VerificationEvent::new(
        EventClass::Authentication,
        "logon",
        Status::Success,
        Producer::rust("dlq-test"),
    );
    let value = Codec::<VerificationEvent>::new()
        .unwrap()
        .encode_framed(id, &event)
        .unwrap();
    let producer: FutureProducer = vigil_test_support::client_config().create().unwrap();
    // Partition 1 holds seeded records 1, 3, 5, 7 at offsets 0..=3.
    producer
        .send(
            FutureRecord::to(&s.cfg.dlq_topic)
                .key("framed".as_bytes())
                .payload(&value)
                .partition(1),
            Duration::from_secs(10),
        )
        .await
        .expect("producing a framed event");
    let at: vigil_dead_letter::Coordinate = "1:4".parse().unwrap();
    let found = collect(&s.cfg, &Selection::Exact([at].into_iter().collect())).unwrap();
    assert_eq!(found.len(), 1);
    let shown = vigil_dead_letter::inspect::inspect(&found[0], Some(&registry)).await;
    let decoded = shown.decoded.expect("decoded through the registry");
    assert_eq!(decoded["activity_name"], "logon");
    assert_eq!(decoded["event_id"], event.event_id.to_string());
    assert!(shown.hexdump.is_none());
    // The record has no dead-letter headers: shown, not fatal.
    assert!(shown.header_problem.is_some());

    let at: vigil_dead_letter::Coordinate = "0:0".parse().unwrap();
    let found = collect(&s.cfg, &Selection::Exact([at].into_iter().collect())).unwrap();
    let shown = vigil_dead_letter::inspect::inspect(&found[0], Some(&registry)).await;
    assert!(shown.decoded.is_none());
    assert!(
        shown
            .hexdump
            .unwrap()
            .starts_with("00000000  00 00 00 00 07 ff 00 80")
    );
}
