//! One partition's worker: starts its records' handling in offset order (several at once with a
//! pipeline), retries, parks failures in a retry topic or the DLQ, and stores offsets strictly in
//! order, each only once its record and every earlier one are finished.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use prometheus::IntGauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use vigil_topology::InternalEvent;

use crate::config::RuntimeConfig;
use crate::context::RuntimeContext;
use crate::dead_letter::{self, DeadLetterHeaders};
use crate::handler::{
    ErrorClass, HandleError, Handler, InboundRecord, Outcome, RecordHeader, Turn,
};
use crate::internal_events::{
    At, DeadLettered, ForeignRetrySkipped, HandlerCalled, HandlerFailed, InProcessRetry,
    Instruments, ParkWriteFailed, RecordHandled, RetryScheduled,
};
use crate::outcome::{ParkError, RunSummary, RuntimeError};

/// How long a write to the DLQ or a retry topic may wait for room in the producer queue before
/// the attempt counts as failed and is retried after a backoff.
const PRODUCER_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters behind [`RunSummary`], shared by every worker.
#[derive(Default)]
pub(crate) struct Counts {
    handled: AtomicU64,
    rejected: AtomicU64,
    dead_lettered: AtomicU64,
    retry_scheduled: AtomicU64,
    skipped: AtomicU64,
    in_process_retries: AtomicU64,
    unfinished: AtomicU64,
}

impl Counts {
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            handled: self.handled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retry_scheduled: self.retry_scheduled.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            in_process_retries: self.in_process_retries.load(Ordering::Relaxed),
            unfinished: self.unfinished.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Marks a record as read but not finished: counted in the in-flight gauge while it lives, and in
/// `unfinished` if it is dropped without being finished (shutdown, revoke, fatal error).
pub(crate) struct InFlight {
    gauge: IntGauge,
    counts: Arc<Counts>,
    finished: bool,
}

impl InFlight {
    pub fn new(gauge: IntGauge, counts: Arc<Counts>) -> Self {
        gauge.inc();
        Self {
            gauge,
            counts,
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
        if !self.finished {
            bump(&self.counts.unfinished);
        }
    }
}

/// A record as read from Kafka, owned.
pub(crate) struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<RecordHeader>,
    /// Set when the headers could not be read (a header name that is not UTF-8).
    header_error: Option<String>,
    in_flight: InFlight,
}

impl Consumed {
    pub fn from_message(m: &BorrowedMessage<'_>, in_flight: InFlight) -> Self {
        // rust-rdkafka panics on a header name that is not UTF-8; such a record is bad data,
        // not a reason to crash the service.
        let headers = std::panic::catch_unwind(AssertUnwindSafe(|| {
            m.headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }));
        let (headers, header_error) = match headers {
            Ok(h) => (h, None),
            Err(_) => (
                Vec::new(),
                Some("record has a header name that is not UTF-8".to_owned()),
            ),
        };
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            header_error,
            in_flight,
        }
    }
}

/// What every worker shares.
pub(crate) struct Shared<H> {
    pub config: RuntimeConfig,
    pub handler: Arc<H>,
    pub consumer: Arc<StreamConsumer<RuntimeContext>>,
    pub producer: FutureProducer,
    pub ins: Instruments,
    pub counts: Arc<Counts>,
    /// Flipped when the run stops: waits (backoff, retry delay) are abandoned.
    pub stop: watch::Receiver<bool>,
    pub fatal: mpsc::UnboundedSender<RuntimeError>,
}

/// How one record ended.
enum Step {
    /// Handled, rejected, parked or skipped: its offset may be stored.
    Done,
    /// Left unfinished (shutdown or revoke during a wait): neither it nor any later record of
    /// the partition may be stored.
    Abandoned,
    /// The run must stop; the record's offset is not stored.
    Fatal(RuntimeError),
}

/// Resolves when the run stops or the partition is revoked.
struct Cancel {
    stop: watch::Receiver<bool>,
    revoked: watch::Receiver<bool>,
}

impl Cancel {
    async fn cancelled(&mut self) {
        tokio::select! {
            _ = flag_set(&mut self.stop) => {}
            _ = flag_set(&mut self.revoked) => {}
        }
    }

    /// Sleeps for `d`; returns false if cancelled first.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancelled() => false,
        }
    }
}

