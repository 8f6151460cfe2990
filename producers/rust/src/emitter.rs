//! The [`Emitter`]: `emit` hands an event to a bounded queue and returns at once; a background
//! thread encodes, frames and signs it and gives it to an idempotent librdkafka producer. Records
//! the broker cannot take (unreachable, queue full, delivery timed out) go to the crash-safe disk
//! spool; a drain thread replays the spool in order once the broker answers again, and deletes a
//! record only after the broker acknowledged it.
//!
//! Delivery guarantee: at least once, and exactly once in the absence of crashes — a spooled
//! record is acknowledged in the spool only after Kafka confirmed it, and records confirmed in a
//! partially failed replay batch are not sent again. After a crash, records confirmed since the
//! last persisted spool ack may be sent twice (consumers deduplicate by `event_id`). An event is
//! lost only when the spool reaches its configured bound, and then it is counted.
//!
//! Ordering: events keep their emit order while the broker is healthy and while the spool is
//! being drained (new events join the spool's tail until it is empty). At the moment the broker
//! fails, records already inside librdkafka join the spool behind a few newer ones.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};

use crossbeam_queue::ArrayQueue;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use vigil_schemas::{RecordSigner, VerificationEvent};
use vigil_topology::{InternalEvent, KafkaClientConfig};

use crate::config::{ConfigError, EmitterConfig};
use crate::internal_events::{
    BrokersDown, ClientError, EventDelivered, EventDropped, EventEmitted, EventSpooled, QueueDepth,
    ReplayBatchDone, ReplayFailed, SpoolFailed, SpoolSize,
};
use crate::metrics::{DropReason, ProducerMetrics};
use crate::record::PendingRecord;
use crate::spool::{SeqNo, Spool, SpoolError};
use crate::trace::new_trace;

/// Errors starting an emitter.
#[derive(Debug, thiserror::Error)]
pub enum EmitterError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The spool could not be opened.
    #[error("opening the spool")]
    Spool(#[from] SpoolError),
    /// The Kafka client could not be created.
    #[error("creating the kafka producer")]
    Kafka(#[from] KafkaError),
    /// A background thread could not be started.
    #[error("starting a background thread")]
    Thread(#[from] std::io::Error),
}

/// Why `emit` did not accept an event.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The emitter is closed.
    #[error("emitter is closed")]
    Closed,
    /// The queue was full and the spool could not take the event; it is lost and counted.
    #[error("event dropped: {0}")]
    Dropped(String),
}

/// An event [`Emitter::try_enqueue`] could not queue because the queue is full; hand it to
/// [`Emitter::spill`].
#[derive(Debug)]
pub struct QueueFull(pub Box<VerificationEvent>);

/// What `flush` or `close` left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Records still inside librdkafka when the timeout ran out.
    pub in_flight: u64,
    /// Records waiting in the disk spool (delivered on a later drain or restart).
    pub spooled: u64,
}

#[derive(Debug)]
enum Origin {
    Direct { emitted_at: Instant },
    Spool(SeqNo),
}

/// How often the encoder looks at the queue when it is idle. `emit` never wakes it: a wake-up
/// is a futex syscall on the caller's thread, which cost more than the rest of `emit` together
/// (measured with `scripts/bench-producer`). One millisecond is well under the producer's linger.
const ENCODER_POLL: Duration = Duration::from_millis(1);

/// Events are stored inline: a boxed event would be freed on the encoder's thread, and
/// cross-thread frees are slow in glibc's allocator.
type Queued = (VerificationEvent, Instant);

/// State shared by the caller, the encoder thread, the drain thread and librdkafka's callbacks.
struct Core {
    topic: String,
    signer: RecordSigner,
    spool: Spool,
    /// True while new records must join the spool's tail (broker down or spool not yet drained).
    spooling: Mutex<bool>,
    metrics: ProducerMetrics,
    drain: Mutex<DrainBatch>,
    drain_done: Condvar,
    wake_drainer: Condvar,
    stop: AtomicBool,
    queue: ArrayQueue<Queued>,
    /// True while the encoder holds an event it took off the queue.
    encoding: AtomicBool,
}

