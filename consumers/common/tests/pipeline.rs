//! Pipelined handling (`pipeline_depth` > 1) against the real broker: handler calls of one
//! partition overlap and complete out of order, yet offsets are stored strictly in order, failed
//! records in the middle of a window keep their semantics, and side effects issued inside a
//! record's `Turn` keep the partition's order. Every test uses fresh topics and a fresh group.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use vigil_consumer::dead_letter::DeadLetterHeaders;
use vigil_consumer::{HandleError, Handler, InboundRecord, Outcome, RuntimeError, Turn};

type Script = dyn Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync;

/// A handler that sleeps a random time, answers by script, and records when each call started,
/// the order of its in-turn side effect (successful calls only) and when it ended.
struct Probe {
    max_delay_ms: u64,
    /// Offsets whose calls take 100 ms longer, to finish after later records.
    slow: Vec<i64>,
    script: Box<Script>,
    starts: Mutex<Vec<(Instant, i64)>>,
    in_turn: Mutex<Vec<i64>>,
    ends: Mutex<Vec<(Instant, i64, u32)>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl Probe {
    fn new(
        max_delay_ms: u64,
        script: impl Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync + 'static,
    ) -> std::sync::Arc<Self> {
        Self::with_slow(max_delay_ms, Vec::new(), script)
    }

    fn with_slow(
        max_delay_ms: u64,
        slow: Vec<i64>,
        script: impl Fn(&InboundRecord) -> Result<Outcome, HandleError> + Send + Sync + 'static,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            max_delay_ms,
            slow,
            script: Box::new(script),
            starts: Mutex::new(Vec::new()),
            in_turn: Mutex::new(Vec::new()),
            ends: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        })
    }

    fn delay(&self) -> Duration {
        Duration::from_millis(rand::thread_rng().gen_range(0..=self.max_delay_ms))
    }

    fn started(&self) -> Vec<i64> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .map(|(_, o)| *o)
            .collect()
    }

    fn ended(&self) -> Vec<(Instant, i64, u32)> {
        self.ends.lock().unwrap().clone()
    }
}

impl Handler for Probe {
    async fn handle(&self, record: &InboundRecord) -> Result<Outcome, HandleError> {
        self.handle_in_turn(record, &mut Turn::solo()).await
    }

