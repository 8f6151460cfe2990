#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! The sink against the real stack: every event stored once, chains verify clean, each kind of
//! tampering is named, the schema carries TTL and partitioning, and the SOC queries answer.

mod common;

use std::collections::HashSet;

use common::*;
use vigil_audit_sink::queries::SocQuery;
use vigil_audit_sink::verify::{FindingKind, verify_store};
use vigil_audit_sink::{AuditError, AuditStore};

async fn copy_db(store: &AuditStore, prefix: &str) -> AuditStore {
    let db = fresh_db(prefix);
    let copy = AuditStore::from_env(&db).unwrap();
    copy.migrate(7).await.unwrap();
    for t in ["audit_events", "audit_digests", "sink_offsets"] {
        copy.client()
            .query_raw(&format!(
                "INSERT INTO {db}.{t} SELECT * FROM {}.{t}",
                store.database()
            ))
            .execute()
            .await
            .unwrap();
    }
    copy
}

/// Selects the named columns of a pack query (row validation wants every column typed).
fn pick(name: &str, cols: &str) -> String {
    let q = SocQuery::named(name).unwrap_or_else(|| panic!("query {name} in the pack"));
    format!("SELECT {cols} FROM ({})", q.statement())
}

async fn mutate(store: &AuditStore, sql: &str) {
    store
        .client()
        .query_raw(sql)
        .with_setting("mutations_sync", "2")
        .execute()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_every_event_once_verifies_clean_and_names_each_tampering() {
    let topic = vigil_test_support::unique_name("audit");
    vigil_test_support::create_topic(&topic, 3).await;
    vigil_test_support::create_topic(&format!("{topic}-dlq"), 1).await;
    let db = fresh_db("audit_t");
    let ids = produce(&topic, 600, 3).await;
    let summary = run_until(config(&topic, &db), 600).await;
    assert_eq!(summary.dead_letters, 3, "{summary:?}");
    let store = AuditStore::from_env(&db).unwrap();

    let stored: Vec<String> = store
        .client()
        .query("SELECT toString(event_id) FROM audit_events")
        .fetch_all::<String>()
        .await
        .unwrap();
    let distinct: HashSet<_> = stored.iter().collect();
    assert_eq!(count(&store, "audit_events").await, ids.len() as u64);
    assert_eq!(distinct.len(), ids.len(), "no event twice");

    let clean = verify_store(&store, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean}");
    assert_eq!(
        clean.signatures_valid + clean.signatures_skipped,
        600,
        "{clean}"
    );

    // Deleted row.
    let t = copy_db(&store, "audit_del").await;
    mutate(
        &t,
        "ALTER TABLE audit_events DELETE WHERE kafka_partition = 1 AND seq = 10",
    )
    .await;
    let r = verify_store(&t, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    let f = r
        .first(FindingKind::DeletedRow)
        .unwrap_or_else(|| panic!("deleted row not found: {r}"));
    assert_eq!((f.partition, f.seq), (Some(1), Some(11)), "{r}");

    // Altered field.
    let t = copy_db(&store, "audit_alt").await;
    mutate(&t, "ALTER TABLE audit_events UPDATE principal = 'mallory' WHERE kafka_partition = 2 AND seq = 5").await;
    let r = verify_store(&t, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    let f = r
        .first(FindingKind::AlteredRow)
        .unwrap_or_else(|| panic!("altered row not found: {r}"));
    assert_eq!((f.partition, f.seq), (Some(2), Some(5)), "{r}");

    // Reordered rows (two seqs swapped).
    let t = copy_db(&store, "audit_reo").await;
    mutate(&t, "ALTER TABLE audit_events UPDATE seq = if(seq = 7, 8, 7) WHERE kafka_partition = 0 AND seq IN (7, 8)").await;
    let r = verify_store(&t, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    let f = r
        .first(FindingKind::ReorderedRow)
        .unwrap_or_else(|| panic!("reorder not found: {r}"));
    assert_eq!((f.partition, f.seq), (Some(0), Some(7)), "{r}");

    // Forged digest.
    let t = copy_db(&store, "audit_forg").await;
    mutate(&t, "ALTER TABLE audit_digests UPDATE last_offsets = arrayMap(x -> x + 1, last_offsets) WHERE digest_seq = 0").await;
    let r = verify_store(&t, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    let f = r
        .first(FindingKind::ForgedDigest)
        .unwrap_or_else(|| panic!("forged digest not found: {r}"));
    assert_eq!(f.seq, Some(0), "{r}");

    // Missing digest (the last one deleted: the tail is no longer covered).
    let t = copy_db(&store, "audit_miss").await;
    mutate(&t, "ALTER TABLE audit_digests DELETE WHERE digest_seq = (SELECT max(digest_seq) FROM audit_digests)").await;
    let r = verify_store(&t, &topic, verify_options(), None, None, None)
        .await
        .unwrap();
    assert!(
        r.first(FindingKind::MissingDigest).is_some(),
        "missing digest not found: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_carries_ttl_and_partitioning_and_migrations_are_idempotent() {
    let db = fresh_db("audit_ddl");
    let store = AuditStore::from_env(&db).unwrap();
    let first = store.migrate(3).await.unwrap();
    assert_eq!(first.applied, vec![1, 2, 3]);
    let again = store.migrate(3).await.unwrap();
    assert!(
        again.applied.is_empty() && again.already == vec![1, 2, 3],
        "{again:?}"
    );
    let ddl: String = store
        .client()
        .query("SHOW CREATE TABLE audit_events")
        .fetch_one()
        .await
        .unwrap();
    for want in [
        "PARTITION BY toYYYYMM(occurred_at)",
        "TTL toDateTime(occurred_at) + toIntervalYear(3)",
        "DateTime64(6, 'UTC')",
        "LowCardinality(String)",
        "ORDER BY (class, state, occurred_at, event_id)",
    ] {
        assert!(ddl.contains(want), "{want} missing in {ddl}");
    }
}

async fn create_query(store: &AuditStore, table: &str) -> String {
    store
        .client()
        .query("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table)
        .fetch_one()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_retention_reaches_existing_tables_and_shortening_needs_consent() {
    use vigil_audit_sink::migrations::{Shorten, ttl_years};
    let db = fresh_db("audit_ttl");
    let store = AuditStore::from_env(&db).unwrap();
    let created = store.migrate(7).await.unwrap();
    assert!(created.retention_changed.is_empty(), "{created:?}");
    for table in ["audit_events", "audit_digests"] {
        assert_eq!(
            ttl_years(&create_query(&store, table).await),
            Some(7),
            "{table}"
        );
    }

    // Raising is safe and happens on the next start without asking.
    let raised = store.migrate(10).await.unwrap();
    assert_eq!(
        raised.retention_changed,
        vec![("audit_events", 7, 10), ("audit_digests", 7, 10)]
    );
    for table in ["audit_events", "audit_digests"] {
        assert_eq!(
            ttl_years(&create_query(&store, table).await),
            Some(10),
            "{table}"
        );
    }
    assert!(
        store
            .migrate(10)
            .await
            .unwrap()
            .retention_changed
            .is_empty()
    );

    // Shortening deletes rows: refused by name, nothing changed ...
    let err = store.migrate(8).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            AuditError::Config {
                key: "retention_years",
                ..
            }
        ) && text.contains("--shorten-retention"),
        "{text}"
    );
    assert_eq!(
        ttl_years(&create_query(&store, "audit_events").await),
        Some(10)
    );
    // ... unless the operator asks for it.
    let shortened = store.migrate_with(8, Shorten::Allow).await.unwrap();
    assert_eq!(
        shortened.retention_changed,
        vec![("audit_events", 10, 8), ("audit_digests", 10, 8)]
    );
    assert_eq!(
        ttl_years(&create_query(&store, "audit_digests").await),
        Some(8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_soc_query_returns_the_expected_rows() {
    let topic = vigil_test_support::unique_name("audit-q");
    vigil_test_support::create_topic(&topic, 2).await;
    vigil_test_support::create_topic(&format!("{topic}-dlq"), 1).await;
    let db = fresh_db("audit_q");
    produce(&topic, 70, 0).await;
    run_until(config(&topic, &db), 70).await;
    let store = AuditStore::from_env(&db).unwrap();
    // Seed lifecycle facts the pack looks for, as `vigil keys` writes them (the affected key in
    // attributes, the signing administrator as key_id): a revocation of k-test two hours ago
    // (so every later use counts), an old key never rotated, and a registration approved by a
    // second administrator.
    let now = vigil_schemas::model::now_micros();
    store
        .client()
        .query_raw(&format!(
            "INSERT INTO audit_events (event_id, occurred_at, verified_at, ingested_at, class, activity, status, severity, state, key_id, platform, kafka_topic, prev_hash, chain_hash, attributes) VALUES \
             (generateUUIDv4(), fromUnixTimestamp64Micro({r}), now64(6), now64(6), 'key_lifecycle', 'key_revoked', 'success', 'high', 'valid', 'admin-a', 'cli', 'seed', '', '', {{'key_id': 'k-test', 'version': '2', 'state': 'revoked', 'emergency': 'true'}}), \
             (generateUUIDv4(), fromUnixTimestamp64Micro({old}), now64(6), now64(6), 'key_lifecycle', 'key_registered', 'success', 'low', 'valid', 'admin-b', 'cli', 'seed', '', '', {{'key_id': 'k-old', 'version': '1', 'state': 'active', 'planner_key_id': 'admin-a', 'approver_key_id': 'admin-b', 'plan_id': 'p-1'}}), \
             (generateUUIDv4(), fromUnixTimestamp64Micro({n}), now64(6), now64(6), 'authentication', 'logon', 'success', 'low', 'valid', 'k-old', 'rust', 'seed', '', '', map())",
            r = now - 3_600_000_000i64 * 2,
            old = now - 86_400_000_000i64 * 400,
            n = now - 60_000_000,
        ))
        .execute()
        .await
        .unwrap();

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct KeyFail {
        key_id: String,
        failures: u64,
    }
    let rows: Vec<KeyFail> = store
        .client()
        .query_raw(&pick("failed_verifications_by_key_24h", "key_id, failures"))
        .fetch_all()
        .await
        .unwrap();
    // Events 0, 7, ..., 63 are rejected: 10 of 70.
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].key_id.as_str(), rows[0].failures), ("k-test", 10));

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct IpFail {
        #[allow(dead_code)]
        client_ip: String,
        failures: u64,
    }
    let rows: Vec<IpFail> = store
        .client()
        .query_raw(&pick(
            "failed_verifications_by_client_ip_24h",
            "client_ip, failures",
        ))
        .fetch_all()
        .await
        .unwrap();
    let total: u64 = rows.iter().map(|r| r.failures).sum();
    assert_eq!(total, 10);
    assert_eq!(
        rows.len(),
        3,
        "rejected events 0..63 step 7 hit ips .0 .1 .2: {rows:?}"
    );

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Step {
        occurred_at: i64,
        platform: String,
        span_id: String,
    }
    let rows: Vec<Step> = store
        .client()
        .query_raw(&pick(
            "trace_timeline",
            "toUnixTimestamp64Micro(occurred_at) AS occurred_at, platform, span_id",
        ))
        .param("trace_id", format!("{:032x}", 2))
        .fetch_all()
        .await
        .unwrap();
    // Events 10..19 share trace 2, over three platforms.
    assert_eq!(rows.len(), 10);
    assert!(
        rows.windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at)
    );
    let platforms: HashSet<_> = rows.iter().map(|r| r.platform.as_str()).collect();
    assert_eq!(platforms.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.span_id.len() == 16));

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct AfterRevoke {
        key_id: String,
        uses_after_revocation: u64,
    }
    let rows: Vec<AfterRevoke> = store
        .client()
        .query_raw(&pick(
            "keys_used_after_revocation",
            "key_id, uses_after_revocation",
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].key_id.as_str(), rows[0].uses_after_revocation),
        ("k-test", 70)
    );

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Old {
        key_id: String,
        age_days: i64,
    }
    let rows: Vec<Old> = store
        .client()
        .query_raw(&pick(
            "keys_past_rotation_policy",
            "key AS key_id, toInt64(age_days) AS age_days",
        ))
        .param("max_age_days", 90u32)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].key_id, "k-old");
    assert!(rows[0].age_days >= 399, "{rows:?}");

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct KeyOp {
        activity: String,
        key_id: String,
        signed_by: String,
        planned_by: String,
        approved_by: String,
        emergency: bool,
    }
    let rows: Vec<KeyOp> = store
        .client()
        .query_raw(&pick(
            "key_operations",
            "activity, key_id, signed_by, planned_by, approved_by, emergency",
        ))
        .param("days", 500u32)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Newest first: the revocation, then the registration with its approver.
    assert_eq!(
        (
            rows[0].activity.as_str(),
            rows[0].key_id.as_str(),
            rows[0].emergency
        ),
        ("key_revoked", "k-test", true)
    );
    assert_eq!(
        (
            rows[1].key_id.as_str(),
            rows[1].signed_by.as_str(),
            rows[1].planned_by.as_str(),
            rows[1].approved_by.as_str()
        ),
        ("k-old", "admin-b", "admin-a", "admin-b")
    );

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Volume {
        platform: String,
        events: u64,
        rejected: u64,
    }
    let rows: Vec<Volume> = store
        .client()
        .query_raw(&pick(
            "event_volume_by_platform_hour",
            "platform, events, rejected",
        ))
        .param("hours", 1u32)
        .fetch_all()
        .await
        .unwrap();
    let sum = |p: &str| {
        rows.iter()
            .filter(|r| r.platform == p)
            .map(|r| r.events)
            .sum::<u64>()
    };
    // 70 events round-robin over rust/python/js, plus the seeded logon a minute ago.
    assert_eq!(
        (sum("rust"), sum("python"), sum("js")),
        (24 + 1, 23, 23),
        "{rows:?}"
    );
    assert_eq!(rows.iter().map(|r| r.rejected).sum::<u64>(), 10);

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Top {
        platform: String,
        service: String,
        host: String,
        rejected: u64,
    }
    let rows: Vec<Top> = store
        .client()
        .query_raw(&pick(
            "top_rejected_producers",
            "platform, service, host, rejected",
        ))
        .param("limit", 3u32)
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.windows(2).all(|w| w[0].rejected >= w[1].rejected),
        "{rows:?}"
    );
    assert!(
        rows[0].rejected >= 1
            && !rows[0].service.is_empty()
            && !rows[0].platform.is_empty()
            && !rows[0].host.is_empty()
    );
}