/// Delivery outcomes of the spool batch in flight.
#[derive(Default)]
struct DrainBatch {
    outstanding: usize,
    delivered: BTreeSet<SeqNo>,
    failed: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// Appends a record to the spool and switches new records to the spool; returns false when
    /// the spool refused it (the loss is logged and counted).
    fn spool_record(&self, record: &PendingRecord) -> bool {
        let mut spooling = lock(&self.spooling);
        *spooling = true;
        let stored = match self.spool.append(&record.encode()) {
            Ok(_) => {
                EventSpooled {
                    metrics: &self.metrics,
                    records: self.spool.len(),
                    bytes: self.spool.disk_bytes(),
                }
                .emit();
                true
            }
            Err(e @ SpoolError::Full { .. }) => {
                EventDropped {
                    metrics: &self.metrics,
                    reason: DropReason::SpoolFull,
                    error: &e,
                }
                .emit();
                false
            }
            Err(e @ SpoolError::RecordTooLarge { .. }) => {
                EventDropped {
                    metrics: &self.metrics,
                    reason: DropReason::Encode,
                    error: &e,
                }
                .emit();
                false
            }
            Err(e) => {
                EventDropped {
                    metrics: &self.metrics,
                    reason: DropReason::SpoolIo,
                    error: &e,
                }
                .emit();
                false
            }
        };
        drop(spooling);
        self.wake_drainer.notify_one();
        stored
    }

    fn refresh_spool_gauges(&self) {
        SpoolSize {
            metrics: &self.metrics,
            records: self.spool.len(),
            bytes: self.spool.disk_bytes(),
        }
        .emit();
    }

    fn sign(&self, event: &VerificationEvent) -> Option<PendingRecord> {
        match self.signer.sign(event) {
            Ok(record) => Some(PendingRecord::new(&self.topic, record)),
            Err(e) => {
                EventDropped {
                    metrics: &self.metrics,
                    reason: DropReason::Encode,
                    error: &e,
                }
                .emit();
                None
            }
        }
    }
}

/// librdkafka context: delivery reports feed the metrics, the spool and the drain batch.
struct DeliveryContext {
    core: Arc<Core>,
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // Switch new records to the spool at once instead of waiting for delivery timeouts.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            BrokersDown { reason }.emit();
            *lock(&self.core.spooling) = true;
        } else {
            ClientError {
                error: &error,
                reason,
            }
            .emit();
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        let core = &self.core;
        match (result, *origin) {
            (Ok(_), Origin::Direct { emitted_at }) => {
                EventDelivered {
                    metrics: &core.metrics,
                    latency: Some(emitted_at.elapsed()),
                }
                .emit();
            }
            (Ok(_), Origin::Spool(seq)) => {
                EventDelivered {
                    metrics: &core.metrics,
                    latency: None,
                }
                .emit();
                let mut batch = lock(&core.drain);
                batch.delivered.insert(seq);
                batch.outstanding = batch.outstanding.saturating_sub(1);
                core.drain_done.notify_all();
            }
            (Err((error, _)), Origin::Spool(seq)) => {
                ReplayFailed {
                    error,
                    seq: seq.get(),
                }
                .emit();
                let mut batch = lock(&core.drain);
                batch.failed += 1;
                batch.outstanding = batch.outstanding.saturating_sub(1);
                core.drain_done.notify_all();
            }
            (Err((error, message)), Origin::Direct { .. }) => {
                if is_permanent(error) {
                    EventDropped {
                        metrics: &core.metrics,
                        reason: DropReason::Refused,
                        error,
                    }
                    .emit();
                    return;
                }
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|hd| (hd.key.to_owned(), hd.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = core.spool_record(&PendingRecord {
                    topic: message.topic().to_owned(),
                    key: message.key().unwrap_or_default().to_vec(),
                    value: message.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
    }
}

/// Errors that no retry fixes: the record itself is unacceptable to the broker.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

fn base_record<'a>(
    record: &'a PendingRecord,
    origin: Origin,
) -> BaseRecord<'a, [u8], [u8], Box<Origin>> {
    let headers = record.headers.iter().fold(
        OwnedHeaders::new_with_capacity(record.headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            })
        },
    );
    BaseRecord::with_opaque_to(&record.topic, Box::new(origin))
        .key(record.key.as_slice())
        .payload(record.value.as_slice())
        .headers(headers)
}