async fn flag_set(rx: &mut watch::Receiver<bool>) {
    // A switch dropped without being flipped never flips.
    if rx.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One record's handling as it ended, waiting for its turn to be stored.
struct Finished {
    seq: u64,
    topic: String,
    partition: i32,
    offset: i64,
    step: Step,
    in_flight: InFlight,
    /// The record's turn when it ended without finishing: kept until the worker exits, so no
    /// later record's ordered side effects run before it.
    held: Option<Turn>,
}

/// Handles one record and passes its turn once it is finished.
async fn run_one<H: Handler>(
    shared: &Shared<H>,
    seq: u64,
    rec: Consumed,
    mut cancel: Cancel,
    mut turn: Turn,
) -> Finished {
    let (topic, partition, offset) = (rec.topic.clone(), rec.partition, rec.offset);
    let (step, in_flight) = process(shared, rec, &mut cancel, &mut turn).await;
    let held = if matches!(step, Step::Done) {
        turn.pass().await;
        None
    } else {
        Some(turn)
    };
    Finished {
        seq,
        topic,
        partition,
        offset,
        step,
        in_flight,
        held,
    }
}

/// Handles the records of one partition until its channel closes, it is revoked, or the run
/// stops. `previous` is the worker of an earlier assignment of the same partition: it finishes
/// first, so two workers never handle one partition at once.
///
/// Up to `pipeline_depth` consecutive records are being handled at once, started in offset
/// order; they may finish in any order, but an offset is stored only once its record and every
/// earlier one finished. A record that fails (internal error, or abandoned on shutdown or
/// revoke) stops the intake, and neither its offset nor any later one is stored.
pub(crate) async fn run_worker<H: Handler>(
    shared: Arc<Shared<H>>,
    mut records: mpsc::Receiver<Consumed>,
    revoked: watch::Receiver<bool>,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let shared = &*shared;
    let depth = u64::try_from(shared.config.pipeline_depth.max(1)).unwrap_or(1);
    let mut running = FuturesUnordered::new();
    // Records that finished before an earlier one, by sequence number.
    let mut finished: BTreeMap<u64, Finished> = BTreeMap::new();
    // Sequence numbers: `head` is the oldest record not yet stored, `next` the next to start.
    let (mut head, mut next) = (0u64, 0u64);
    let mut prev_turn = None;
    let mut held_turns: Vec<Turn> = Vec::new();
    // Set when a record ended without finishing: nothing more starts, and the worker exits
    // once every record before it was stored.
    let mut halted_at: Option<u64> = None;
    let mut open = true;
    loop {
        if running.is_empty() && (!open || halted_at.is_some()) {
            break;
        }
        let room = next - head < depth;
        tokio::select! {
            biased;
            Some(done) = running.next(), if !running.is_empty() => {
                let done: Finished = done;
                if !matches!(done.step, Step::Done) && halted_at.is_none_or(|h| done.seq < h) {
                    halted_at = Some(done.seq);
                }
                finished.insert(done.seq, done);
                // Store every offset whose record and all earlier ones finished, in order.
                while let Some(mut done) = finished.remove(&head) {
                    head += 1;
                    if let Some(t) = done.held.take() {
                        held_turns.push(t);
                    }
                    match done.step {
                        Step::Done => {
                            done.in_flight.finish();
                            // A revoked partition belongs to another consumer now; it starts
                            // from the last committed offset and handles this record again.
                            if *revoked.borrow() {
                                return;
                            }
                            if let Err(e) =
                                shared.consumer.store_offset(&done.topic, done.partition, done.offset)
                            {
                                tracing::debug!(
                                    topic = done.topic,
                                    partition = done.partition,
                                    offset = done.offset,
                                    error = %e,
                                    "offset not stored"
                                );
                            }
                        }
                        Step::Abandoned => return,
                        Step::Fatal(e) => {
                            let _ = shared.fatal.send(e);
                            return;
                        }
                    }
                }
            }
            rec = records.recv(), if open && halted_at.is_none() && room => {
                let Some(rec) = rec else {
                    open = false;
                    continue;
                };
                if *revoked.borrow() {
                    break;
                }
                let cancel = Cancel {
                    stop: shared.stop.clone(),
                    revoked: revoked.clone(),
                };
                let (turn, next_turn) = Turn::chained(prev_turn.take());
                prev_turn = Some(next_turn);
                running.push(run_one(shared, next, rec, cancel, turn));
                next += 1;
            }
        }
    }
    drop(held_turns);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// What is known about a record's earlier failures (from its retry headers).
struct History {
    attempts: u32,
    first_failed_at_ms: Option<i64>,
}

async fn process<H: Handler>(
    shared: &Shared<H>,
    rec: Consumed,
    cancel: &mut Cancel,
    turn: &mut Turn,
) -> (Step, InFlight) {
    let at = At {
        topic: &rec.topic,
        partition: rec.partition,
        offset: rec.offset,
    };
    let config = &shared.config;
    let raw_record = |headers: Vec<RecordHeader>| InboundRecord {
        topic: rec.topic.clone(),
        partition: rec.partition,
        offset: rec.offset,
        timestamp_ms: rec.timestamp_ms,
        key: rec.key.clone(),
        value: rec.value.clone(),
        headers,
        attempt: 1,
    };

    if let Some(reason) = &rec.header_error {
        let record = raw_record(Vec::new());
        let step = dead_letter_now(
            shared,
            &record,
            at,
            ErrorClass::BadData,
            reason,
            0,
            cancel,
            turn,
        )
        .await;
        return finish(step, rec.in_flight);
    }

    // A record from a retry topic: check whose it is, wait out its delay, restore the original.
    let (mut record, history, stage) = match config.retry_stage_of(&rec.topic) {
        None => (
            raw_record(rec.headers.clone()),
            History {
                attempts: 0,
                first_failed_at_ms: None,
            },
            0,
        ),
        Some(i) => {
            let (original, block) = dead_letter::split_headers(&rec.headers);
            let group = block
                .iter()
                .find(|(k, _)| k == dead_letter::CONSUMER_GROUP)
                .and_then(|(_, v)| v.as_deref());
            if group != Some(config.group_id.as_bytes()) {
                if group.is_none() {
                    tracing::warn!(
                        topic = at.topic,
                        partition = at.partition,
                        offset = at.offset,
                        "retry record without {} header skipped",
                        dead_letter::CONSUMER_GROUP
                    );
                }
                ForeignRetrySkipped {
                    ins: &shared.ins,
                    at,
                }
                .emit();
                bump(&shared.counts.skipped);
                return finish(Step::Done, rec.in_flight);
            }
            let h = match DeadLetterHeaders::parse(&rec.headers) {
                Ok(h) => h,
                Err(e) => {
                    let record = raw_record(rec.headers.clone());
                    let reason = format!("malformed retry headers: {e}");
                    let step = dead_letter_now(
                        shared,
                        &record,
                        at,
                        ErrorClass::BadData,
                        &reason,
                        0,
                        cancel,
                        turn,
                    )
                    .await;
                    return finish(step, rec.in_flight);
                }
            };
            // The delay is capped by the stage's own: a corrupt deadline must not stall the partition.
            let delay_ms = i64::try_from(config.retry_topics[i].delay_ms).unwrap_or(i64::MAX);
            let wait_ms = h
                .retry_not_before_ms
                .map_or(0, |nb| nb.saturating_sub(now_ms()).clamp(0, delay_ms));
            if wait_ms > 0
                && !cancel
                    .sleep(Duration::from_millis(wait_ms.unsigned_abs()))
                    .await
            {
                return finish(Step::Abandoned, rec.in_flight);
            }
            let record = InboundRecord {
                topic: h.origin_topic,
                partition: h.origin_partition,
                offset: h.origin_offset,
                timestamp_ms: h.origin_timestamp_ms,
                key: rec.key.clone(),
                value: rec.value.clone(),
                headers: original.to_vec(),
                attempt: 1,
            };
            let history = History {
                attempts: h.attempts,
                first_failed_at_ms: Some(h.first_failed_at_ms),
            };
            (record, history, i + 1)
        }
    };
    let origin_topic = record.topic.clone();
    let at = At {
        topic: &origin_topic,
        partition: record.partition,
        offset: record.offset,
    };
    let step = handle_with_retries(shared, &mut record, at, history, stage, cancel, turn).await;
    finish(step, rec.in_flight)
}

fn finish(step: Step, in_flight: InFlight) -> (Step, InFlight) {
    (step, in_flight)
}

/// Calls the handler up to `in_process_attempts` times, then parks the record.
async fn handle_with_retries<H: Handler>(
    shared: &Shared<H>,
    record: &mut InboundRecord,
    at: At<'_>,
    history: History,
    stage: usize,
    cancel: &mut Cancel,
    turn: &mut Turn,
) -> Step {
    let config = &shared.config;
    let attempts = config.retry.in_process_attempts;
    let mut first_failed_at_ms = history.first_failed_at_ms;
    for i in 1..=attempts {
        record.attempt = history.attempts.saturating_add(i);
        let started = Instant::now();
        let span = record_span(&config.service, record);
        let result = AssertUnwindSafe(shared.handler.handle_in_turn(record, turn).instrument(span))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(HandleError::internal(format!(
                    "handler panicked: {}",
                    panic_message(panic)
                )))
            });
        HandlerCalled {
            ins: &shared.ins,
            elapsed: started.elapsed(),
        }
        .emit();
        let err = match result {
            Ok(outcome) => {
                let rejected = outcome == Outcome::Rejected;
                RecordHandled {
                    ins: &shared.ins,
                    at,
                    rejected,
                    attempt: record.attempt,
                }
                .emit();
                bump(if rejected {
                    &shared.counts.rejected
                } else {
                    &shared.counts.handled
                });
                return Step::Done;
            }
            Err(e) => e,
        };
        HandlerFailed {
            ins: &shared.ins,
            at,
            class: err.class,
            message: &err.message,
            attempt: record.attempt,
        }
        .emit();
        let now = now_ms();
        let first = *first_failed_at_ms.get_or_insert(now);
        match err.class {
            ErrorClass::Internal => {
                return Step::Fatal(RuntimeError::Internal {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    message: err.message,
                });
            }
            // A rejection is a successful outcome the service publishes itself; a rejected
            // *error* is a handler bug, and the runtime cannot publish the security event.
            ErrorClass::Rejected => {
                return Step::Fatal(RuntimeError::Internal {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    message: format!(
                        "handler returned a rejected error instead of Outcome::Rejected: {}",
                        err.message
                    ),
                });
            }
            ErrorClass::BadData => {
                let headers = failure_headers(
                    config,
                    record,
                    ErrorClass::BadData,
                    &err.message,
                    first,
                    now,
                );
                return park(
                    shared,
                    record,
                    at,
                    headers,
                    Target::DeadLetter,
                    cancel,
                    turn,
                )
                .await;
            }
            ErrorClass::Transient if i < attempts => {
                let backoff = config.retry.backoff(i);
                InProcessRetry {
                    ins: &shared.ins,
                    at,
                    attempt: record.attempt,
                    backoff,
                }
                .emit();
                bump(&shared.counts.in_process_retries);
                if !cancel.sleep(backoff).await {
                    return Step::Abandoned;
                }
            }
            ErrorClass::Transient => {
                let mut headers = failure_headers(
                    config,
                    record,
                    ErrorClass::Transient,
                    &err.message,
                    first,
                    now,
                );
                return match config.retry_topics.get(stage) {
                    Some(next) => {
                        let delay = i64::try_from(next.delay_ms).unwrap_or(i64::MAX);
                        headers.retry_not_before_ms = Some(now.saturating_add(delay));
                        park(
                            shared,
                            record,
                            at,
                            headers,
                            Target::Retry(&next.topic),
                            cancel,
                            turn,
                        )
                        .await
                    }
                    None => {
                        park(
                            shared,
                            record,
                            at,
                            headers,
                            Target::DeadLetter,
                            cancel,
                            turn,
                        )
                        .await
                    }
                };
            }
        }
    }
    // Unreachable with in_process_attempts >= 1 (validated); stopping is the safe answer.
    Step::Abandoned
}

