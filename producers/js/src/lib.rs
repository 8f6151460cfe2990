//! The napi-rs face of `vigil_producer::sdk`, loaded by `index.js`. Types are converted here
//! and nothing else: options and events arrive as JSON text (`JSON.stringify` on the
//! JavaScript side), completion, signing, queueing and spooling are the Rust core's.
//!
//! `emit` runs on the JavaScript thread and never waits for the network (a full queue spills
//! to the spool: a local append). Everything that may wait (start, with its registry call;
//! flush; close) runs on a libuv worker and resolves a Promise, except `closeSync`, which an
//! exit hook needs. Errors carry the core's code as a `[code] ` prefix of the message, which
//! `index.js` turns into the `code` property of a `VigilError`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Error, Result, Task};
use napi_derive::napi;
use vigil_producer::FlushReport;
use vigil_producer::sdk::{self, SdkEmitter, SdkError, SdkOptions};
use vigil_schemas::Trace;
use vigil_schemas::model::Platform;

fn to_js(e: SdkError) -> Error {
    Error::from_reason(format!("[{}] {}", e.code(), e.chain()))
}

fn closed() -> Error {
    to_js(SdkError::Closed)
}

/// What a flush or close left behind.
#[napi(object)]
pub struct NativeReport {
    /// Records librdkafka still held when the timeout ran out.
    pub in_flight: i64,
    /// Records in the disk spool, delivered by this or the next emitter on the directory.
    pub spooled: i64,
}

impl From<FlushReport> for NativeReport {
    fn from(r: FlushReport) -> Self {
        Self {
            in_flight: saturating(r.in_flight),
            spooled: saturating(r.spooled),
        }
    }
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `emitted`, `delivered`, `spooled` and `dropped` so far.
#[napi(object)]
pub struct NativeCounters {
    /// Events accepted by `emit`.
    pub emitted: i64,
    /// Events the broker acknowledged.
    pub delivered: i64,
    /// Events written to the spool.
    pub spooled: i64,
    /// Events lost, whatever the reason (each reason is a metric label).
    pub dropped: i64,
}

/// The emitter a JavaScript `Emitter` wraps.
#[napi]
pub struct NativeEmitter {
    inner: Mutex<Option<Arc<SdkEmitter>>>,
}

impl NativeEmitter {
    fn get(&self) -> Result<Arc<SdkEmitter>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(closed)
    }

    fn take(&self) -> Option<Arc<SdkEmitter>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Starts an emitter on a libuv worker (the registry call may wait).
pub struct StartTask {
    options: Option<SdkOptions>,
    sdk_version: String,
}

impl Task for StartTask {
    type Output = SdkEmitter;
    type JsValue = NativeEmitter;

    fn compute(&mut self) -> Result<SdkEmitter> {
        let options = self.options.take().ok_or_else(closed)?;
        SdkEmitter::start(&options, Platform::Js, &self.sdk_version).map_err(to_js)
    }

    fn resolve(&mut self, _env: Env, emitter: SdkEmitter) -> Result<NativeEmitter> {
        Ok(NativeEmitter {
            inner: Mutex::new(Some(Arc::new(emitter))),
        })
    }
}

/// Flushes (or closes, when `close`) on a libuv worker.
pub struct FlushTask {
    emitter: Option<Arc<SdkEmitter>>,
    timeout: Duration,
    close: bool,
}

impl Task for FlushTask {
    type Output = FlushReport;
    type JsValue = NativeReport;

    fn compute(&mut self) -> Result<FlushReport> {
        Ok(match (&self.emitter, self.close) {
            (None, _) => NOTHING_LEFT,
            (Some(emitter), false) => emitter.flush(self.timeout),
            (Some(emitter), true) => emitter.close(),
        })
    }

    fn resolve(&mut self, _env: Env, report: FlushReport) -> Result<NativeReport> {
        Ok(report.into())
    }
}

/// Starts an emitter from options JSON; resolves to the native emitter.
#[napi]
pub fn start(options_json: String, sdk_version: String) -> Result<AsyncTask<StartTask>> {
    let options = SdkOptions::from_json(&options_json).map_err(to_js)?;
    Ok(AsyncTask::new(StartTask {
        options: Some(options),
        sdk_version,
    }))
}

#[napi]
impl NativeEmitter {
    /// Completes, signs and queues one event given as JSON; never waits for the broker. With
    /// `trace_id` and `parent_span_id` (the current trace context), an event without a `trace`
    /// gets a span of its own in that trace.
    #[napi]
    pub fn emit(
        &self,
        event_json: String,
        trace_id: Option<String>,
        parent_span_id: Option<String>,
    ) -> Result<()> {
        let parent = trace_id.zip(parent_span_id).map(|(t, s)| Trace::new(t, s));
        self.get()?
            .emit_json(&event_json, parent.as_ref())
            .map_err(to_js)
    }

    /// Waits up to `timeout_ms` on a worker thread.
    #[napi]
    pub fn flush(&self, timeout_ms: f64) -> Result<AsyncTask<FlushTask>> {
        Ok(AsyncTask::new(FlushTask {
            emitter: Some(self.get()?),
            timeout: millis(timeout_ms),
            close: false,
        }))
    }

    /// Closes (flushes, spools the rest) on a worker thread. Idempotent.
    #[napi]
    pub fn close(&self) -> AsyncTask<FlushTask> {
        AsyncTask::new(FlushTask {
            emitter: self.take(),
            timeout: Duration::ZERO,
            close: true,
        })
    }

    /// Closes on the calling thread, for exit hooks where no Promise can settle.
    #[napi]
    pub fn close_sync(&self) -> NativeReport {
        self.take()
            .map(|emitter| emitter.close())
            .unwrap_or(NOTHING_LEFT)
            .into()
    }

    /// The metrics in the Prometheus text format.
    #[napi]
    pub fn metrics_text(&self) -> Result<String> {
        Ok(self.get()?.metrics_text())
    }

    /// The delivery counters.
    #[napi]
    pub fn counters(&self) -> Result<NativeCounters> {
        let emitter = self.get()?;
        let m = emitter.metrics();
        let dropped = m.dropped_total();
        Ok(NativeCounters {
            emitted: saturating(m.emitted()),
            delivered: saturating(m.delivered()),
            spooled: saturating(m.spooled()),
            dropped: saturating(dropped),
        })
    }
}

/// What closing an already closed emitter leaves.
const NOTHING_LEFT: FlushReport = FlushReport {
    in_flight: 0,
    spooled: 0,
};

fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX)
}

/// A signed record as JavaScript sees it.
#[napi(object)]
pub struct NativeRecord {
    /// The Kafka record key.
    pub key: Buffer,
    /// The Confluent-framed Avro value the signature covers.
    pub value: Buffer,
    /// Header names and values, in order.
    pub headers: Vec<NativeHeader>,
}

/// One record header.
#[napi(object)]
pub struct NativeHeader {
    /// Header name.
    pub name: String,
    /// Header value bytes.
    pub value: Buffer,
}

/// Signs an event JSON with a PEM key without an emitter.
#[napi]
pub fn sign_record(
    event_json: String,
    signing_key_pem: String,
    key_id: String,
    schema_id: u32,
) -> Result<NativeRecord> {
    let r = sdk::sign_json(&event_json, &signing_key_pem, &key_id, schema_id).map_err(to_js)?;
    Ok(NativeRecord {
        key: r.key.into(),
        value: r.value.into(),
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| NativeHeader {
                name,
                value: value.into(),
            })
            .collect(),
    })
}

/// The core's version, which events carry as `producer.sdk_version`.
#[napi]
pub fn sdk_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