/// A handle platforms use to emit signed verification events without ever blocking on Kafka.
pub struct Emitter {
    core: Arc<Core>,
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    encoder: Thread,
    closed: AtomicBool,
    close_timeout: Duration,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Emitter {
    /// Opens the spool, creates the producer and starts the encoder and drain threads. Records
    /// left in the spool by a previous run are replayed as soon as the broker answers.
    pub fn start(
        config: &EmitterConfig,
        kafka: &KafkaClientConfig,
        signer: RecordSigner,
        registry: Option<&prometheus::Registry>,
    ) -> Result<Self, EmitterError> {
        config.validate()?;
        kafka.validate().map_err(|e| ConfigError {
            key: "kafka",
            reason: e.to_string(),
        })?;
        let spool = Spool::open(config.spool_config())?;
        let metrics = ProducerMetrics::new(registry);
        metrics.spool_max_bytes.set(config.spool_max_bytes as i64);
        let spooling = !spool.is_empty();
        let core = Arc::new(Core {
            topic: config.topic.clone(),
            signer,
            spool,
            spooling: Mutex::new(spooling),
            metrics,
            drain: Mutex::new(DrainBatch::default()),
            drain_done: Condvar::new(),
            wake_drainer: Condvar::new(),
            stop: AtomicBool::new(false),
            queue: ArrayQueue::new(config.queue_capacity),
            encoding: AtomicBool::new(false),
        });
        core.refresh_spool_gauges();
        let mut client = kafka.producer();
        client.set("message.timeout.ms", config.delivery_timeout_ms.to_string());
        let producer: ThreadedProducer<DeliveryContext> =
            client.create_with_context(DeliveryContext {
                core: Arc::clone(&core),
            })?;
        let producer = Arc::new(producer);

        let encoder = {
            let (core, producer) = (Arc::clone(&core), Arc::clone(&producer));
            std::thread::Builder::new()
                .name("vigil-emit-encode".into())
                .spawn(move || encode_loop(&core, &producer))?
        };
        let drainer = {
            let (core, producer) = (Arc::clone(&core), Arc::clone(&producer));
            let batch = config.drain_batch_records;
            let timeout = Duration::from_millis(config.delivery_timeout_ms);
            std::thread::Builder::new()
                .name("vigil-emit-drain".into())
                .spawn(move || drain_loop(&core, &producer, batch, timeout))?
        };
        Ok(Self {
            core,
            producer,
            encoder: encoder.thread().clone(),
            closed: AtomicBool::new(false),
            close_timeout: Duration::from_millis(config.close_timeout_ms),
            threads: Mutex::new(vec![encoder, drainer]),
        })
    }

    /// Hands `event` over and returns at once. Fills in the trace context from the current
    /// `tracing` span when the event has none. When the in-memory queue is full the event is
    /// signed and spooled on the caller's thread (a local file append, no network wait).
    pub fn emit(&self, event: VerificationEvent) -> Result<(), EmitError> {
        match self.try_enqueue(event)? {
            None => Ok(()),
            Some(full) => self.spill(full.0),
        }
    }

    /// The fast half of [`Emitter::emit`]: queues `event` in memory (no I/O, no lock held
    /// long) and returns `None`, or returns it in [`QueueFull`] when the queue is full, for
    /// [`Emitter::spill`]. A binding calls this while it holds its interpreter lock and
    /// releases the lock only for the spill.
    pub fn try_enqueue(
        &self,
        mut event: VerificationEvent,
    ) -> Result<Option<QueueFull>, EmitError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        if event.trace.is_none() {
            // Only the span lookup happens here; a fresh trace is made on the encoder thread.
            event.trace = crate::trace::span_trace();
        }
        EventEmitted {
            metrics: &self.core.metrics,
        }
        .emit();
        match self.core.queue.push((event, Instant::now())) {
            Ok(()) => Ok(None),
            Err((event, _)) => Ok(Some(QueueFull(Box::new(event)))),
        }
    }