fn failure_headers(
    config: &RuntimeConfig,
    record: &InboundRecord,
    class: ErrorClass,
    message: &str,
    first_failed_at_ms: i64,
    last_failed_at_ms: i64,
) -> DeadLetterHeaders {
    DeadLetterHeaders {
        error_class: class,
        error: message.to_owned(),
        origin_topic: record.topic.clone(),
        origin_partition: record.partition,
        origin_offset: record.offset,
        origin_timestamp_ms: record.timestamp_ms,
        consumer_group: config.group_id.clone(),
        attempts: record.attempt,
        first_failed_at_ms,
        last_failed_at_ms,
        retry_not_before_ms: None,
    }
}

/// Dead-letters a record that was never handed to the handler.
#[allow(clippy::too_many_arguments)] // the record's coordinates, its failure and its place
async fn dead_letter_now<H: Handler>(
    shared: &Shared<H>,
    record: &InboundRecord,
    at: At<'_>,
    class: ErrorClass,
    reason: &str,
    attempts: u32,
    cancel: &mut Cancel,
    turn: &mut Turn,
) -> Step {
    let now = now_ms();
    let mut headers = failure_headers(&shared.config, record, class, reason, now, now);
    headers.attempts = attempts;
    park(
        shared,
        record,
        at,
        headers,
        Target::DeadLetter,
        cancel,
        turn,
    )
    .await
}