/// The sink writes rows it encoded itself (RowBinary with a names-and-types header); read back
/// through the `clickhouse` crate's validated `AuditRow` they equal the rows the crate would
/// have written, chain hashes included, and a table whose types differ refuses the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_rows_read_back_as_the_crate_rows_and_type_drift_is_refused() {
    use vigil_audit_sink::chain::ChainHead;
    use vigil_audit_sink::row::{AuditRow, RowView, encode_row_binary};

    let db = fresh_db("audit_enc");
    let store = AuditStore::from_env(&db).unwrap();
    store.migrate(7).await.unwrap();
    let signer = producer_key();
    let mut events: Vec<_> = (0..40).map(|i| verified_event(i, &signer)).collect();
    // Edge cases of the encoding: empty optionals, no attributes, multi-byte text, a string
    // longer than 127 bytes (two-byte length prefix).
    events[1].reason = None;
    events[1].event.trace = None;
    events[1].event.attributes.clear();
    events[2].event.producer.service = "zahlungsdienst-Ü-✓".into();
    events[3]
        .event
        .attributes
        .insert("long".into(), "x".repeat(300));
    let mut heads = [ChainHead::default(), ChainHead::default()];
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    let mut expected = Vec::new();
    for (i, v) in events.iter().enumerate() {
        let p = (i % 2) as i32;
        let mut view = RowView::from_verified(v, "enc-topic", p, i as i64, 1_795_000_000_000_000);
        let hash = heads[p as usize].append_view(&mut view);
        encode_row_binary(&view, &hash, &mut buf);
        if i % 10 == 9 {
            ends.push(buf.len());
        }
        let mut row = AuditRow::from_verified(v, "enc-topic", p, i as i64, 1_795_000_000_000_000);
        let mut head = if expected.iter().any(|r: &AuditRow| r.kafka_partition == p) {
            let last = expected
                .iter()
                .rev()
                .find(|r: &&AuditRow| r.kafka_partition == p)
                .unwrap();
            ChainHead {
                next_seq: last.seq + 1,
                hash: last.chain_hash,
            }
        } else {
            ChainHead::default()
        };
        head.append(&mut row);
        assert_eq!(
            row.chain_hash, hash,
            "row {i}: the borrowed chain hash equals the owned one"
        );
        expected.push(row);
    }
    // Several compressed blocks, cut at row boundaries.
    store
        .insert_events_encoded(&buf, &ends, "enc-test-token")
        .await
        .unwrap();
    let mut got: Vec<AuditRow> = store
        .client()
        .query("SELECT ?fields FROM audit_events ORDER BY kafka_offset")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter_mut().zip(&expected) {
        assert_eq!(g, e);
    }
    // The same token again is dropped by deduplication.
    store
        .insert_events_encoded(&buf, &[], "enc-test-token")
        .await
        .unwrap();
    let count: u64 = store
        .client()
        .query("SELECT count() FROM audit_events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, expected.len() as u64);

    // A table whose column type drifted refuses the header's types.
    mutate(
        &store,
        "ALTER TABLE audit_events MODIFY COLUMN activity_id Int64",
    )
    .await;
    let refused = store
        .insert_events_encoded(&buf, &[], "enc-test-token-2")
        .await;
    let error = refused.err().map(|e| format!("{e:?}")).unwrap_or_default();
    assert!(
        error.contains("activity_id"),
        "a type mismatch must fail the insert naming the column: {error}"
    );
}