    /// The slow half of [`Emitter::emit`]: signs `event` and appends it to the disk spool on
    /// the caller's thread (already counted as emitted by [`Emitter::try_enqueue`]).
    pub fn spill(&self, mut event: Box<VerificationEvent>) -> Result<(), EmitError> {
        event.trace.get_or_insert_with(new_trace);
        match self.core.sign(&event) {
            Some(record) if self.core.spool_record(&record) => Ok(()),
            Some(_) => Err(EmitError::Dropped(
                "queue full and the spool refused the event".into(),
            )),
            None => Err(EmitError::Dropped("the event could not be encoded".into())),
        }
    }

    /// Returns the emitter's metrics.
    pub fn metrics(&self) -> &ProducerMetrics {
        &self.core.metrics
    }

    /// Returns the number of records waiting in the disk spool.
    pub fn spooled_pending(&self) -> u64 {
        self.core.spool.len()
    }

    /// Waits until every event emitted so far is acknowledged by the broker or safely in the
    /// spool, up to `timeout`. Blocking: call it from a blocking context.
    pub fn flush(&self, timeout: Duration) -> FlushReport {
        let deadline = Instant::now() + timeout;
        self.encoder.unpark();
        while (!self.core.queue.is_empty() || self.core.encoding.load(Ordering::Acquire))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = self
            .producer
            .flush(deadline.saturating_duration_since(Instant::now()));
        let _ = self.core.spool.sync();
        self.report()
    }

    fn report(&self) -> FlushReport {
        FlushReport {
            in_flight: self.producer.in_flight_count().max(0) as u64,
            spooled: self.core.spool.len(),
        }
    }

    /// Stops accepting events, waits up to the configured close timeout for deliveries, moves
    /// whatever is still in flight to the spool, and stops the background threads.
    pub fn close(&self) -> FlushReport {
        if self.closed.swap(true, Ordering::AcqRel) {
            return self.report();
        }
        self.flush(self.close_timeout);
        // Whatever librdkafka still holds comes back through delivery reports as purged and is
        // spooled there; spooled replays stay unacknowledged and are retried next time.
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let _ = self.producer.flush(Duration::from_secs(2));
        self.core.stop.store(true, Ordering::Release);
        self.core.wake_drainer.notify_all();
        self.core.drain_done.notify_all();
        self.encoder.unpark();
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        let _ = self.core.spool.sync();
        self.core.refresh_spool_gauges();
        self.report()
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.close();
    }
}

fn encode_loop(core: &Core, producer: &ThreadedProducer<DeliveryContext>) {
    loop {
        let stopping = core.stop.load(Ordering::Acquire);
        core.encoding.store(true, Ordering::Release);
        while let Some((mut event, emitted_at)) = core.queue.pop() {
            event.trace.get_or_insert_with(new_trace);
            if let Some(record) = core.sign(&event) {
                if stopping {
                    // Closing and the flush timed out: the spool keeps what was accepted.
                    let _ = core.spool_record(&record);
                } else {
                    send_or_spool(core, producer, &record, emitted_at);
                }
            }
        }
        core.encoding.store(false, Ordering::Release);
        // Set here rather than on every emit, so the caller never touches a shared counter.
        QueueDepth {
            metrics: &core.metrics,
            depth: core.queue.len(),
        }
        .emit();
        if stopping {
            return;
        }
        std::thread::park_timeout(ENCODER_POLL);
    }
}

fn send_or_spool(
    core: &Core,
    producer: &ThreadedProducer<DeliveryContext>,
    record: &PendingRecord,
    emitted_at: Instant,
) {
    if *lock(&core.spooling) {
        let _ = core.spool_record(record);
        return;
    }
    match producer.send(base_record(record, Origin::Direct { emitted_at })) {
        Ok(()) => {}
        Err((e, _)) if is_permanent(&e) => EventDropped {
            metrics: &core.metrics,
            reason: DropReason::Refused,
            error: &e,
        }
        .emit(),
        // Queue full or any other refusal to enqueue: the spool keeps it.
        Err((_, _)) => {
            let _ = core.spool_record(record);
        }
    }
}