/// Where a failed record goes.
#[derive(Clone, Copy)]
enum Target<'a> {
    DeadLetter,
    Retry(&'a str),
}

/// Producer errors that no amount of retrying fixes: the record cannot be written anywhere, so
/// the run stops rather than store its offset.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}

/// Writes the original key, value and headers, plus `headers`, to the DLQ or a retry topic in the
/// record's turn, and waits for the broker's acknowledgement. Transient write failures are retried with backoff
/// until the write succeeds or the run stops.
async fn park<H: Handler>(
    shared: &Shared<H>,
    record: &InboundRecord,
    at: At<'_>,
    headers: DeadLetterHeaders,
    target: Target<'_>,
    cancel: &mut Cancel,
    turn: &mut Turn,
) -> Step {
    // Parked records keep the partition's order among the records' ordered side effects (a
    // handler that passed its turn before failing has already given that place up).
    turn.wait().await;
    let (topic, kind) = match target {
        Target::DeadLetter => (shared.config.dlq_topic.as_str(), "dlq"),
        Target::Retry(t) => (t, "retry"),
    };
    let original = dead_letter::Original {
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers: &record.headers,
        timestamp_ms: None,
    };
    let mut failures = 0u32;
    loop {
        match dead_letter::write(
            &shared.producer,
            topic,
            &original,
            &headers,
            PRODUCER_QUEUE_TIMEOUT,
        )
        .await
        {
            Ok(_) => {
                match target {
                    Target::DeadLetter => {
                        DeadLettered {
                            ins: &shared.ins,
                            at,
                            dlq_topic: topic,
                            class: headers.error_class,
                            attempts: headers.attempts,
                        }
                        .emit();
                        bump(&shared.counts.dead_lettered);
                    }
                    Target::Retry(_) => {
                        RetryScheduled {
                            ins: &shared.ins,
                            at,
                            retry_topic: topic,
                            attempts: headers.attempts,
                            not_before_ms: headers.retry_not_before_ms.unwrap_or(0),
                        }
                        .emit();
                        bump(&shared.counts.retry_scheduled);
                    }
                }
                return Step::Done;
            }
            Err(e) if is_permanent(&e) => {
                return Step::Fatal(RuntimeError::Park(Box::new(ParkError {
                    target_topic: topic.to_owned(),
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                    source: e,
                })));
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let backoff = shared.config.retry.backoff(failures);
                ParkWriteFailed {
                    ins: &shared.ins,
                    at,
                    target_topic: topic,
                    kind,
                    error: &e.to_string(),
                    backoff,
                }
                .emit();
                if !cancel.sleep(backoff).await {
                    return Step::Abandoned;
                }
            }
        }
    }
}

