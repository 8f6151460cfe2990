//! The consumer runtime against the real broker: ordering, offsets, DLQ, retries, internal errors
//! and draining shutdown. Every test uses fresh topics and a fresh consumer group.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use vigil_consumer::dead_letter::{self, DeadLetterHeaders};
use vigil_consumer::{ErrorClass, HandleError, Outcome, RecordHeader, RuntimeError};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn key_seq(value: &Option<Vec<u8>>) -> (String, u32) {
    let v = text(value);
    let (k, s) = v.split_once(':').expect("value is key:seq");
    (k.to_owned(), s.parse().expect("seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_handles_each_record_once_in_key_order_and_commits_the_end() {
    let topics = Topics::create(3).await;
    let producer = producer();
    let keys = 12;
    let per_key = 25;
    for seq in 0..per_key {
        for k in 0..keys {
            let key = format!("key-{k}");
            let value = format!("{key}:{seq}");
            produce(
                &producer,
                &topics.source,
                None,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[],
            )
            .await;
        }
    }
    let total = keys * per_key;

    let mut config = topics.config();
    // A small per-partition queue, and one call that stalls longer than the loop waits for
    // room, force the loop to pause and resume a partition.
    config.max_in_flight_per_partition = 2;
    let handler = Scripted::delayed(
        |r| {
            if r.value.as_deref() == Some(b"key-0:0") {
                Duration::from_millis(400)
            } else {
                Duration::ZERO
            }
        },
        |_| Ok(Outcome::Handled),
    );
    let running = start_runtime(config, handler.clone());
    eventually("every record handled", WAIT, || {
        handler.count() >= total as usize
    })
    .await;
    assert!(running.telemetry().health.is_ready(), "ready once assigned");
    // Lag comes from librdkafka statistics (every 500 ms here): wait for it to report zero.
    eventually("lag metric reports 0", WAIT, || {
        running.telemetry().render().lines().any(|l| {
            l.starts_with("vigil_consumer_lag_records{")
                && l.contains(&topics.source)
                && l.ends_with(" 0")
        })
    })
    .await;
    let telemetry = running.telemetry().clone();
    let summary = running.stop().await.expect("clean run");

    assert_eq!(summary.handled, total as u64);
    assert_eq!(
        summary.dead_lettered + summary.retry_scheduled + summary.unfinished,
        0
    );
    assert!(!telemetry.health.is_ready(), "not ready after stop");
    let mut per_key_seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut key_partition: HashMap<String, HashSet<i32>> = HashMap::new();
    for r in handler.calls() {
        assert_eq!(r.topic, topics.source);
        assert_eq!(r.attempt, 1);
        let (k, s) = key_seq(&r.value);
        assert_eq!(r.key.as_deref(), Some(k.as_bytes()));
        key_partition
            .entry(k.clone())
            .or_default()
            .insert(r.partition);
        per_key_seen.entry(k).or_default().push(s);
    }
    assert_eq!(per_key_seen.len(), keys as usize);
    for (k, seqs) in &per_key_seen {
        assert_eq!(
            *seqs,
            (0..per_key).collect::<Vec<u32>>(),
            "key {k}: once each, in order"
        );
    }
    let partitions_used: HashSet<i32> = key_partition.values().flatten().copied().collect();
    assert!(
        partitions_used.len() > 1,
        "keys spread over partitions: {partitions_used:?}"
    );
    assert_eq!(
        committed(&topics.group, &topics.source, 3),
        end_offsets(&topics.source, 3)
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_records_total",
            &[("outcome", "handled"), ("topic", &topics.source)]
        ),
        total as f64
    );
    assert_eq!(
        metric(&telemetry, "vigil_consumer_in_flight_records", &[]),
        0.0
    );
    assert_eq!(
        metric(&telemetry, "vigil_consumer_handle_duration_seconds", &[]),
        total as f64
    );
    assert!(
        metric(
            &telemetry,
            "vigil_consumer_rebalances_total",
            &[("kind", "assign")]
        ) >= 1.0
    );
    assert!(
        metric(&telemetry, "vigil_consumer_partition_pauses_total", &[]) >= 1.0,
        "a full worker paused its partition"
    );
    assert_eq!(
        metric(&telemetry, "vigil_consumer_paused_partitions", &[]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_goes_to_the_dlq_byte_for_byte_and_the_partition_moves_on() {
    let topics = Topics::create(1).await;
    let producer = producer();
    let original_headers: Vec<RecordHeader> = vec![
        ("vigil-sig".into(), Some(vec![0x00, 0xff, 0x10, 0x80])),
        ("empty".into(), Some(Vec::new())),
        ("null".into(), None),
        (
            "traceparent".into(),
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
        ),
        ("dup".into(), Some(b"1".to_vec())),
        ("dup".into(), Some(b"2".to_vec())),
    ];
    let bad_key = vec![0xde, 0xad, 0x00, 0xbe, 0xef];
    let bad_value = vec![0x00, 0x00, 0x00, 0x00, 0x07, 0xff, 0xfe];
    produce(
        &producer,
        &topics.source,
        Some(0),
        Some(b"k"),
        Some(b"good-0"),
        &[],
    )
    .await;
    let (bad_partition, bad_offset) = produce(
        &producer,
        &topics.source,
        Some(0),
        Some(&bad_key),
        Some(&bad_value),
        &original_headers,
    )
    .await;
    for i in 1..=3 {
        let v = format!("good-{i}");
        produce(
            &producer,
            &topics.source,
            Some(0),
            Some(b"k"),
            Some(v.as_bytes()),
            &[],
        )
        .await;
    }

    let started = now_ms();
    let handler = Scripted::new(|r| {
        if r.value.as_deref().is_some_and(|v| v.starts_with(b"good")) {
            Ok(Outcome::Handled)
        } else {
            Err(HandleError::bad_data("unknown schema id 2047"))
        }
    });
    let running = start_runtime(topics.config(), handler.clone());
    eventually("all five records seen", WAIT, || handler.count() >= 5).await;
    let dlq = read(&topics.dlq, 1).await;
    let telemetry = running.telemetry().clone();
    let summary = running.stop().await.expect("clean run");

    assert_eq!(summary.handled, 4, "records after the bad one are handled");
    assert_eq!(summary.dead_lettered, 1);
    let seen: Vec<String> = handler.calls().iter().map(|r| text(&r.value)).collect();
    assert_eq!(seen[0], "good-0");
    assert_eq!(&seen[2..], ["good-1", "good-2", "good-3"]);

    let d = &dlq[0];
    assert_eq!(
        d.key.as_deref(),
        Some(bad_key.as_slice()),
        "key byte for byte"
    );
    assert_eq!(
        d.value.as_deref(),
        Some(bad_value.as_slice()),
        "value byte for byte"
    );
    let (orig, block) = dead_letter::split_headers(&d.headers);
    assert_eq!(
        orig,
        original_headers.as_slice(),
        "original headers byte for byte, in order"
    );
    let names: Vec<&str> = block.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, dead_letter::DEAD_LETTER_HEADERS);
    let h = DeadLetterHeaders::parse(&d.headers).expect("dead-letter headers parse");
    assert_eq!(h.error_class, ErrorClass::BadData);
    assert_eq!(h.error, "unknown schema id 2047");
    assert_eq!(h.origin_topic, topics.source);
    assert_eq!(
        (h.origin_partition, h.origin_offset),
        (bad_partition, bad_offset)
    );
    assert_eq!(h.consumer_group, topics.group);
    assert_eq!(h.attempts, 1);
    assert_eq!(h.first_failed_at_ms, h.last_failed_at_ms);
    assert!(h.first_failed_at_ms >= started && h.first_failed_at_ms <= now_ms());
    assert_eq!(h.retry_not_before_ms, None);
    let bad_call = &handler.calls()[1];
    assert_eq!(h.origin_timestamp_ms, bad_call.timestamp_ms);
    assert!(h.origin_timestamp_ms.is_some());
    assert_eq!(
        bad_call.headers, original_headers,
        "the handler saw the original headers"
    );

    assert_eq!(
        committed(&topics.group, &topics.source, 1),
        end_offsets(&topics.source, 1)
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_dead_letters_total",
            &[("class", "bad_data")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_errors_total",
            &[("class", "bad_data")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_in_process_then_handled() {
    let topics = Topics::create(1).await;
    let producer = producer();
    produce(
        &producer,
        &topics.source,
        Some(0),
        Some(b"flaky"),
        Some(b"flaky"),
        &[],
    )
    .await;
    produce(
        &producer,
        &topics.source,
        Some(0),
        Some(b"after"),
        Some(b"after"),
        &[],
    )
    .await;

    let handler = Scripted::new(|r| {
        if r.value.as_deref() == Some(b"flaky") && r.attempt <= 2 {
            Err(HandleError::transient("registry unavailable"))
        } else {
            Ok(Outcome::Handled)
        }
    });
    let running = start_runtime(topics.config(), handler.clone());
    eventually("both records handled", WAIT, || handler.count() >= 4).await;
    let telemetry = running.telemetry().clone();
    let summary = running.stop().await.expect("clean run");

    let calls: Vec<(String, u32)> = handler
        .calls()
        .iter()
        .map(|r| (text(&r.value), r.attempt))
        .collect();
    assert_eq!(
        calls,
        [
            ("flaky".into(), 1),
            ("flaky".into(), 2),
            ("flaky".into(), 3),
            ("after".into(), 1)
        ],
        "retried in place, order kept"
    );
    assert_eq!(summary.handled, 2);
    assert_eq!(summary.in_process_retries, 2);
    assert_eq!(summary.dead_lettered + summary.retry_scheduled, 0);
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_retries_total",
            &[("stage", "in_process")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_errors_total",
            &[("class", "transient")]
        ),
        2.0
    );
    assert_eq!(end_offsets(&topics.dlq, 1)[&0], 0, "nothing in the DLQ");
    assert_eq!(
        end_offsets(&topics.retry[0], 2).values().sum::<i64>(),
        0,
        "nothing in retry topics"
    );
    assert_eq!(
        committed(&topics.group, &topics.source, 1),
        end_offsets(&topics.source, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_forever_goes_through_the_retry_topics_then_to_the_dlq() {
    let topics = Topics::create(1).await;
    let producer = producer();
    let headers: Vec<RecordHeader> = vec![
        ("vigil-key-id".into(), Some(b"kid-1".to_vec())),
        ("n".into(), None),
    ];
    let (_, doomed_offset) = produce(
        &producer,
        &topics.source,
        Some(0),
        Some(b"doomed"),
        Some(b"doomed"),
        &headers,
    )
    .await;
    produce(
        &producer,
        &topics.source,
        Some(0),
        Some(b"fine"),
        Some(b"fine"),
        &[],
    )
    .await;
    // A retry record of another consumer group sharing the retry topic: not ours to handle.
    let foreign = DeadLetterHeaders {
        error_class: ErrorClass::Transient,
        error: "not ours".into(),
        origin_topic: topics.source.clone(),
        origin_partition: 0,
        origin_offset: 0,
        origin_timestamp_ms: None,
        consumer_group: "another-group".into(),
        attempts: 3,
        first_failed_at_ms: now_ms(),
        last_failed_at_ms: now_ms(),
        retry_not_before_ms: Some(now_ms()),
    };
    let foreign_headers: Vec<RecordHeader> = foreign
        .to_headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Some(v)))
        .collect();
    produce(
        &producer,
        &topics.retry[0],
        Some(0),
        Some(b"foreign"),
        Some(b"foreign"),
        &foreign_headers,
    )
    .await;

    let mut config = topics.config();
    config.retry.in_process_attempts = 2;
    let handler = Scripted::new(|r| {
        if r.value.as_deref() == Some(b"doomed") {
            Err(HandleError::transient("clickhouse unavailable"))
        } else {
            Ok(Outcome::Handled)
        }
    });
    let running = start_runtime(config, handler.clone());
    let dlq = read(&topics.dlq, 1).await;
    let telemetry = running.telemetry().clone();
    let summary = running.stop().await.expect("clean run");

    let calls = handler.timed_calls();
    let doomed: Vec<_> = calls
        .iter()
        .filter(|(_, r)| r.value.as_deref() == Some(b"doomed"))
        .collect();
    assert_eq!(doomed.len(), 6, "2 attempts in each of 3 stages");
    for (i, (_, r)) in doomed.iter().enumerate() {
        assert_eq!(r.attempt, i as u32 + 1);
        assert_eq!(r.topic, topics.source, "original topic restored");
        assert_eq!((r.partition, r.offset), (0, doomed_offset));
        assert_eq!(r.headers, headers, "original headers restored");
    }
    // The retry topics delay the record by (at least nearly) their configured delay.
    let gap = |a: usize, b: usize| doomed[b].0.duration_since(doomed[a].0);
    assert!(
        gap(1, 2) >= Duration::from_millis(900),
        "first retry topic waits ~1 s: {:?}",
        gap(1, 2)
    );
    assert!(
        gap(3, 4) >= Duration::from_millis(1900),
        "second retry topic waits ~2 s: {:?}",
        gap(3, 4)
    );
    assert!(
        calls
            .iter()
            .position(|(_, r)| r.value.as_deref() == Some(b"fine"))
            .unwrap()
            < 3,
        "the partition is not stalled while the record waits in a retry topic"
    );
    assert!(
        calls
            .iter()
            .all(|(_, r)| r.value.as_deref() != Some(b"foreign"))
    );

    let d = &dlq[0];
    assert_eq!(d.key.as_deref(), Some(&b"doomed"[..]));
    assert_eq!(d.value.as_deref(), Some(&b"doomed"[..]));
    let (orig, _) = dead_letter::split_headers(&d.headers);
    assert_eq!(orig, headers.as_slice(), "retry headers do not pile up");
    let h = DeadLetterHeaders::parse(&d.headers).expect("dead-letter headers");
    assert_eq!(h.error_class, ErrorClass::Transient);
    assert_eq!(h.attempts, 6);
    assert_eq!(
        (h.origin_topic.as_str(), h.origin_offset),
        (topics.source.as_str(), doomed_offset)
    );
    assert!(h.last_failed_at_ms - h.first_failed_at_ms >= 2_900, "{h:?}");
    assert_eq!(h.retry_not_before_ms, None);

    assert_eq!(summary.retry_scheduled, 2);
    assert_eq!(summary.dead_lettered, 1);
    assert_eq!(summary.skipped, 1);
    assert_eq!(summary.handled, 1);
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_retries_total",
            &[("stage", "retry_topic")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_dead_letters_total",
            &[("class", "transient")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &telemetry,
            "vigil_consumer_records_total",
            &[("outcome", "skipped")]
        ),
        1.0
    );
    assert_eq!(
        end_offsets(&topics.retry[0], 2).values().sum::<i64>(),
        2,
        "ours and the foreign one"
    );
    assert_eq!(end_offsets(&topics.retry[1], 2).values().sum::<i64>(), 1);
    assert_eq!(
        committed(&topics.group, &topics.source, 1),
        end_offsets(&topics.source, 1)
    );
    for r in &topics.retry {
        let c = committed(&topics.group, r, 2);
        let e = end_offsets(r, 2);
        for p in 0..2 {
            assert!(
                e[&p] == 0 || c[&p] == e[&p],
                "retry topic {r}/{p}: committed {c:?}, end {e:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_error_stops_the_run_and_a_restart_resumes_at_that_record() {
    let topics = Topics::create(1).await;
    let producer = producer();
    for i in 0..10 {
        let v = format!("r{i}");
        produce(
            &producer,
            &topics.source,
            Some(0),
            Some(b"k"),
            Some(v.as_bytes()),
            &[],
        )
        .await;
    }
    let first = Scripted::new(|r| {
        if r.value.as_deref() == Some(b"r5") {
            Err(HandleError::internal("invariant broken"))
        } else {
            Ok(Outcome::Handled)
        }
    });
    let running = start_runtime(topics.config(), first.clone());
    let err = running
        .finished()
        .await
        .expect_err("internal error ends the run");
    match &err {
        RuntimeError::Internal {
            topic,
            partition,
            offset,
            message,
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *offset),
                (topics.source.as_str(), 0, 5)
            );
            assert_eq!(message, "invariant broken");
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    let seen: Vec<String> = first.calls().iter().map(|r| text(&r.value)).collect();
    assert_eq!(
        seen,
        ["r0", "r1", "r2", "r3", "r4", "r5"],
        "nothing after the failing record"
    );
    assert_eq!(
        committed(&topics.group, &topics.source, 1)[&0],
        5,
        "the failing record is not committed"
    );
    assert_eq!(end_offsets(&topics.dlq, 1)[&0], 0);

    let second = Scripted::new(|_| Ok(Outcome::Handled));
    let running = start_runtime(topics.config(), second.clone());
    eventually("the rest handled", WAIT, || second.count() >= 5).await;
    let summary = running.stop().await.expect("clean run");
    let seen: Vec<String> = second.calls().iter().map(|r| text(&r.value)).collect();
    assert_eq!(
        seen,
        ["r5", "r6", "r7", "r8", "r9"],
        "restart begins at the failed record"
    );
    assert_eq!(summary.handled, 5);
    assert_eq!(committed(&topics.group, &topics.source, 1)[&0], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_error_is_a_handler_bug_and_stops_the_run_like_an_internal_one() {
    let topics = Topics::create(1).await;
    let producer = producer();
    for i in 0..3 {
        let v = format!("r{i}");
        produce(
            &producer,
            &topics.source,
            Some(0),
            Some(b"k"),
            Some(v.as_bytes()),
            &[],
        )
        .await;
    }
    // A rejection is Outcome::Rejected; an error classed rejected cannot be dead-lettered (a
    // DLQ never holds rejected records) nor published by the runtime.
    let handler = Scripted::new(|r| {
        if r.value.as_deref() == Some(b"r1") {
            Err(HandleError {
                class: ErrorClass::Rejected,
                message: "bad signature".to_owned(),
            })
        } else {
            Ok(Outcome::Handled)
        }
    });
    let running = start_runtime(topics.config(), handler.clone());
    let err = running.finished().await.expect_err("the run stops");
    match &err {
        RuntimeError::Internal {
            offset, message, ..
        } => {
            assert_eq!(*offset, 1);
            assert!(message.contains("bad signature"), "{message}");
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    assert_eq!(committed(&topics.group, &topics.source, 1)[&0], 1);
    assert_eq!(end_offsets(&topics.dlq, 1)[&0], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_records_and_a_restart_skips_nothing() {
    let topics = Topics::create(3).await;
    let producer = producer();
    let total = 150;
    for i in 0..total {
        let key = format!("key-{}", i % 9);
        let value = format!("{key}:{i}");
        produce(
            &producer,
            &topics.source,
            None,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            &[],
        )
        .await;
    }
    let mut config = topics.config();
    config.max_in_flight_per_partition = 8;
    let slow = Scripted::slow(Duration::from_millis(25), |_| Ok(Outcome::Handled));
    let running = start_runtime(config.clone(), slow.clone());
    eventually("some records handled", WAIT, || slow.count() >= 20).await;
    eventually("the lag metric shows the backlog", WAIT, || {
        running.metric("vigil_consumer_lag_records", &[("topic", &topics.source)]) > 0.0
    })
    .await;
    let at_stop = slow.count();
    let summary = running.stop().await.expect("clean drain");
    let first: Vec<(i32, i64)> = slow
        .calls()
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    assert!(first.len() < total, "shutdown came while records were left");
    assert!(
        first.len() > at_stop,
        "records held by workers were finished after the stop request"
    );
    assert_eq!(summary.handled as usize, first.len());

    // Every record handled before the stop is committed: per partition, the committed offset is
    // one past the last handled offset, and the handled offsets are a gapless prefix.
    let committed_after_stop = committed(&topics.group, &topics.source, 3);
    for p in 0..3 {
        let mut offsets: Vec<i64> = first
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        offsets.sort_unstable();
        let expected_next = offsets.last().map_or(-1, |o| o + 1);
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p} in order"
        );
        if expected_next >= 0 {
            assert_eq!(
                committed_after_stop[&p], expected_next,
                "partition {p} committed"
            );
        }
    }

    let fast = Scripted::new(|_| Ok(Outcome::Handled));
    let running = start_runtime(config, fast.clone());
    let expected_rest = total - first.len();
    eventually("the rest handled", WAIT, || fast.count() >= expected_rest).await;
    // Give a duplicate or an extra record the chance to show up before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await.expect("clean run");

    let second: Vec<(i32, i64)> = fast
        .calls()
        .iter()
        .map(|r| (r.partition, r.offset))
        .collect();
    let a: HashSet<(i32, i64)> = first.iter().copied().collect();
    let b: HashSet<(i32, i64)> = second.iter().copied().collect();
    assert_eq!(a.len(), first.len(), "no duplicates in the first run");
    assert_eq!(b.len(), second.len(), "no duplicates in the second run");
    assert!(a.is_disjoint(&b), "drained records are not handled again");
    let ends = end_offsets(&topics.source, 3);
    let all: HashSet<(i32, i64)> = a.union(&b).copied().collect();
    let expected: HashSet<(i32, i64)> = (0..3)
        .flat_map(|p| (0..ends[&p]).map(move |o| (p, o)))
        .collect();
    assert_eq!(all, expected, "no record skipped");
    assert_eq!(committed(&topics.group, &topics.source, 3), ends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_moves_partitions_without_losing_records() {
    let topics = Topics::create(4).await;
    let producer = producer();
    let total = 400;
    let produce_range = |range: std::ops::Range<usize>| {
        let producer = producer.clone();
        let topic = topics.source.clone();
        async move {
            for i in range {
                let key = format!("key-{}", i % 16);
                let value = format!("{key}:{i}");
                produce(
                    &producer,
                    &topic,
                    None,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[],
                )
                .await;
            }
        }
    };
    produce_range(0..total / 2).await;
    let mut config = topics.config();
    config.max_in_flight_per_partition = 4;
    let a = Scripted::slow(Duration::from_millis(5), |_| Ok(Outcome::Handled));
    let b = Scripted::slow(Duration::from_millis(5), |_| Ok(Outcome::Handled));
    let first = start_runtime(config.clone(), a.clone());
    eventually("the first member is busy", WAIT, || a.count() > 20).await;

    // A second member joins mid-stream: partitions are revoked from the first one.
    let second = start_runtime(config.clone(), b.clone());
    eventually("the second member is assigned", WAIT, || {
        second.telemetry().health.is_ready()
    })
    .await;
    produce_range(total / 2..total).await;
    eventually("the second member handles records", WAIT, || b.count() > 0).await;
    // It leaves again: its partitions go back to the first member.
    second.stop().await.expect("second member stops cleanly");

    let ends = end_offsets(&topics.source, 4);
    let expected: HashSet<(i32, i64)> = (0..4)
        .flat_map(|p| (0..ends[&p]).map(move |o| (p, o)))
        .collect();
    assert_eq!(expected.len(), total);
    let seen = || -> HashSet<(i32, i64)> {
        a.calls()
            .iter()
            .chain(b.calls().iter())
            .map(|r| (r.partition, r.offset))
            .collect()
    };
    eventually("every record handled by one of the members", WAIT, || {
        seen() == expected
    })
    .await;
    eventually("offsets committed to the end", WAIT, || {
        committed(&topics.group, &topics.source, 4) == ends
    })
    .await;
    assert!(
        first.metric("vigil_consumer_rebalances_total", &[("kind", "revoke")]) >= 1.0,
        "the first member saw its partitions revoked"
    );
    let summary = first.stop().await.expect("clean run");
    let handled_twice = a.count() + b.count() - total;
    // Only records in flight at a revoke may be handled twice: at most the per-partition queue
    // plus the one in the handler, per partition and rebalance (two rebalances here).
    assert!(
        handled_twice <= 2 * 4 * 5 + 8,
        "{handled_twice} records handled twice"
    );
    assert_eq!(summary.handled as usize, a.count());
}