    async fn handle_in_turn(
        &self,
        record: &InboundRecord,
        turn: &mut Turn,
    ) -> Result<Outcome, HandleError> {
        self.starts
            .lock()
            .unwrap()
            .push((Instant::now(), record.offset));
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        let mut delay = self.delay();
        if self.slow.contains(&record.offset) {
            delay += Duration::from_millis(100);
        }
        tokio::time::sleep(delay).await;
        let result = (self.script)(record);
        if result.is_ok() {
            turn.wait().await;
            self.in_turn.lock().unwrap().push(record.offset);
            turn.pass().await;
            tokio::time::sleep(self.delay()).await;
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.ends
            .lock()
            .unwrap()
            .push((Instant::now(), record.offset, record.attempt));
        result
    }
}

async fn fill(topic: &str, n: usize) {
    let producer = producer();
    for i in 0..n {
        let v = format!("r{i}");
        produce(
            &producer,
            topic,
            Some(0),
            Some(b"k"),
            Some(v.as_bytes()),
            &[],
        )
        .await;
    }
}

/// Every committed offset seen while `done` is false must have all earlier records ended.
async fn watch_commits(
    group: String,
    topic: String,
    probe: std::sync::Arc<Probe>,
    done: std::sync::Arc<AtomicBool>,
) -> usize {
    let mut samples = 0;
    while !done.load(Ordering::SeqCst) {
        let c = committed(&group, &topic, 1)[&0];
        // Read after the commit: anything committed was ended before this read.
        let ended: std::collections::HashSet<i64> =
            probe.ended().iter().map(|(_, o, _)| *o).collect();
        for o in 0..c.max(0) {
            assert!(
                ended.contains(&o),
                "offset {c} committed before record {o} finished"
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_completion_stores_offsets_in_order_and_keeps_turn_order() {
    let topics = Topics::create(1).await;
    let total = 300;
    fill(&topics.source, total).await;
    let mut config = topics.config();
    config.pipeline_depth = 8;
    config.max_in_flight_per_partition = 16;
    config.commit_interval_ms = 100;
    let probe = Probe::new(30, |_| Ok(Outcome::Handled));
    let running = start_runtime(config, probe.clone());
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_commits(
        topics.group.clone(),
        topics.source.clone(),
        probe.clone(),
        done.clone(),
    ));
    eventually("every record ended", WAIT, || probe.ended().len() >= total).await;
    done.store(true, Ordering::SeqCst);
    let samples = watcher.await.expect("watcher");
    let summary = running.stop().await.expect("clean run");

    let expected: Vec<i64> = (0..total as i64).collect();
    assert_eq!(probe.started(), expected, "started in offset order");
    assert_eq!(
        *probe.in_turn.lock().unwrap(),
        expected,
        "turns taken in offset order"
    );
    let completion: Vec<i64> = probe.ended().iter().map(|(_, o, _)| *o).collect();
    assert_ne!(completion, expected, "calls completed out of order");
    let max_active = probe.max_active.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&max_active),
        "calls overlapped, within the depth: {max_active}"
    );
    assert!(
        samples > 3,
        "commits were watched while handling ({samples})"
    );
    assert_eq!(summary.handled, total as u64);
    assert_eq!(summary.unfinished, 0);
    assert_eq!(
        committed(&topics.group, &topics.source, 1),
        end_offsets(&topics.source, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_and_transient_in_the_middle_of_a_window_keep_order_and_semantics() {
    let topics = Topics::create(1).await;
    let total = 40;
    fill(&topics.source, total).await;
    let mut config = topics.config();
    config.pipeline_depth = 8;
    config.commit_interval_ms = 100;
    config.retry.initial_backoff_ms = 150;
    config.retry.max_backoff_ms = 150;
    config.retry.jitter = vigil_consumer::Jitter::None;
    // r10 fails after r11: the DLQ still receives them in offset order.
    let probe = Probe::with_slow(10, vec![10], |r| match (r.value.as_deref(), r.attempt) {
        (Some(b"r10" | b"r11"), _) => Err(HandleError::bad_data("broken record")),
        (Some(b"r15"), 1 | 2) => Err(HandleError::transient("dependency down")),
        _ => Ok(Outcome::Handled),
    });
    let running = start_runtime(config, probe.clone());
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_commits(
        topics.group.clone(),
        topics.source.clone(),
        probe.clone(),
        done.clone(),
    ));
    // r15 ends three times (two failures, one success); every other record once.
    eventually("every record ended", WAIT, || {
        probe.ended().len() >= total + 2
    })
    .await;
    done.store(true, Ordering::SeqCst);
    watcher.await.expect("watcher");
    let summary = running.stop().await.expect("clean run");

    let ends = probe.ended();
    let r15_resolved = ends
        .iter()
        .find(|(_, o, a)| *o == 15 && *a == 3)
        .map(|(t, _, _)| *t)
        .expect("r15 succeeded on its third attempt");
    let r15_failed = ends
        .iter()
        .find(|(_, o, a)| *o == 15 && *a == 1)
        .map(|(t, _, _)| *t)
        .expect("r15 failed first");
    assert!(
        probe
            .starts
            .lock()
            .unwrap()
            .iter()
            .any(|(t, o)| *o > 16 && *t > r15_failed && *t < r15_resolved),
        "later records of the window were started while r15 was retried"
    );
    let expected: Vec<i64> = (0..total as i64).filter(|o| *o != 10 && *o != 11).collect();
    assert_eq!(
        *probe.in_turn.lock().unwrap(),
        expected,
        "side effects in offset order; the retried record kept its place"
    );
    assert_eq!(summary.dead_lettered, 2);
    assert_eq!(summary.in_process_retries, 2);
    assert_eq!(summary.handled, total as u64 - 2);
    let dlq = read(&topics.dlq, 2).await;
    for (r, offset) in dlq.iter().zip([10, 11]) {
        assert_eq!(
            text(&r.value),
            format!("r{offset}"),
            "dead-lettered in offset order"
        );
        let h = DeadLetterHeaders::parse(&r.headers).expect("dlq headers");
        assert_eq!((h.origin_partition, h.origin_offset), (0, offset));
    }
    assert_eq!(
        end_offsets(&topics.dlq, 1)[&0],
        2,
        "only r10 and r11 dead-lettered"
    );
    assert_eq!(
        committed(&topics.group, &topics.source, 1),
        end_offsets(&topics.source, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_error_in_a_window_stores_nothing_from_it_on_and_a_restart_resumes_there() {
    let topics = Topics::create(1).await;
    let total = 40;
    fill(&topics.source, total).await;
    let mut config = topics.config();
    config.pipeline_depth = 8;
    config.commit_interval_ms = 100;
    let first = Probe::new(20, |r| {
        if r.value.as_deref() == Some(b"r20") {
            Err(HandleError::internal("invariant broken"))
        } else {
            Ok(Outcome::Handled)
        }
    });
    let running = start_runtime(config.clone(), first.clone());
    let err = running
        .finished()
        .await
        .expect_err("internal error ends the run");
    match &err {
        RuntimeError::Internal {
            partition, offset, ..
        } => assert_eq!((*partition, *offset), (0, 20)),
        other => panic!("expected an internal error, got {other:?}"),
    }
    let started = first.started();
    assert!(
        started.iter().all(|o| *o < 20 + 8),
        "nothing started beyond the window: {started:?}"
    );
    assert_eq!(
        committed(&topics.group, &topics.source, 1)[&0],
        20,
        "every record before the failure stored, none from it on"
    );
    assert_eq!(end_offsets(&topics.dlq, 1)[&0], 0);

    let second = Probe::new(5, |_| Ok(Outcome::Handled));
    let running = start_runtime(config, second.clone());
    eventually("the rest handled", WAIT, || {
        second.ended().len() >= total - 20
    })
    .await;
    let summary = running.stop().await.expect("clean run");
    assert_eq!(
        second.started(),
        (20..total as i64).collect::<Vec<_>>(),
        "restart begins at the failed record"
    );
    assert_eq!(summary.handled, total as u64 - 20);
    assert_eq!(
        committed(&topics.group, &topics.source, 1)[&0],
        total as i64
    );
}