/// Returns the span a record is handled in: every log line of the handler carries the record's
/// coordinates and, from the `traceparent` and `ce_id` headers the producer SDK writes, its
/// trace id and event id.
fn record_span(service: &str, record: &InboundRecord) -> tracing::Span {
    let (trace_id, event_id) = trace_and_event_ids(record);
    tracing::info_span!(
        "record",
        service = %service,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
        attempt = record.attempt,
        trace_id = trace_id.unwrap_or(""),
        event_id = event_id.unwrap_or(""),
    )
}

/// Reads the trace id (W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`) and the event id
/// (CloudEvents `ce_id`, a UUID) from the headers; malformed values are ignored, since headers
/// come from outside the process.
fn trace_and_event_ids(record: &InboundRecord) -> (Option<&str>, Option<&str>) {
    let header = |name: &str| {
        record
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let trace_id = header("traceparent")
        .and_then(|tp| tp.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
    let event_id = header("ce_id").filter(|id| uuid::Uuid::parse_str(id).is_ok());
    (trace_id, event_id)
}

#[cfg(test)]
mod span_tests {
    use super::*;

    fn record(headers: &[(&str, &[u8])]) -> InboundRecord {
        InboundRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some(v.to_vec())))
                .collect(),
            attempt: 1,
        }
    }

    #[test]
    fn trace_and_event_ids_come_from_valid_headers_only() {
        let r = record(&[
            (
                "traceparent",
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("ce_id", b"0b7e3c1e-8d5c-4f7a-9a53-2f1c5d4e6b7a"),
        ]);
        assert_eq!(
            trace_and_event_ids(&r),
            (
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                Some("0b7e3c1e-8d5c-4f7a-9a53-2f1c5d4e6b7a")
            )
        );
        let hostile = record(&[
            ("traceparent", b"00-zz-\xff-01"),
            ("ce_id", b"not-a-uuid\n"),
        ]);
        assert_eq!(trace_and_event_ids(&hostile), (None, None));
        assert_eq!(
            trace_and_event_ids(&record(&[("ce_id", &[0xff, 0xfe])])),
            (None, None)
        );
    }
}