fn drain_loop(
    core: &Core,
    producer: &ThreadedProducer<DeliveryContext>,
    batch_records: usize,
    delivery_timeout: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    let mut delivered_earlier: BTreeSet<SeqNo> = BTreeSet::new();
    while !core.stop.load(Ordering::Acquire) {
        if core.spool.is_empty() {
            let mut spooling = lock(&core.spooling);
            // Re-checked under the lock: the encoder appends only while holding it.
            if core.spool.is_empty() {
                *spooling = false;
                delivered_earlier.clear();
            }
            let _ = core
                .wake_drainer
                .wait_timeout(spooling, Duration::from_millis(200));
            continue;
        }
        // Probe the broker before sending a batch that would only time out.
        if producer
            .client()
            .fetch_metadata(Some(&core.topic), Duration::from_secs(2))
            .is_err()
        {
            sleep_unless_stopped(core, backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        let records = match core.spool.peek_batch(batch_records, 8 * 1024 * 1024) {
            Ok(r) => r,
            Err(e) => {
                SpoolFailed {
                    error: &e,
                    ack: false,
                }
                .emit();
                sleep_unless_stopped(core, backoff);
                continue;
            }
        };
        let Some(last) = records.last().map(|r| r.seq) else {
            continue;
        };
        *lock(&core.drain) = DrainBatch::default();
        let mut sent = 0usize;
        let to_send: Vec<_> = records
            .iter()
            .filter(|r| !delivered_earlier.contains(&r.seq))
            .collect();
        for r in to_send {
            let record = match PendingRecord::decode(&r.payload) {
                Ok(rec) => rec,
                Err(e) => {
                    EventDropped {
                        metrics: &core.metrics,
                        reason: DropReason::CorruptSpool,
                        error: &e,
                    }
                    .emit();
                    delivered_earlier.insert(r.seq);
                    continue;
                }
            };
            lock(&core.drain).outstanding += 1;
            let mut origin = Origin::Spool(r.seq);
            loop {
                match producer.send(base_record(&record, origin)) {
                    Ok(()) => {
                        sent += 1;
                        break;
                    }
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        origin = *back.delivery_opaque;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        if is_permanent(&e) {
                            EventDropped {
                                metrics: &core.metrics,
                                reason: DropReason::Refused,
                                error: &e,
                            }
                            .emit();
                            delivered_earlier.insert(r.seq);
                        }
                        let mut b = lock(&core.drain);
                        b.outstanding = b.outstanding.saturating_sub(1);
                        if !is_permanent(&e) {
                            b.failed += 1;
                        }
                        break;
                    }
                }
            }
        }
        // Wait for every delivery report of the batch (librdkafka reports each one, success or
        // timeout, within message.timeout.ms).
        let wait_until = Instant::now() + delivery_timeout + Duration::from_secs(5);
        let mut batch = lock(&core.drain);
        while batch.outstanding > 0 && Instant::now() < wait_until {
            batch = core
                .drain_done
                .wait_timeout(batch, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let complete = batch.outstanding == 0 && batch.failed == 0;
        delivered_earlier.append(&mut batch.delivered);
        drop(batch);
        ReplayBatchDone { sent, complete }.emit();
        if complete {
            if let Err(e) = core.spool.ack(last) {
                SpoolFailed {
                    error: &e,
                    ack: true,
                }
                .emit();
            }
            delivered_earlier.retain(|s| *s > last);
            core.refresh_spool_gauges();
            backoff = Duration::from_millis(100);
        } else {
            sleep_unless_stopped(core, backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

fn sleep_unless_stopped(core: &Core, d: Duration) {
    let guard = lock(&core.spooling);
    if !core.stop.load(Ordering::Acquire) {
        let _ = core.wake_drainer.wait_timeout(guard, d);
    }
}