/// A verdict written straight to the verified topic (never through the verifier) fails
/// `verify_store` when the key history comes from the trail itself: the only keys it trusts are
/// the administrators' and those an administrator registered in a key operation event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_verdicts_fail_verification_against_the_trails_own_key_history() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vigil_audit_sink::verify::{KeyHistory, VerifyOptions};
    use vigil_consumer::key_plan::{KeyActivity, key_event};
    use vigil_schemas::model::now_micros;
    use vigil_schemas::wire::SchemaId;
    use vigil_schemas::{
        Codec, EventSigner, KeyStatus, SignatureState, TrustAnchors, VerificationEvent,
        VerifiedEvent,
    };

    let topic = vigil_test_support::unique_name("audit-keys");
    vigil_test_support::create_topic(&topic, 1).await;
    vigil_test_support::create_topic(&format!("{topic}-dlq"), 1).await;
    let db = fresh_db("audit_keys");
    let admin = EventSigner::from_seed(&[33; 32]);
    let admin_id = vigil_schemas::admin::admin_id(&admin).to_string();
    let producer_key = producer_key();
    let attacker = EventSigner::from_seed(&[44; 32]);
    let events = Codec::<VerificationEvent>::new().unwrap();
    let verdict = |event: VerificationEvent, key_id: &str, signer: &EventSigner| {
        let raw = events.encode_framed(SchemaId(1), &event).unwrap();
        VerifiedEvent {
            signature: signer.sign(&raw).to_bytes().to_vec(),
            signed_value: raw,
            event,
            state: SignatureState::Valid,
            reason: None,
            verified_at: now_micros(),
            verifier: "test".into(),
            key_id: Some(key_id.to_owned()),
            origin_topic: "raw".into(),
            origin_partition: 0,
            origin_offset: 0,
            key_emergency: false,
        }
    };
    // The registration of k-test, as `vigil keys approve` records it.
    let status = KeyStatus::active("k-test", producer_key.public_key(), 0, &admin_id);
    let mut registration = key_event(KeyActivity::Registered, &status, &admin_id);
    registration.occurred_at = now_micros() - 5_000_000;
    let genuine = verified_event(1, &producer_key).event;
    let forged = verified_event(2, &attacker).event;
    let unknown = verified_event(3, &attacker).event;
    let verdicts = [
        verdict(registration, &admin_id, &admin),
        verdict(genuine, "k-test", &producer_key),
        // Claims k-test, signed by someone else.
        verdict(forged, "k-test", &attacker),
        // A key nobody registered.
        verdict(unknown, "k-injected", &attacker),
    ];
    let producer: FutureProducer = vigil_topology::KafkaClientConfig::from_env()
        .producer()
        .create()
        .unwrap();
    let codec = Codec::<VerifiedEvent>::new().unwrap();
    for v in &verdicts {
        let value = codec.encode_framed(SchemaId(1), v).unwrap();
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(&value),
                std::time::Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    run_until(config(&topic, &db), verdicts.len() as u64).await;
    let store = AuditStore::from_env(&db).unwrap();
    let anchors = TrustAnchors::new([*admin.public_key()]);
    let opts = VerifyOptions {
        producer_keys: Default::default(),
        history: Some(KeyHistory::new(&anchors)),
        ..verify_options()
    };
    let report = verify_store(&store, &topic, opts, None, None, None)
        .await
        .unwrap();
    assert!(!report.is_clean(), "{report}");
    // The registration (signed by the administrator) and the genuine event verify.
    assert_eq!(report.signatures_valid, 2, "{report}");
    let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FindingKind::BadEventSignature), "{report}");
    assert!(kinds.contains(&FindingKind::UnknownEventKey), "{report}");
    assert_eq!(report.total_findings, 2, "{report}");

    // Without trust anchors nothing can vouch for a key: every valid row is a finding.
    let blind = VerifyOptions {
        producer_keys: Default::default(),
        ..verify_options()
    };
    let report = verify_store(&store, &topic, blind, None, None, None)
        .await
        .unwrap();
    assert_eq!(report.signatures_unchecked, 4, "{report}");
    assert!(!report.is_clean());
}
